"""Upgrades: projects generated from a past release take `copier update` to this one.

For each answer set: generate from the newest release (tests/releases.yml) that
renders its platform (the "default" set also from every older one), commit,
make user edits in code, docs and settings, update to the current template,
and check that the edits survive, the answers are kept, every conflict is
reported, and the project's own tests still pass: the updated tree must equal a
fresh render plus the edits, byte for byte, and test_pytest runs the fresh
render's suite; the tests marked `process` (real servers and CLIs) run here, in
the updated project, on the hand-written sets.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml
from conftest import (
    ANSWER_SETS,
    HAND_SETS,
    RELEASES,
    REPO,
    ModuleEnv,
    run_suite,
    starts,
    template_snapshot,
    tree,
    without_origin,
)

CURRENT = "v999.0.0"  # above any real release, so Copier's "latest" is this one
GIT = ["git", "-c", "user.name=modforge tests", "-c", "user.email=tests@modforge.invalid", "-c", "commit.gpgsign=false"]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone tagged with every release and the working tree as the current one."""
    clone = tmp_path_factory.mktemp("template") / "modforge"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    # The working tree, uncommitted changes included, is what "current" means here:
    # the harness's own copy of it (the files Copier would see), deletions included.
    current = template_snapshot()
    shutil.copytree(current, clone, dirs_exist_ok=True)
    for rel in git(clone, "ls-files", "-z").split("\0"):
        if rel and not (current / rel).exists():
            (clone / rel).unlink()
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "--allow-empty", "-m", "current working tree")
    for release in RELEASES:
        git(clone, "tag", f"v{release['version']}", release["commit"])
    git(clone, "tag", CURRENT)
    # Packed, as a template fetched from a remote is: Copier clones this repository
    # for every render and update here, and a local clone hard-links each loose object.
    git(clone, "gc", "-q", "--prune=now")
    return clone


def generate(template: Path, dst: Path, answers: dict[str, Any], ref: str) -> None:
    copier.run_copy(str(template), str(dst), data=answers, defaults=True, unsafe=True, vcs_ref=ref, quiet=True)
    git(dst, "init", "-q")
    git(dst, "add", "-A")
    git(dst, "commit", "-q", "-m", f"generated from {ref}")


def questions(template: Path, ref: str) -> set[str]:
    """The question keys copier.yml has at a release."""
    spec = yaml.safe_load(git(template, "show", f"{ref}:copier.yml"))
    return {k for k in spec if not k.startswith("_")}


def update_script(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the project's scripts/update.sh with this harness's copier on PATH."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        ["scripts/update.sh", *args], cwd=project, env=env, capture_output=True, text=True, check=False, timeout=300
    )


def conflicts(project: Path) -> set[str]:
    """What scripts/update.sh reports, found independently: markers and .rej files."""
    found = set()
    for path in project.rglob("*"):
        if ".git" in path.parts or not path.is_file():
            continue
        if path.suffix == ".rej":
            found.add(str(path.relative_to(project)))
            continue
        lines = path.read_text("utf-8", errors="replace").splitlines()
        if any(line.startswith(("<<<<<<< ", ">>>>>>> ")) or line in {"<<<<<<<", ">>>>>>>"} for line in lines):
            found.add(str(path.relative_to(project)))
    return found


USER_MODULE = '"""Our own code."""\n\nVALUE = 42\n'
USER_CODE = '\n\ndef user_helper() -> str:\n    """Added by the module\'s developers."""\n    return "kept"\n'
USER_DOC = "\n## Our team notes\n\nKept across template updates.\n"
USER_SETTING = "\n# Our deployment overrides\nUSER_SETTING_KEPT=1\n"


def make_user_edits(project: Path, package: str) -> None:
    """What a team does to its module: a new module, a change inside a generated one, docs, settings."""
    (project / "src" / package / "custom.py").write_text(USER_MODULE, "utf-8")
    for rel, text in (
        (f"src/{package}/analysis.py", USER_CODE),
        ("README.md", USER_DOC),
        (".env.example", USER_SETTING),
    ):
        with (project / rel).open("a", encoding="utf-8") as handle:
            handle.write(text)


def upgrades() -> list[Any]:
    """(answer set, release) pairs, with ids conftest.answer_set_of reads (each set runs on one worker)."""
    params = []
    for name in sorted(ANSWER_SETS):
        versions: list[str | None] = [*starts(name)] or [None]  # None: no release renders its platform
        for version in versions:
            # The newest start keeps the set's own id: its cell in the summary table.
            test_id = name if version == versions[-1] else f"{name}-from-{version}"
            params.append(pytest.param(name, version, id=test_id))
    return params


@pytest.mark.parametrize(("name", "version"), upgrades())
def test_update_from_release(
    template_repo: Path, tmp_path: Path, module_env: ModuleEnv, generated: Any, name: str, version: str | None
) -> None:
    answers = ANSWER_SETS[name]
    if version is None:
        platform = answers.get("platform", "blux")
        pytest.skip(f"no release in tests/releases.yml renders {platform} modules: nothing to update from")
    release = f"v{version}"
    project = tmp_path / "project"
    # A release refuses answers to questions it does not have yet.
    added = questions(template_repo, CURRENT) - questions(template_repo, release)
    generate(template_repo, project, {k: v for k, v in answers.items() if k not in added}, release)
    stored_before = yaml.safe_load((project / ".copier-answers.yml").read_text("utf-8"))
    package = stored_before["package_name"]
    make_user_edits(project, package)
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "our edits")

    # The update runs the way the project's README tells its team to: scripts/update.sh
    # (the same file in every release), which runs `copier update` and then reports each
    # conflict. Questions added since that release are answered in a data file, as a
    # user would; the rest take their defaults.
    data_file = tmp_path / "added-answers.yml"
    data_file.write_text(yaml.safe_dump({k: answers[k] for k in added if k in answers}), "utf-8")
    proc = update_script(project, "--defaults", "--vcs-ref", CURRENT, "--data-file", str(data_file))
    assert proc.returncode in {0, 1}, proc.stdout + proc.stderr  # 1: conflicts, checked below
    reported = {line.strip().removesuffix(" (inline conflict markers)") for line in proc.stderr.splitlines()[1:]}

    stored = yaml.safe_load((project / ".copier-answers.yml").read_text("utf-8"))
    assert stored["_commit"] == CURRENT
    kept = {k: v for k, v in stored.items() if not k.startswith("_") and k not in added}
    assert kept == {k: v for k, v in stored_before.items() if not k.startswith("_")}
    assert (project / "src" / package / "custom.py").read_text("utf-8") == USER_MODULE
    assert USER_CODE in (project / "src" / package / "analysis.py").read_text("utf-8")
    assert USER_DOC.strip() in (project / "README.md").read_text("utf-8")
    assert USER_SETTING.strip() in (project / ".env.example").read_text("utf-8")

    found = conflicts(project)
    assert not {f for f in found if f.endswith(".py")}, f"conflicts in code: {found}"

    # Outside the conflicts, the updated project is exactly a fresh render of the
    # current template plus the team's edits: nothing lost, nothing stale. The fresh
    # render is this set's own (the one test_generated_projects checks), made from the
    # working-tree copy CURRENT was committed from: it differs from a render of
    # CURRENT from git only in the answers file's lines saying where it came from
    # (test_rendering checks that), so those are compared apart.
    fresh = tmp_path / "fresh"
    for rel, data in generated(name).rendered.items():
        (fresh / rel).parent.mkdir(parents=True, exist_ok=True)
        (fresh / rel).write_bytes(data)
    fresh_answers = yaml.safe_load((fresh / ".copier-answers.yml").read_text("utf-8"))
    assert {k: stored.get(k) for k in added} == {k: fresh_answers.get(k) for k in added}
    assert stored["_src_path"] == str(template_repo)
    make_user_edits(fresh, package)
    updated, expected = without_origin(tree(project)), without_origin(tree(fresh))
    assert set(updated) == set(expected)
    assert [rel for rel in expected if rel not in found and updated[rel] != expected[rel]] == []

    # The script found exactly these conflicts, and exits 1 while there is one.
    assert proc.returncode == (1 if found else 0), proc.stdout + proc.stderr
    assert reported == found

    if name in HAND_SETS and version == starts(name)[-1]:
        # The updated project is the fresh render plus inert edits, byte for byte (above),
        # and test_pytest runs the fresh render's suite but for the tests marked `process`:
        # those run here, in the updated project, on the hand-written sets (every platform
        # and task backend), once per set: an update from an older release must reach
        # the same bytes. The pairwise sets rest on that equality alone. generated(name)
        # above installed this set's fresh render: its console script, its .pth.
        run_process_tests(module_env, project, package)


def run_process_tests(module_env: ModuleEnv, project: Path, package: str) -> None:
    """The updated project's `process` tests, its own code first on the path.

    The shared env has the fresh render of this set installed (editable, a path entry
    in a .pth file); PYTHONPATH comes before site-packages in the tests and in every
    server and CLI process they start, so the updated tree is what runs, without
    installing it and then the fresh one again.
    """
    first = {"PYTHONPATH": str(project / "src")}
    where = module_env.run("python", "-c", f"import {package}; print({package}.__file__)", cwd=project, extra_env=first)
    assert Path(where.stdout.strip()).is_relative_to(project / "src"), where.stdout + where.stderr
    run_suite(functools.partial(module_env.run, cwd=project, extra_env=first), "-m", "process")


def test_update_script_reports_conflicts(template_repo: Path, tmp_path: Path) -> None:
    """Copier exits 0 with conflicts; scripts/update.sh lists them and exits 1."""
    newer = tmp_path / "template"
    subprocess.run(["git", "clone", "-q", str(template_repo), str(newer)], check=True)
    git(newer, "checkout", "-q", CURRENT)
    git(newer, "checkout", "-q", "-b", "next")
    project = tmp_path / "project"
    generate(newer, project, {}, CURRENT)

    readme = newer / "template" / "README.md.jinja"
    first_line = readme.read_text("utf-8").splitlines()[0]
    readme.write_text(readme.read_text("utf-8").replace(first_line, first_line + " (template change)", 1), "utf-8")
    git(newer, "commit", "-qam", "next release changes the README title")
    git(newer, "tag", "v1000.0.0")

    text = (project / "README.md").read_text("utf-8")
    title = text.splitlines()[0]
    (project / "README.md").write_text(text.replace(title, title + " (our change)", 1), "utf-8")
    git(project, "commit", "-qam", "our README title")

    proc = update_script(project, "--defaults", "--vcs-ref", "v1000.0.0")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "README.md (inline conflict markers)" in proc.stderr
    assert conflicts(project) == {"README.md"}

    # Resolved and committed: the next run has nothing to report.
    (project / "README.md").write_text(text.replace(title, title + " (resolved)", 1), "utf-8")
    git(project, "commit", "-qam", "resolve")
    proc = update_script(project, "--defaults", "--vcs-ref", "v1000.0.0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no conflicts" in proc.stdout


def test_update_script_refuses_a_dirty_tree(template_repo: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    generate(template_repo, project, {}, CURRENT)
    (project / "README.md").write_text("changed\n", "utf-8")
    proc = update_script(project)
    assert proc.returncode == 2
    assert "uncommitted changes" in proc.stderr


def test_update_script_names_copier_failures_in_one_line(template_repo: Path, tmp_path: Path) -> None:
    """A release that does not exist: Copier raises (a traceback); the script says why in one line."""
    project = tmp_path / "project"
    generate(template_repo, project, {}, CURRENT)
    before = git(project, "rev-parse", "HEAD")
    proc = update_script(project, "--defaults", "--vcs-ref", "v404.0.0")
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("update: copier update failed: "), proc.stderr
    assert "v404.0.0" in last
    # Nothing was touched: the same commit, a clean worktree.
    assert git(project, "rev-parse", "HEAD") == before
    assert git(project, "status", "--porcelain") == ""
