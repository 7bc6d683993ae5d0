#!/usr/bin/env python3
"""Time rendering the template: the copier CLI and in-process run_copy.

    .venv/bin/python bench/render_speed.py [runs]

Prints the median of each, in seconds. No target is asserted here.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import copier

REPO = Path(__file__).resolve().parent.parent


def timed(fn: object, runs: int) -> float:
    samples = []
    for _ in range(runs):
        dst = Path(tempfile.mkdtemp()) / "m"
        start = time.perf_counter()
        fn(dst)  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
        shutil.rmtree(dst.parent)
    return statistics.median(samples)


def cli(dst: Path) -> None:
    exe = Path(sys.executable).with_name("copier")
    subprocess.run(
        [str(exe), "copy", "--trust", "--defaults", "--vcs-ref", "HEAD", "--quiet", str(REPO), str(dst)], check=True
    )


def in_process(dst: Path) -> None:
    copier.run_copy(str(REPO), str(dst), defaults=True, unsafe=True, vcs_ref="HEAD", quiet=True)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    files = sum(1 for p in (REPO / "template").rglob("*") if p.is_file())
    print(f"template files: {files}, runs: {runs}")
    print(f"copier copy (CLI):        {timed(cli, runs):.3f} s median")
    print(f"copier.run_copy (in-process): {timed(in_process, runs):.3f} s median")


if __name__ == "__main__":
    main()
