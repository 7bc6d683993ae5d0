"""The docs site builds with `mkdocs build --strict`, and says nothing worth a warning."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from packaging.requirements import Requirement

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


def _extension_distributions() -> set[str]:
    """Distributions whose modules extensions/*.py import (Copier loads them in its own environment)."""
    modules: set[str] = set()
    for path in (REPO / "extensions").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.partition(".")[0])
    owners = metadata.packages_distributions()
    # "extensions": validation.py names its sibling schema_subset.py for the type checker.
    third_party = modules - set(sys.stdlib_module_names) - {"__future__", "extensions"}
    missing = sorted(m for m in third_party if m not in owners)
    assert not missing, f"extensions import modules no installed distribution provides: {missing}"
    return {_canonical(dist) for module in third_party for dist in owners[module]}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _brought_in(names: set[str]) -> set[str]:
    """The named distributions and everything they require, transitively."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = _canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here: its own requirements cannot be read
        for line in requirements:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


@pytest.mark.parametrize(
    "where", ["README.md", "docs/index.md", "template/README.md.jinja", "template/scripts/update.sh"]
)
def test_install_commands_bring_everything_the_extensions_import(where: str) -> None:
    # A user who runs the documented `pip install` must be able to copy: Copier loads the
    # extensions in its own environment, and one that cannot import stops every copy.
    text = (REPO / where).read_text("utf-8")
    commands = re.findall(r"pip install (copier\b[^\n`\"#)]*)", text)
    assert commands, f"{where} has no `pip install copier ...` command"
    needed = _extension_distributions()
    for command in commands:
        named = {token for token in command.split() if not token.startswith("-")}
        missing = needed - _brought_in(named)
        assert not missing, f"{where}: `pip install {command.strip()}` leaves out {sorted(missing)}"


def test_the_architecture_page_lists_every_module_of_the_package() -> None:
    layout = (REPO / "docs" / "generated-module.md").read_text("utf-8")
    package = REPO / "template" / "src" / "{{ package_name }}"
    names = {p.name.removesuffix(".jinja") for p in package.iterdir() if p.is_file()}
    modules = {n for n in names if n.endswith(".py") and n not in ("__init__.py", "__main__.py")}
    missing = sorted(m for m in modules if f"── {m}" not in layout)
    assert not missing, f"docs/generated-module.md's layout leaves out {missing}"
