"""Rendering: defaults are valid, hostile text renders literally, every file still parses."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import ANSWER_SETS, REPO, parse_files, render, template_snapshot, tree, without_origin

HOSTILE = [
    "Quotes \" ' and \\ backslash",
    "Jinja {{ module_name }} and {% if true %}x{% endif %} stay text",
    "Shell $(touch /tmp/modforge-pwned) and `id` and ${HOME} stay text",
    "Ünïcödé, 中文, emoji 🚀 and a tab\tinside",
    "TOML \"\"\" triple and ''' quotes",
    "<script>alert('x')</script> & ampersands",
]


def test_defaults_render_and_every_default_is_valid(tmp_path: Path) -> None:
    render(tmp_path / "m", from_git=True)
    parse_files(tree(tmp_path / "m"))
    answers = yaml.safe_load((tmp_path / "m" / ".copier-answers.yml").read_text("utf-8"))
    assert answers["module_name"] == "my-blux-module"
    assert answers["_src_path"] == str(REPO)
    assert "env_prefix" not in answers and "answers_checked" not in answers


# Ids that are not bare set names: this is not one of the per-set checks in the summary table.
@pytest.mark.parametrize("name", ["default", "liftos-keyword-redis"], ids=lambda name: f"of-{name}")
def test_the_harness_snapshot_renders_what_git_renders(tmp_path: Path, name: str) -> None:
    """The harness renders from a copy of the working tree (conftest.template_snapshot):
    the same files, bytes and modes as from git, but for where the answers say it came from."""

    def files_and_modes(root: Path) -> dict[str, tuple[int, bytes]]:
        files = without_origin(tree(root))
        return {name: ((root / name).stat().st_mode, data) for name, data in files.items()}

    render(tmp_path / "git", ANSWER_SETS[name], from_git=True)
    render(tmp_path / "snapshot", ANSWER_SETS[name])
    from_git, from_snapshot = files_and_modes(tmp_path / "git"), files_and_modes(tmp_path / "snapshot")
    assert len(from_git) > 50 and from_snapshot == from_git


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_description_renders_literally(tmp_path: Path, text: str) -> None:
    answers = {"description": text.replace("\t", " "), "author_name": text.replace("\t", " ")[:100]}
    project = tmp_path / "m"
    render(project, answers)
    parse_files(tree(project))
    manifest = json.loads((project / "manifests" / "module.manifest.json").read_text("utf-8"))
    assert manifest["module"]["description"] == answers["description"]
    assert manifest["module"]["author"]["name"] == answers["author_name"]
    pyproject = tomllib.loads((project / "pyproject.toml").read_text("utf-8"))
    assert pyproject["project"]["description"] == answers["description"]
    assert not Path("/tmp/modforge-pwned").exists()
    stored = yaml.safe_load((project / ".copier-answers.yml").read_text("utf-8"))
    assert stored["description"] == answers["description"]


def test_tab_is_a_control_character_and_refused(tmp_path: Path) -> None:
    from copier.errors import UserMessageError

    with pytest.raises(UserMessageError, match="question 'description'"):
        render(tmp_path / "m", {"description": "a\tb"})


def test_caches_in_the_template_never_reach_projects(tmp_path: Path) -> None:
    """_subdirectory drops Copier's default excludes; ours must hold."""
    src = tmp_path / "tpl"
    subprocess.run(["git", "clone", "-q", str(REPO), str(src)], check=True)
    # Work on the clone's working tree (dirty templates are rendered as they are).
    for junk in (
        "template/__pycache__/x.pyc",
        "template/src/{{ package_name }}/__pycache__/y.pyc",
        "template/.mypy_cache/z",
    ):
        (src / junk).parent.mkdir(parents=True, exist_ok=True)
        (src / junk).write_text("junk")
    subprocess.run(["git", "-C", str(src), "add", "-f", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@e.x", "commit", "-qm", "junk"], check=True
    )
    import copier

    copier.run_copy(str(src), str(tmp_path / "m"), defaults=True, unsafe=True, vcs_ref="HEAD", quiet=True)
    names = {p.name for p in (tmp_path / "m").rglob("*")}
    assert not names & {"__pycache__", ".mypy_cache", "x.pyc", "y.pyc"}


@pytest.mark.parametrize(
    ("data", "needs_secret"),
    [({}, True), ({"platform": "liftos"}, True), ({"authentication": "none", "data_handling": "standard"}, False)],
    ids=["blux", "liftos", "no-auth"],
)
def test_next_steps_set_the_secret_serve_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, str], needs_secret: bool
) -> None:
    # The message Copier prints after a copy is what most users run first: with authentication
    # on, `serve` refuses to start without a JWT secret, so the message must set it.
    import copier

    copier.run_copy(str(template_snapshot()), str(tmp_path / "m"), data=data, defaults=True, unsafe=True, quiet=False)
    steps = capsys.readouterr().err.partition("Next steps:")[2].strip().partition("\n\n")[0]
    commands = [line.partition("  #")[0].strip() for line in steps.splitlines()]
    serve = next(i for i, command in enumerate(commands) if command.endswith(" serve"))
    exports = [i for i, command in enumerate(commands) if command.startswith("export ")]
    readme = (tmp_path / "m" / "README.md").read_text("utf-8")
    if needs_secret:
        assert len(exports) == 1 and exports[0] < serve, steps
        assert commands[exports[0]] in readme.splitlines()  # the variable and recipe the README gives
    else:
        assert not exports, steps
    assert commands[0] == f"cd {tmp_path / 'm'}" and "python3 -m venv .venv" in commands[1]
