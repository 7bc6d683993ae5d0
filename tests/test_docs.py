"""The docs site builds with `mkdocs build --strict`, and says nothing worth a warning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO

MKDOCS = Path(sys.executable).with_name("mkdocs")


class _Loader(yaml.SafeLoader):
    """mkdocs.yml uses !!python/name tags; here they only need to parse."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: suffix)


def nav_files(items: list[object]) -> list[str]:
    found: list[str] = []
    for item in items:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            for value in item.values():
                found += nav_files(value) if isinstance(value, list) else [str(value)]
    return found


def test_site_builds_strict_without_warnings(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [str(MKDOCS), "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "WARNING" not in output, output
    site = tmp_path / "site"
    assert (site / "index.html").exists()
    # The questions reference is built from the generated page: per-platform defaults, table intact.
    questions = (site / "questions" / "index.html").read_text("utf-8")
    assert "Lift OS: <code>my_liftos_module</code>" in questions
    assert "(Lift OS only)" in questions
    assert "\\|" not in questions
    assert "/v&lt;N&gt;/" in questions
    # The architecture diagram: a mermaid block, and its plain-text twin for offline readers.
    architecture = (site / "generated-module" / "index.html").read_text("utf-8")
    assert 'class="mermaid"' in architecture
    assert "TaskManager" in architecture and "free slot, FIFO" in architecture


def test_every_page_is_in_the_nav() -> None:
    config = yaml.load((REPO / "mkdocs.yml").read_text("utf-8"), Loader=_Loader)
    listed = set(nav_files(config["nav"]))
    pages = {str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md")}
    assert listed == pages
    for required in ("index.md", "questions.md", "upgrading.md", "platforms/blux.md", "platforms/liftos.md"):
        assert required in listed
