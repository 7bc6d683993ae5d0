#!/usr/bin/env python3
"""Time the template: CLI copy against Copier's own floor, in-process rendering, the harness.

    .venv/bin/python bench/render_speed.py [--runs N] [--harness]

Figures printed (medians of N runs):
- `copier copy --defaults` of the full template, and of a one-file template with
  the same settings (Copier's floor: interpreter start-up, imports, a git clone),
  and their ratio (target: at most 1.3);
- in-process `copier.run_copy` of the full template (target: under 0.3 s), from the
  git repository as a user's Python code would (Copier clones it first) and from a
  copy of the working tree, as the harness renders (tests/conftest.py);
- with --harness, the wall time of `pytest` over the whole harness (target: under
  5 minutes on two cores).
The copy and render figures are taken twice when the machine has a tmpfs that the
default temp dir is not on (what `dev.py test` uses for the harness): with Copier's
clone and the destination on the default temp dir, then on the tmpfs. Most of the
difference is file creation, which on some disks costs up to 1 ms a file.
Nothing is asserted: the figures are for docs/performance.md and for comparing changes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import copier

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))
from conftest import template_snapshot  # noqa: E402  (the harness's own, not a copy)

from dev import tmpfs_scratch  # noqa: E402  (the same tmpfs choice as the harness)

COPIER = Path(sys.executable).with_name("copier")


def once(fn: Callable[[Path], object]) -> float:
    work = Path(tempfile.mkdtemp())
    start = time.perf_counter()
    fn(work / "out")
    elapsed = time.perf_counter() - start
    shutil.rmtree(work)
    return elapsed


def median_seconds(fn: Callable[[Path], object], runs: int) -> float:
    return statistics.median(once(fn) for _ in range(runs))


def paired_medians(first: Callable[[Path], object], second: Callable[[Path], object], runs: int) -> tuple[float, float]:
    """Medians of both, run in turns: a ratio of two figures taken minutes apart would
    measure this machine's drift, and whichever runs first in a round pays a little more."""
    samples: tuple[list[float], list[float]] = ([], [])
    for run in range(runs):
        order = (0, 1) if run % 2 == 0 else (1, 0)
        for which in order:
            samples[which].append(once((first, second)[which]))
    return statistics.median(samples[0]), statistics.median(samples[1])


def one_file_template(root: Path) -> Path:
    """A git template with one rendered file, a subdirectory and StrictUndefined, like ours."""
    (root / "template").mkdir(parents=True)
    (root / "copier.yml").write_text(
        "_subdirectory: template\n_envops:\n  undefined: jinja2.StrictUndefined\nname:\n  type: str\n  default: x\n",
        "utf-8",
    )
    (root / "template" / "README.md.jinja").write_text("# {{ name }}\n", "utf-8")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@invalid", "-C", str(root)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one file"], check=True)
    return root


def cli(template: Path) -> Callable[[Path], object]:
    def run(dst: Path) -> None:
        subprocess.run(
            [str(COPIER), "copy", "--trust", "--defaults", "--vcs-ref", "HEAD", "--quiet", str(template), str(dst)],
            check=True,
            capture_output=True,
        )

    return run


def in_process(dst: Path) -> None:
    copier.run_copy(str(REPO), str(dst), defaults=True, unsafe=True, vcs_ref="HEAD", quiet=True)


def in_process_snapshot(dst: Path) -> None:
    copier.run_copy(str(template_snapshot()), str(dst), defaults=True, unsafe=True, quiet=True)


@contextlib.contextmanager
def temp_dir(where: Path | None) -> Iterator[None]:
    """Scratch files (Copier's clones, destinations) in `where`, for this process and its children."""
    if where is None:
        yield
        return
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = str(where), str(where)
    try:
        yield
    finally:
        tempfile.tempdir = saved[0]
        if saved[1] is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = saved[1]
        shutil.rmtree(where, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--harness", action="store_true", help="also time the whole harness (minutes)")
    args = parser.parse_args()

    files = sum(1 for p in (REPO / "template").rglob("*") if p.is_file())
    print(f"template files: {files}; runs per figure: {args.runs}")
    template_snapshot()  # copied once, as in the harness
    tmpfs = tmpfs_scratch()
    places: list[tuple[str, Path | None]] = [(f"scratch in {tempfile.gettempdir()} (default temp dir)", None)]
    if tmpfs is not None:
        places.append((f"scratch in {tmpfs} (tmpfs)", tmpfs))
    for label, where in places:
        with temp_dir(where):
            with tempfile.TemporaryDirectory() as tmp:
                floor, full = paired_medians(cli(one_file_template(Path(tmp) / "tpl")), cli(REPO), args.runs)
            inproc = median_seconds(in_process, args.runs)
            snapshot = median_seconds(in_process_snapshot, args.runs)
        print(label)
        print(f"  copier copy, one-file template (floor): {floor:.3f} s")
        print(f"  copier copy, full template:             {full:.3f} s   ratio {full / floor:.2f} (target <= 1.3)")
        print(f"  copier.run_copy, full template, git:    {inproc:.3f} s   (target < 0.3)")
        print(f"  copier.run_copy, working-tree copy:     {snapshot:.3f} s   (target < 0.3; how the harness renders)")
    if args.harness:
        start = time.perf_counter()
        code = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=REPO).returncode
        wall = time.perf_counter() - start
        print(f"harness (pytest, all checks):           {wall:.0f} s   exit {code} (target < 300 s on 2 cores)")


if __name__ == "__main__":
    main()
