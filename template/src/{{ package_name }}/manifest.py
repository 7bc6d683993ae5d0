"""Load and validate ``module.manifest.json`` and ``doctrine.policy.json``.

Both files are checked against the JSON Schemas shipped inside this package, then
against the rules that span the two documents (the policy may narrow the
manifest, never widen it). Every problem is collected, so one run lists them all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .constants import MANIFEST_FILE, POLICY_FILE
from .errors import StartupError

_PACKAGE = __name__.rpartition(".")[0]


class ManifestError(StartupError):
    """The manifests are missing or invalid; ``problems`` holds one line each."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid module manifests:\n" + "\n".join(self.problems))


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    description: str
    type: str
    capabilities: tuple[str, ...]
    author_name: str
    author_email: str
    license: str
    requirements: tuple[tuple[str, str], ...]
    events_consumes: tuple[str, ...]
    events_produces: tuple[str, ...]
    apis_provided: tuple[str, ...]
    apis_required: tuple[str, ...]
    authentication: str
    audit_level: str
    data_handling: str
    package: str
    port: int
    max_concurrent_tasks: int
    python: str

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Manifest:
        module, integration = doc["module"], doc["integration"]
        security, runtime = doc["security"], doc["runtime"]
        return cls(
            name=module["name"],
            version=module["version"],
            description=module["description"],
            type=module["type"],
            capabilities=tuple(module["capabilities"]),
            author_name=module["author"]["name"],
            author_email=module["author"]["email"],
            license=module["license"],
            requirements=tuple(sorted(module["requirements"].items())),
            events_consumes=tuple(integration["events"]["consumes"]),
            events_produces=tuple(integration["events"]["produces"]),
            apis_provided=tuple(integration["apis"]["provided"]),
            apis_required=tuple(integration["apis"]["required"]),
            authentication=security["authentication"],
            audit_level=security["audit_level"],
            data_handling=security["data_handling"],
            package=runtime["package"],
            port=runtime["port"],
            max_concurrent_tasks=runtime["max_concurrent_tasks"],
            python=runtime["python"],
        )


@dataclass(frozen=True)
class Policy:
    module: str
    version: str
    principles: tuple[str, ...]
    may_produce: frozenset[str]
    may_consume: frozenset[str]
    audit_level: str
    record_payloads: bool
    authentication: str
    max_concurrent_tasks: int
    max_request_bytes: int

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Policy:
        return cls(
            module=doc["policy"]["module"],
            version=doc["policy"]["version"],
            principles=tuple(doc["principles"]),
            may_produce=frozenset(doc["events"]["may_produce"]),
            may_consume=frozenset(doc["events"]["may_consume"]),
            audit_level=doc["audit"]["level"],
            record_payloads=doc["audit"]["record_payloads"],
            authentication=doc["access"]["authentication"],
            max_concurrent_tasks=doc["limits"]["max_concurrent_tasks"],
            max_request_bytes=doc["limits"]["max_request_bytes"],
        )


@dataclass(frozen=True)
class Manifests:
    directory: Path
    manifest: Manifest
    policy: Policy


@cache
def load_schema(file_name: str) -> dict[str, Any]:
    """A schema shipped in ``<package>/schemas/`` (package data, read via importlib)."""
    text = files(_PACKAGE).joinpath("schemas", file_name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


def _json_path(error: ValidationError) -> str:
    # error.json_path is "$" plus ".key"/"[i]" parts: the field, not the schema.
    return error.json_path


def _rule_for(schema: Mapping[str, Any], error: ValidationError) -> str | None:
    """The deepest ``x-rule`` on the schema path of an error, following local $refs.

    x-rule states the rule in words ("must be kebab-case ..."), which reads better
    than jsonschema's generic "... should not be valid under ..." messages.
    """
    rule: str | None = None
    node: Any = schema
    for key in error.schema_path:
        if isinstance(node, Mapping) and isinstance(node.get("x-rule"), str):
            rule = node["x-rule"]
        if isinstance(node, Mapping) and key == "$ref":
            ref = node["$ref"]
            if not (isinstance(ref, str) and ref.startswith("#/")):
                break
            node = schema
            for part in ref[2:].split("/"):
                node = node[part]
            continue
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    if isinstance(node, Mapping) and isinstance(node.get("x-rule"), str):
        rule = node["x-rule"]
    return rule


def _schema_problems(label: str, doc: Any, schema_file: str) -> list[str]:
    schema = load_schema(schema_file)
    validator = Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: (e.json_path, e.message)):
        rule = _rule_for(schema, error)
        if rule is not None and error.validator not in ("required", "additionalProperties"):
            message = f"{rule} (got {json.dumps(error.instance, ensure_ascii=False)[:80]})"
        else:
            message = error.message
        problems.append(f"{label}: {_json_path(error)}: {message}")
    return problems


def _read(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, f"{path}: $: file not found"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path}: $: cannot be read: {exc}"
    except json.JSONDecodeError as exc:
        return None, f"{path}: $: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"


def _subset(
    label: str, path: str, narrow: Iterable[str], wide: Iterable[str], what: str
) -> list[str]:
    extra = sorted(set(narrow) - set(wide))
    if not extra:
        return []
    return [f"{label}: {path}: {', '.join(extra)} not declared in the manifest's {what}"]


def cross_problems(manifest: Manifest, policy: Policy, policy_label: str) -> list[str]:
    """Rules that span the two documents: the policy narrows, never widens."""
    problems = []
    if policy.module != manifest.name:
        problems.append(
            f"{policy_label}: $.policy.module: must name this module "
            f"{manifest.name!r} (got {policy.module!r})"
        )
    problems += _subset(
        policy_label,
        "$.events.may_produce",
        policy.may_produce,
        manifest.events_produces,
        "integration.events.produces",
    )
    problems += _subset(
        policy_label,
        "$.events.may_consume",
        policy.may_consume,
        manifest.events_consumes,
        "integration.events.consumes",
    )
    if policy.audit_level != manifest.audit_level:
        problems.append(
            f"{policy_label}: $.audit.level: must equal the manifest's security.audit_level "
            f"{manifest.audit_level!r} (got {policy.audit_level!r})"
        )
    if policy.authentication != manifest.authentication:
        problems.append(
            f"{policy_label}: $.access.authentication: must equal the manifest's "
            f"security.authentication {manifest.authentication!r} (got {policy.authentication!r})"
        )
    if policy.record_payloads and manifest.data_handling == "encrypted":
        problems.append(
            f"{policy_label}: $.audit.record_payloads: must be false when the manifest's "
            "security.data_handling is 'encrypted'"
        )
    return problems


def load_manifests(directory: Path | str) -> Manifests:
    """Read, validate and return both documents, or raise ManifestError listing every problem."""
    directory = Path(directory)
    manifest_path, policy_path = directory / MANIFEST_FILE, directory / POLICY_FILE
    problems: list[str] = []
    docs: dict[str, Any] = {}
    for path, schema_file in (
        (manifest_path, "module.manifest.schema.json"),
        (policy_path, "doctrine.policy.schema.json"),
    ):
        doc, problem = _read(path)
        if problem is not None:
            problems.append(problem)
            continue
        found = _schema_problems(str(path), doc, schema_file)
        problems += found
        if not found:
            docs[path.name] = doc
    if problems:
        raise ManifestError(problems)
    manifest = Manifest.from_document(docs[MANIFEST_FILE])
    policy = Policy.from_document(docs[POLICY_FILE])
    problems = cross_problems(manifest, policy, str(policy_path))
    if problems:
        raise ManifestError(problems)
    return Manifests(directory=directory, manifest=manifest, policy=policy)
