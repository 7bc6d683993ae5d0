"""Contextual insights: what a user's memories in a window add up to (pure functions).

Confidence says how much the evidence supports the summary::

    confidence = n / (n + 5) * mean(relevance)

``n`` is the number of memories used as evidence and ``relevance`` each one's
score in [0, 1] (the hybrid search score when a query chose them, 1.0 when the
user's memories were listed without one). The first factor grows with the
evidence (1 memory: 0.17, 5: 0.5, 45: 0.9) and never reaches 1; the second
discounts weak matches. No evidence gives 0. Rounded to 4 decimal places.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .models import InsightSummary

# Evidence count at which confidence reaches one half.
CONFIDENCE_PRIOR = 5
TOP_TAGS = 10


@dataclass(frozen=True)
class Evidence:
    memory_id: str
    memory_type: str
    module: str
    tags: tuple[str, ...]
    created_at: datetime | None
    relevance: float  # in [0, 1]


def _clamp(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def mean_relevance(evidence: Sequence[Evidence]) -> float:
    if not evidence:
        return 0.0
    return sum(_clamp(item.relevance) for item in evidence) / len(evidence)


def confidence(evidence: Sequence[Evidence]) -> float:
    """The module docstring's formula, rounded to 4 places; 0.0 without evidence."""
    n = len(evidence)
    if n == 0:
        return 0.0
    return round(n / (n + CONFIDENCE_PRIOR) * mean_relevance(evidence), 4)


def summarise(evidence: Sequence[Evidence]) -> InsightSummary:
    """Counts by type, module and tag (top tags by count, then name), time span, active days."""
    tags = Counter(tag for item in evidence for tag in item.tags)
    top = sorted(tags.items(), key=lambda pair: (-pair[1], pair[0]))[:TOP_TAGS]
    times = [item.created_at for item in evidence if item.created_at is not None]
    return {
        "memories": len(evidence),
        "by_type": dict(sorted(Counter(item.memory_type for item in evidence).items())),
        "by_module": dict(sorted(Counter(item.module for item in evidence).items())),
        "top_tags": [{"tag": tag, "count": count} for tag, count in top],
        "first_seen": min(times).isoformat() if times else None,
        "last_seen": max(times).isoformat() if times else None,
        "active_days": len({moment.date() for moment in times}),
        "mean_relevance": round(mean_relevance(evidence), 4),
    }
