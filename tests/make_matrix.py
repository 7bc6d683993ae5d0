#!/usr/bin/env python3
"""Write tests/matrix.yml: answer sets that, with tests/answer_sets.yml, cover every pair.

Every pair of values of any two choice (or bool) questions that the rules allow
together appears in at least one answer set: pairwise coverage, not the full
product. The hand-written sets in answer_sets.yml count first; this script adds
rows for the rest: a greedy pass finds a first covering, then a local search
(seeded, so reruns agree) looks for one row fewer until it runs out of tries
(a few minutes). Every row is a project the harness renders, tests and upgrades,
so each one saved is about 45 s of harness time.

    .venv/bin/python tests/make_matrix.py          # rewrite tests/matrix.yml
    .venv/bin/python tests/make_matrix.py --check  # exit 1 when a pair is uncovered

tests/test_matrix.py runs the check, so a new choice value cannot land uncovered.
"""

from __future__ import annotations

import copy
import itertools
import random
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from extensions import naming, validation  # noqa: E402

MATRIX = REPO / "tests" / "matrix.yml"
ANSWER_SETS = REPO / "tests" / "answer_sets.yml"
Row = dict[str, Any]
Pair = tuple[str, Any, str, Any]
# A few subsets stand for a multiselect question's values: all, each extreme, one without keyword.
SUBSETS = {"search_capabilities": [["semantic", "keyword", "temporal", "contextual"], ["keyword"], ["semantic"]]}
# What a pair may need to be askable at all (the KSE questions exist for Lift OS only).
BASES: list[Row] = [{}, {"platform": "liftos"}]


def dimensions() -> dict[str, list[Any]]:
    """Each choice, multiselect or bool question and the values it can take today."""
    dims: dict[str, list[Any]] = {}
    for name, spec in validation.questions().items():
        if validation.computed(name):
            continue
        if name in SUBSETS:
            dims[name] = SUBSETS[name]
        elif spec.get("type") == "bool":
            dims[name] = [True, False]
        elif choices := validation._choices(spec):
            dims[name] = choices
    return dims


def resolved(row: Row) -> tuple[Row, set[str]]:
    return validation.resolve(row, naming.FILTERS)


def allowed(row: Row) -> bool:
    """Whether Copier asks every question the row answers, and the answers pass every rule."""
    try:
        answers, asked = resolved(row)
        validation.check_all(answers)
    except validation.AnswerError:
        return False
    return set(row) <= asked


def pairs_of(row: Row, dims: dict[str, list[Any]]) -> set[Pair]:
    """The pairs a row covers: only questions it asks (a BLUX row says nothing about KSE)."""
    full, asked = resolved(row)
    names = sorted(d for d in dims if d in asked)
    return {(a, _key(full[a]), b, _key(full[b])) for a, b in itertools.combinations(names, 2)}


def _key(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def feasible_pairs(dims: dict[str, list[Any]]) -> dict[Pair, Row]:
    """Every pair some answer set can hold, with the smallest row that allows it."""
    out: dict[Pair, Row] = {}
    for a, b in itertools.combinations(sorted(dims), 2):
        for va, vb in itertools.product(dims[a], dims[b]):
            for base in BASES:
                row = {**base, a: va, b: vb}
                if allowed(row):
                    out[(a, _key(va), b, _key(vb))] = row
                    break
    return out


def hand_sets() -> dict[str, Row]:
    sets: dict[str, Row] = yaml.safe_load(ANSWER_SETS.read_text("utf-8"))
    return sets


def uncovered(rows: list[Row], dims: dict[str, list[Any]]) -> dict[Pair, Row]:
    todo = feasible_pairs(dims)
    for row in rows:
        for pair in pairs_of(row, dims):
            todo.pop(pair, None)
    return todo


def greedy(dims: dict[str, list[Any]], todo: dict[Pair, Row]) -> list[Row]:
    """Rows until every pair in todo is covered, each the best one the greedy fill finds."""
    todo = dict(todo)
    rows: list[Row] = []
    while todo:
        # Seed with one uncovered pair (and what makes it askable), then fill the
        # other questions greedily, each with the value that covers most
        # still-uncovered pairs; questions the row does not ask stay out.
        row: Row = dict(todo[min(todo, key=repr)])
        for name in sorted(dims):
            if name in row:
                continue
            candidates = [v for v in dims[name] if allowed({**row, name: v})]
            if not candidates:
                continue
            gains = [len(todo.keys() & pairs_of({**row, name: v}, dims)) for v in candidates]
            row[name] = candidates[gains.index(max(gains))]
        assert allowed(row), row
        covered = todo.keys() & pairs_of(row, dims)
        assert covered, row
        for pair in covered:
            del todo[pair]
        rows.append(row)
    return rows


class Search:
    """Local search for `size` rows that cover every pair in todo.

    A move takes an uncovered pair, writes it into one row (re-drawing other
    answers when the rules refuse the mix) and keeps the change unless it
    uncovers more than it covers (or, now and then, even so: that escapes plateaus).
    """

    def __init__(self, dims: dict[str, list[Any]], todo: dict[Pair, Row], seed: int) -> None:
        self.dims, self.todo, self.rng = dims, todo, random.Random(seed)
        self._covers: dict[tuple[Any, ...], frozenset[Pair] | None] = {}

    def covers(self, row: Row) -> frozenset[Pair] | None:
        """The wanted pairs a row covers, or None when the row is not a valid answer set."""
        key = tuple(sorted((k, _key(v)) for k, v in row.items()))
        if key not in self._covers:
            self._covers[key] = frozenset(pairs_of(row, self.dims) & self.todo.keys()) if allowed(row) else None
        return self._covers[key]

    def complete(self, row: Row, keep: set[str]) -> Row | None:
        """Row with every asked question answered and no other, or None; answers outside keep may change."""
        for attempt in range(40):
            draft = {k: v for k, v in row.items() if k in keep or self.rng.random() >= attempt / 40}
            for name, values in self.dims.items():
                draft.setdefault(name, self.rng.choice(values))
            try:
                _, asked = resolved(draft)
            except validation.AnswerError:
                continue
            draft = {k: v for k, v in draft.items() if k in asked}
            if self.covers(draft) is not None:
                return draft
        return None

    def run(self, size: int, tries: int) -> list[Row] | None:
        rows = [row for row in (self.complete({}, set()) for _ in range(size * 5)) if row is not None][:size]
        covered = [self.covers(row) or frozenset() for row in rows]
        counts = {pair: 0 for pair in self.todo}
        for pairs in covered:
            for pair in pairs:
                counts[pair] += 1
        for _ in range(tries):
            missing = sorted((p for p, n in counts.items() if n == 0), key=repr)
            if not missing:
                return rows
            pair = self.rng.choice(missing)
            i = self.rng.randrange(len(rows))  # size, unless too few valid rows were drawn
            a, va, b, vb = pair
            forced = {**self.todo[pair], a: _value(va), b: _value(vb)}
            row = self.complete({**rows[i], **forced}, set(forced))
            if row is None:
                continue
            gained = self.covers(row) or frozenset()
            lost = [p for p in covered[i] - gained if counts[p] == 1]
            won = [p for p in gained - covered[i] if counts[p] == 0]
            if len(won) >= len(lost) or self.rng.random() < 0.02:
                for p in covered[i]:
                    counts[p] -= 1
                for p in gained:
                    counts[p] += 1
                rows[i], covered[i] = row, gained
        return None


def _value(key: Any) -> Any:
    return list(key) if isinstance(key, tuple) else key


def generate(seeds: int = 3, tries: int = 8000) -> list[Row]:
    dims = dimensions()
    todo = uncovered(list(hand_sets().values()), dims)
    rows = greedy(dims, todo)
    print(f"greedy: {len(rows)} rows", file=sys.stderr)
    while True:
        searches = (Search(dims, todo, seed).run(len(rows) - 1, tries) for seed in range(seeds))
        fewer = next((found for found in searches if found is not None), None)
        if fewer is None:
            return rows
        rows = fewer
        print(f"search: {len(rows)} rows", file=sys.stderr)


def main() -> int:
    if "--check" in sys.argv:
        rows = [*hand_sets().values(), *yaml.safe_load(MATRIX.read_text("utf-8")).values()]
        missing = uncovered(rows, dimensions())
        for pair in sorted(missing, key=repr):
            print(f"uncovered: {pair[0]}={pair[1]!r} with {pair[2]}={pair[3]!r}", file=sys.stderr)
        return 1 if missing else 0
    rows = generate()
    # Distinct names keep the projects apart in the shared environment.
    rows = [{"module_name": f"pairwise-{i:02d}", **row} for i, row in enumerate(rows, 1)]
    header = "# Generated by tests/make_matrix.py: with answer_sets.yml, every allowed pair of choice values.\n"
    # Deep copies: rows share the SUBSETS lists, which yaml would write as anchors.
    named = {f"pairwise-{i:02d}": copy.deepcopy(row) for i, row in enumerate(rows, 1)}
    body = yaml.safe_dump(named, sort_keys=False)
    MATRIX.write_text(header + body, "utf-8")
    print(f"{len(rows)} rows written to {MATRIX.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
