"""The answer sets cover every allowed pair of choice values (see tests/make_matrix.py)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ANSWER_SETS, HAND_SETS, MATRIX_SETS, REPO

sys.path.insert(0, str(REPO))

from extensions import naming, validation


def test_pairwise_coverage() -> None:
    proc = subprocess.run(
        [sys.executable, "tests/make_matrix.py", "--check"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_set_names_and_module_names_are_distinct() -> None:
    """Projects share one environment: distinct names keep their installs apart."""
    assert not set(HAND_SETS) & set(MATRIX_SETS)
    names = [validation.resolve(answers, naming.FILTERS)[0]["module_name"] for answers in ANSWER_SETS.values()]
    assert len(names) == len(set(names))
