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
- the git figures twice: from this repository, and from a clone of its HEAD with
  its objects packed, as Copier finds a template it fetched from a remote. A working
  repository gathers loose objects with every commit (hundreds), and Copier's clone
  of a local path hard-links each one;
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


def medians_in_turns(fns: list[Callable[[Path], object]], runs: int) -> list[float]:
    """Medians of each, run in turns: a ratio of two figures taken minutes apart would
    measure this machine's drift, and whichever runs first in a round pays a little more."""
    samples: list[list[float]] = [[] for _ in fns]
    for run in range(runs):
        order = list(range(len(fns)))
        order = order[run % len(fns) :] + order[: run % len(fns)]  # each goes first in turn
        for which in order:
            samples[which].append(once(fns[which]))
    return [statistics.median(each) for each in samples]


def packed_clone(root: Path) -> Path:
    """A clone of this repository's HEAD with its objects packed, as a fetched template's are."""
    subprocess.run(["git", "clone", "-q", "--no-local", str(REPO), str(root)], check=True)
    return root


def loose_objects() -> int:
    out = subprocess.run(["git", "-C", str(REPO), "count-objects"], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


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


def in_process(template: Path) -> Callable[[Path], object]:
    def run(dst: Path) -> None:
        copier.run_copy(str(template), str(dst), defaults=True, unsafe=True, vcs_ref="HEAD", quiet=True)

    return run


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
    print(f"template files: {files}; loose git objects in this repository: {loose_objects()}; runs: {args.runs}")
    template_snapshot()  # copied once, as in the harness
    tmpfs = tmpfs_scratch()
    places: list[tuple[str, Path | None]] = [(f"scratch in {tempfile.gettempdir()} (default temp dir)", None)]
    if tmpfs is not None:
        places.append((f"scratch in {tmpfs} (tmpfs)", tmpfs))
    for label, where in places:
        with temp_dir(where):
            with tempfile.TemporaryDirectory() as tmp:
                floor_template = one_file_template(Path(tmp) / "tpl")
                packed = packed_clone(Path(tmp) / "packed")
                floor, full, full_packed = medians_in_turns([cli(floor_template), cli(REPO), cli(packed)], args.runs)
                inproc, inproc_packed = medians_in_turns([in_process(REPO), in_process(packed)], args.runs)
            snapshot = median_seconds(in_process_snapshot, args.runs)
        print(label)
        print(f"  copier copy, one-file template (floor):     {floor:.3f} s")
        print(f"  copier copy, full template, this repository: {full:.3f} s   ratio {full / floor:.2f} (target <= 1.3)")
        print(f"  copier copy, full template, packed clone:   {full_packed:.3f} s   ratio {full_packed / floor:.2f}")
        print(f"  copier.run_copy, this repository:           {inproc:.3f} s   (target < 0.3)")
        print(f"  copier.run_copy, packed clone:              {inproc_packed:.3f} s")
        print(f"  copier.run_copy, working-tree copy:         {snapshot:.3f} s   (how the harness renders)")
    if args.harness:
        start = time.perf_counter()
        code = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=REPO).returncode
        wall = time.perf_counter() - start
        print(f"harness (pytest, all checks):           {wall:.0f} s   exit {code} (target < 300 s on 2 cores)")


if __name__ == "__main__":
    main()
