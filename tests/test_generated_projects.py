"""Each answer set renders a project that installs, tests, lints and type-checks clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ANSWER_SETS
from jsonschema import Draft202012Validator

SETS = sorted(ANSWER_SETS)


def _ok(proc: object, what: str) -> None:
    rc = proc.returncode  # type: ignore[attr-defined]
    assert rc == 0, f"{what} failed (exit {rc}):\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", SETS)
def test_own_test_suite_passes(generated, name):
    proc = generated(name).run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider")
    _ok(proc, "pytest")
    assert " passed" in proc.stdout and " failed" not in proc.stdout


@pytest.mark.parametrize("name", SETS)
def test_ruff_check_clean(generated, name):
    _ok(generated(name).run("ruff", "check", "--no-cache", "."), "ruff check")


@pytest.mark.parametrize("name", SETS)
def test_ruff_format_clean(generated, name):
    _ok(generated(name).run("ruff", "format", "--check", "--no-cache", "."), "ruff format --check")


@pytest.mark.parametrize("name", SETS)
def test_mypy_strict_clean(generated, name):
    _ok(generated(name).run("mypy", "--strict", "src", "tests"), "mypy --strict")


@pytest.mark.parametrize("name", SETS)
def test_manifests_validate_with_shipped_schemas(generated, name):
    g = generated(name)
    schemas = next((g.project / "src").glob("*/schemas"))
    for doc, schema in [
        ("module.manifest.json", "module.manifest.schema.json"),
        ("doctrine.policy.json", "doctrine.policy.schema.json"),
    ]:
        instance = json.loads((g.project / "manifests" / doc).read_text("utf-8"))
        errors = [
            e.message
            for e in Draft202012Validator(json.loads((schemas / schema).read_text("utf-8"))).iter_errors(instance)
        ]
        assert errors == [], f"{doc}: {errors}"


@pytest.mark.parametrize("name", SETS)
def test_manifest_reflects_answers(generated, name):
    g = generated(name)
    manifest = json.loads((g.project / "manifests" / "module.manifest.json").read_text("utf-8"))
    a = g.answers
    assert manifest["module"]["name"] == a["module_name"]
    assert manifest["module"]["description"] == a["description"]
    assert manifest["module"]["author"] == {"name": a["author_name"], "email": a["author_email"]}
    assert manifest["integration"]["events"] == {"consumes": a["events_consumes"], "produces": a["events_produces"]}
    assert manifest["integration"]["apis"] == {"provided": a["apis_provided"], "required": a["apis_required"]}
    assert manifest["security"] == {k: a[k] for k in ("authentication", "audit_level", "data_handling")}
    assert manifest["runtime"]["port"] == a["port"]


@pytest.mark.parametrize("name", SETS)
def test_cli_validates_its_manifests(generated, name):
    g = generated(name)
    _ok(g.run(g.answers["module_name"], "manifest", "validate"), "manifest validate")


@pytest.mark.parametrize("name", SETS)
def test_schema_shipped_is_the_template_schema(generated, name):
    """One schema, three uses: the generated copy is byte-identical to the repo's."""
    g = generated(name)
    repo_schemas = Path(__file__).resolve().parent.parent / "template" / "src" / "{{ package_name }}" / "schemas"
    for schema in repo_schemas.glob("*.json"):
        shipped = g.project / "src" / g.answers["package_name"] / "schemas" / schema.name
        assert shipped.read_bytes() == schema.read_bytes()


@pytest.mark.parametrize("name", SETS)
def test_conditional_files(generated, name):
    g = generated(name)
    a = g.answers
    assert (g.project / "k8s").is_dir() == a["include_kubernetes"]
    assert (g.project / ".github" / "workflows").is_dir() == (a["ci_provider"] == "github")
    assert (g.project / ".gitlab-ci.yml").is_file() == (a["ci_provider"] == "gitlab")
    assert (g.project / ".copier-answers.yml").is_file()
