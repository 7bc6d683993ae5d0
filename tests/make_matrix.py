#!/usr/bin/env python3
"""Write tests/matrix.yml: answer sets that, with tests/answer_sets.yml, cover every pair.

Every pair of values of any two choice (or bool) questions that the rules allow
together appears in at least one answer set: pairwise coverage, not the full
product. The hand-written sets in answer_sets.yml count first; this script adds
the fewest rows its greedy search finds for the rest.

    .venv/bin/python tests/make_matrix.py          # rewrite tests/matrix.yml
    .venv/bin/python tests/make_matrix.py --check  # exit 1 when a pair is uncovered

tests/test_matrix.py runs the check, so a new choice value cannot land uncovered.
"""

from __future__ import annotations

import copy
import itertools
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


def generate() -> list[Row]:
    dims = dimensions()
    todo = uncovered(list(hand_sets().values()), dims)
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
            row[name] = max(candidates, key=lambda v, name=name: len(todo.keys() & pairs_of({**row, name: v}, dims)))
        assert allowed(row), row
        covered = todo.keys() & pairs_of(row, dims)
        assert covered, row
        for pair in covered:
            del todo[pair]
        rows.append(row)
    named = []
    for i, row in enumerate(rows, 1):
        # Distinct names keep the projects apart in the shared environment.
        named.append({"module_name": f"pairwise-{i:02d}", **row})
    return named


def main() -> int:
    if "--check" in sys.argv:
        rows = [*hand_sets().values(), *yaml.safe_load(MATRIX.read_text("utf-8")).values()]
        missing = uncovered(rows, dimensions())
        for pair in sorted(missing, key=repr):
            print(f"uncovered: {pair[0]}={pair[1]!r} with {pair[2]}={pair[3]!r}", file=sys.stderr)
        return 1 if missing else 0
    rows = generate()
    header = "# Generated by tests/make_matrix.py: with answer_sets.yml, every allowed pair of choice values.\n"
    # Deep copies: rows share the SUBSETS lists, which yaml would write as anchors.
    named = {f"pairwise-{i:02d}": copy.deepcopy(row) for i, row in enumerate(rows, 1)}
    body = yaml.safe_dump(named, sort_keys=False)
    MATRIX.write_text(header + body, "utf-8")
    print(f"{len(rows)} rows written to {MATRIX.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
