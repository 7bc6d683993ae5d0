"""Hybrid search arithmetic: pure functions over (memory_id, score) lists.

Each leg's scores are on its own scale (bm25 for keyword, cosine for
semantic), so each list is first normalised to [0, 1] by dividing by its best
score; a leg's best match therefore scores 1 and a single result scores 1.
Non-positive scores normalise to 0. The combined score is the weighted sum of
the normalised scores, with the weights of the legs that ran scaled to sum to
1, so it stays in [0, 1]. A memory found by both legs appears once, with both
of its component scores.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from .models import AppliedWeights

Scored = tuple[str, float]  # (memory_id, score on the leg's scale)
LEGS = ("semantic", "keyword")


@dataclass(frozen=True)
class Ranked:
    memory_id: str
    score: float
    semantic: float | None  # normalised component; None when that leg did not find it
    keyword: float | None


@dataclass(frozen=True)
class Combination:
    ranked: list[Ranked]  # best first, at most ``limit``
    total: int  # distinct memories found before the cut


def normalise(scored: Sequence[Scored]) -> dict[str, float]:
    """Each memory's score divided by the list's best; a repeated memory keeps its best."""
    best_of: dict[str, float] = {}
    for memory_id, score in scored:
        if memory_id not in best_of or score > best_of[memory_id]:
            best_of[memory_id] = score
    top = max(best_of.values(), default=0.0)
    return {
        memory_id: (score / top if score > 0 and top > 0 else 0.0)
        for memory_id, score in best_of.items()
    }


def applied_weights(semantic: float, keyword: float, legs: Collection[str]) -> AppliedWeights:
    """The requested weights restricted to the legs that run, scaled to sum to 1.

    If every running leg was asked for weight 0, they share the weight equally.
    """
    requested = {"semantic": semantic, "keyword": keyword}
    running = [leg for leg in LEGS if leg in legs]
    total = sum(requested[leg] for leg in running)
    share = {
        leg: (requested[leg] / total if total > 0 else 1 / len(running)) if leg in running else 0.0
        for leg in LEGS
    }
    return {"semantic": share["semantic"], "keyword": share["keyword"]}


def combine(
    semantic: Sequence[Scored],
    keyword: Sequence[Scored],
    weights: AppliedWeights,
    limit: int,
) -> Combination:
    """Merge both legs by memory_id, score, sort best first (ties: first found), cut to limit."""
    semantic_scores = normalise(semantic)
    keyword_scores = normalise(keyword)
    order = list(dict.fromkeys([*semantic_scores, *keyword_scores]))
    ranked = [
        Ranked(
            memory_id=memory_id,
            score=weights["semantic"] * semantic_scores.get(memory_id, 0.0)
            + weights["keyword"] * keyword_scores.get(memory_id, 0.0),
            semantic=semantic_scores.get(memory_id),
            keyword=keyword_scores.get(memory_id),
        )
        for memory_id in order
    ]
    ranked.sort(key=lambda item: item.score, reverse=True)  # stable: ties keep found order
    return Combination(ranked=ranked[:limit], total=len(ranked))
