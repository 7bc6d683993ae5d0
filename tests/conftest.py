"""Harness fixtures: render modules in-process, install them into one shared env.

Generated projects depend on the same libraries whatever the answers, so the
harness builds a single virtual environment once per run (reused across runs
while the generated dependency list is unchanged) and installs each rendered
project into it with ``--no-deps``. Rendering goes through pytest-copie, which
calls Copier in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ANSWER_SETS: dict[str, dict[str, Any]] = yaml.safe_load((REPO / "tests" / "answer_sets.yml").read_text("utf-8"))
CACHE = REPO / ".cache"


@dataclass(frozen=True)
class ModuleEnv:
    """The shared environment generated projects are installed into."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYTEST_"))}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.root)
        return env

    def run(self, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), cwd=cwd, env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )


def project_requirements(project: Path) -> list[str]:
    meta = tomllib.loads((project / "pyproject.toml").read_text("utf-8"))["project"]
    return sorted({*meta["dependencies"], *meta["optional-dependencies"]["dev"]})


@pytest.fixture(scope="session")
def module_env(copie_session: Any) -> ModuleEnv:
    """A venv holding every dependency of a generated project (not the projects)."""
    probe = copie_session.copy()
    assert probe.exit_code == 0, probe.exception
    requirements = project_requirements(probe.project_dir)
    # Build tools too, so editable installs need no isolated build env per project.
    requirements += ["hatchling", "editables"]
    key = hashlib.sha256(json.dumps([sys.version, requirements]).encode()).hexdigest()[:16]
    root = CACHE / f"module-env-{key}"
    marker = root / ".complete"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(root)
        subprocess.run(
            [str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
            check=True,
        )
        marker.write_text("\n".join(requirements))
    return ModuleEnv(root)


@dataclass(frozen=True)
class Generated:
    name: str
    answers: dict[str, Any]
    project: Path
    env: ModuleEnv

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.env.run(*args, cwd=self.project, timeout=timeout)


@pytest.fixture(scope="session")
def generated(copie_session: Any, module_env: ModuleEnv) -> Iterator[Any]:
    """Render and install an answer set once per run: ``generated("default")``."""
    cache: dict[str, Generated] = {}

    def get(name: str) -> Generated:
        if name not in cache:
            answers = ANSWER_SETS[name]
            result = copie_session.copy(extra_answers=answers)
            assert result.exit_code == 0, f"{name}: {result.exception!r}"
            project = result.project_dir
            install = module_env.run(
                "python",
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-build-isolation",
                "-e",
                ".",
                cwd=project,
            )
            assert install.returncode == 0, install.stderr
            cache[name] = Generated(name, {**result.answers}, project, module_env)
        return cache[name]

    yield get


def render(dst: Path, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Render the template in-process the way ``copier copy --trust`` does."""
    import copier

    return copier.run_copy(
        str(REPO), str(dst), data=data or {}, defaults=True, unsafe=True, vcs_ref="HEAD", quiet=True, **kwargs
    )
