"""Validate Copier answers against the module manifest's JSON Schema.

The schema (``template/src/{{ package_name }}/schemas/module.manifest.schema.json``)
is the single source of every rule: a field's ``x-question`` names the question
that fills it, its ``x-rule`` states the rule in words. The same file ships in
every generated module, which validates its manifest with it.

Copier turns a validator's output into a traceback when an answer comes from
``--data``, ``--data-file`` or ``--defaults``. So in those runs the per-question
validators stay quiet and two guards speak instead, raising Copier's
``UserMessageError``, which the CLI prints as one line before exiting 1, with
nothing written:

- ``preflight()`` (the first question's ``when``) checks every ``--data`` key:
  unknown keys, values that would not even parse, values that break a rule;
- ``final_check()`` (the last, hidden question's ``when``) checks every answer,
  defaults included, then the whole manifest with its cross-field rules.

Interactive answers get the same messages from the validators, and Copier asks
again.
"""

from __future__ import annotations

import json
import keyword
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from copier.errors import UserMessageError
from jinja2 import Environment, pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "template" / "src" / "{{ package_name }}" / "schemas"
MANIFEST_SCHEMA = SCHEMA_DIR / "module.manifest.schema.json"
PLATFORMS_READY = ("blux",)
_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}


class AnswerError(Exception):
    """One broken rule, already worded for the user."""

    def __init__(self, question: str, rule: str, value: Any = None, *, show_value: bool = True) -> None:
        got = f" (got {_short(value)})" if show_value else ""
        super().__init__(f"Validation error for question '{question}': {rule}{got}")
        self.question = question


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


@cache
def manifest_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(MANIFEST_SCHEMA.read_text(encoding="utf-8"))
    return schema


@cache
def questions() -> dict[str, dict[str, Any]]:
    """The questions of copier.yml (settings, which start with ``_``, left out)."""
    data = yaml.safe_load((ROOT / "copier.yml").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


# The hidden last question whose `when` runs final_check(); never an answer.
GUARD_QUESTION = "answers_checked"


def computed(name: str) -> bool:
    """Not answerable: derived from other answers (``when: false``), or the guard."""
    return name == GUARD_QUESTION or questions()[name].get("when") is False


def _deref(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref is supported, got {ref}")
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def _fields(node: Mapping[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Mapping[str, Any]]]:
    """Every ``properties`` node below ``node`` with its instance path."""
    for name, child in node.get("properties", {}).items():
        yield (*path, name), child
        yield from _fields(child, (*path, name))


@cache
def question_fields() -> dict[str, tuple[tuple[str, ...], Mapping[str, Any]]]:
    """question name -> (path in the manifest, schema node)."""
    return {node["x-question"]: (path, node) for path, node in _fields(manifest_schema()) if "x-question" in node}


def _error_text(start: Mapping[str, Any], error: ValidationError) -> tuple[str | None, str | None]:
    """The deepest x-question and x-rule along the error's schema path."""
    schema = manifest_schema()
    node: Any = start
    found_q = start.get("x-question")
    found_r = start.get("x-rule")
    for key in error.schema_path:
        if isinstance(node, Mapping):
            node = _deref(schema, node)
            found_r = node.get("x-rule", found_r)
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, Mapping):
            found_q = node.get("x-question", found_q)
            found_r = node.get("x-rule", found_r)
    return found_q, found_r


def _first_error(validator: Validator, value: Any) -> ValidationError | None:
    # Schema order: the first subschema that fails speaks (e.g. an apiList's item
    # format before the "contains /v1/analyze" rule that follows it in allOf).
    return min(validator.iter_errors(value), key=lambda e: [str(p) for p in e.schema_path], default=None)


def check_question(name: str, value: Any) -> None:
    """Raise AnswerError when ``value`` breaks the rule of question ``name``."""
    spec = questions()[name]
    if name == "platform" and value not in PLATFORMS_READY and value in _choices(spec):
        raise AnswerError(
            name, f"'{value}' modules are not available yet; supported: {', '.join(PLATFORMS_READY)}", show_value=False
        )
    fields = question_fields()
    if name in fields:
        _, node = fields[name]
        validator = Draft202012Validator(manifest_schema()).evolve(schema=node)
        error = _first_error(validator, value)
        if error is not None:
            _, rule = _error_text(node, error)
            raise AnswerError(name, rule or error.message, value)
        if name == "package_name":
            _check_package_name(value)
        return
    choices = _choices(spec)
    if choices and value not in choices:
        raise AnswerError(name, "must be one of " + ", ".join(map(str, choices)), value)
    if spec.get("type") == "bool" and not isinstance(value, bool):
        raise AnswerError(name, "must be true or false", value)


def _check_package_name(value: str) -> None:
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        raise AnswerError("package_name", "must not be a Python keyword", value)
    if value in sys.stdlib_module_names:
        raise AnswerError("package_name", "must not shadow a standard library module", value)


def _choices(spec: Mapping[str, Any]) -> list[Any]:
    choices = spec.get("choices") or []
    return list(choices.values()) if isinstance(choices, Mapping) else list(choices)


def parse_data(name: str, raw: Any) -> Any:
    """Turn a ``--data`` value into what Copier would, refusing what it would mangle."""
    kind = questions()[name].get("type", "str")
    if kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise AnswerError(name, "must be an integer", raw)
        try:
            return int(raw)
        except ValueError:
            raise AnswerError(name, "must be an integer", raw) from None
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        # Copier casts any other string by truthiness ("maybe" -> True): refuse instead.
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise AnswerError(name, "must be true or false", raw)
    if kind == "yaml" and isinstance(raw, str):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError:
            raise AnswerError(name, "must be valid YAML, e.g. [a, b]", raw) from None
    if kind == "str" and not isinstance(raw, str):
        return str(raw)
    return raw


def build_manifest(answers: Mapping[str, Any]) -> dict[str, Any]:
    """The module manifest, filled from the answers through ``x-question``.

    Fields without a question take the schema's ``default`` (e.g. requirements).
    """
    schema = manifest_schema()
    manifest: dict[str, Any] = {}

    def fill(node: Mapping[str, Any], target: dict[str, Any]) -> None:
        for key, child in node.get("properties", {}).items():
            if key == "$schema":
                continue
            if "x-question" in child:
                target[key] = answers[child["x-question"]]
            elif "default" in child:
                target[key] = child["default"]
            elif "properties" in child:
                target[key] = {}
                fill(child, target[key])

    fill(schema, manifest)
    return manifest


def build_policy(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The doctrine policy a new module starts with: exactly what the manifest declares."""
    security = manifest["security"]
    return {
        "policy": {"module": manifest["module"]["name"], "version": "1.0"},
        "principles": [
            "Reflection > Reaction",
            "Coordination > Concentration",
            "Coherence > Complexity",
            "Principles > Preferences",
        ],
        "events": {
            "may_produce": list(manifest["integration"]["events"]["produces"]),
            "may_consume": list(manifest["integration"]["events"]["consumes"]),
        },
        "audit": {
            "level": security["audit_level"],
            # Raw payloads never reach the audit trail of an encrypted module.
            "record_payloads": security["audit_level"] == "verbose" and security["data_handling"] == "standard",
        },
        "access": {"authentication": security["authentication"]},
        "limits": {
            "max_concurrent_tasks": manifest["runtime"]["max_concurrent_tasks"],
            "max_request_bytes": 1048576,
        },
    }


def check_manifest(manifest: Mapping[str, Any]) -> None:
    """Whole-manifest rules, cross-field ones included."""
    validator = Draft202012Validator(manifest_schema())
    error = _first_error(validator, manifest)
    if error is not None:
        question, rule = _error_text(manifest_schema(), error)
        raise AnswerError(question or "/".join(map(str, error.path)), rule or error.message, error.instance)


def check_all(answers: Mapping[str, Any]) -> None:
    for name in questions():
        if not computed(name) and name in answers:
            check_question(name, answers[name])
    check_manifest(build_manifest(answers))


# --- Jinja side -------------------------------------------------------------


def _conf(ctx: Context, key: str) -> Any:
    # Copier hands templates a mapping here (a LazyDict), not an object.
    return ctx["_copier_conf"][key]


def _interactive(ctx: Context, name: str) -> bool:
    return not _conf(ctx, "defaults") and name not in (_conf(ctx, "data") or {})


def _answers(ctx: Context) -> dict[str, Any]:
    return {name: ctx[name] for name in questions() if name in ctx}


@pass_context
def preflight(ctx: Context) -> bool:
    data = _conf(ctx, "data") or {}
    for name, raw in data.items():
        if name.startswith("_"):
            continue  # Copier's own metadata (_commit, _src_path) travels as data on update
        if name not in questions():
            raise UserMessageError(
                f"Unknown answer '{name}': this template has no such question "
                f"(questions: {', '.join(n for n in questions() if not computed(n))})"
            )
        if computed(name):
            raise UserMessageError(f"Answer '{name}' is computed from other answers and cannot be given")
        try:
            check_question(name, parse_data(name, raw))
        except AnswerError as error:
            raise UserMessageError(str(error)) from None
    return True


@pass_context
def answer_error(ctx: Context, name: str) -> str:
    if not _interactive(ctx, name):
        return ""  # preflight() or final_check() reports it, in one line
    try:
        check_question(name, ctx[name])
    except AnswerError as error:
        return str(error).split(": ", 1)[1]
    return ""


@pass_context
def manifest_error(ctx: Context) -> str:
    if not _interactive(ctx, "license"):
        return ""
    try:
        check_manifest(build_manifest(_answers(ctx)))
    except AnswerError as error:
        return str(error)
    return ""


@pass_context
def final_check(ctx: Context) -> bool:
    try:
        check_all(_answers(ctx))
    except AnswerError as error:
        raise UserMessageError(str(error)) from None
    return False


@pass_context
def manifest_json(ctx: Context) -> str:
    return json.dumps(build_manifest(_answers(ctx)), indent=2, ensure_ascii=False)


@pass_context
def policy_json(ctx: Context) -> str:
    return json.dumps(build_policy(build_manifest(_answers(ctx))), indent=2, ensure_ascii=False)


class ValidationExtension(Extension):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.globals.update(
            preflight=preflight,
            answer_error=answer_error,
            manifest_error=manifest_error,
            final_check=final_check,
            manifest_json=manifest_json,
            policy_json=policy_json,
        )
