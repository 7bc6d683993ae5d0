"""Validate Copier answers against the chosen platform's manifest JSON Schema.

Each platform's schema (``template/src/{{ package_name }}/schemas/``:
``module.manifest.schema.json`` for BLUX, ``module.schema.json`` for Lift OS's
``module.json``) is the single source of every rule: a field's ``x-question``
names the question that fills it, its ``x-rule`` states the rule in words. The
same file ships in every generated module of that platform, which validates its
manifest with it. A question only one platform's schema maps (``kse_enabled``)
is refused for the other.

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
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import yaml
from copier.errors import UserMessageError
from jinja2 import Environment, StrictUndefined, pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context


def _sibling(name: str) -> ModuleType:
    """The extension module ``name``.py beside this one.

    Copier's extension loader imports each file by its path as
    ``copier_template_extensions.<stem>``, outside any package of ours, so a
    relative import cannot work there; tests import this file as
    ``extensions.validation``. Either way the sibling is loaded once, by path,
    under the same prefix as this module.
    """
    qualified = f"{__name__.rpartition('.')[0] or 'extensions'}.{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    spec = spec_from_file_location(qualified, Path(__file__).with_name(f"{name}.py"))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {name}.py beside {__file__}")
    module = module_from_spec(spec)
    sys.modules[qualified] = module
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    from extensions.schema_subset import SchemaError, SchemaValidator
else:
    # Not jsonschema: see schema_subset.py for why, and how the two are kept in step.
    _subset = _sibling("schema_subset")
    SchemaError, SchemaValidator = _subset.SchemaError, _subset.SchemaValidator

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "template" / "src" / "{{ package_name }}" / "schemas"
# Each platform's manifest and the schema that rules it (both ship in its modules).
SCHEMA_FILES = {"blux": "module.manifest.schema.json", "liftos": "module.schema.json"}
PLATFORMS = tuple(SCHEMA_FILES)
DEFAULT_PLATFORM = "blux"
MANIFEST_SCHEMA = SCHEMA_DIR / SCHEMA_FILES["blux"]
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
def manifest_schema(platform: str = DEFAULT_PLATFORM) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / SCHEMA_FILES[platform]).read_text(encoding="utf-8"))
    return schema


@cache
def questions() -> dict[str, dict[str, Any]]:
    """The questions of copier.yml (settings, which start with ``_``, left out)."""
    # libyaml's safe loader when PyYAML has it: 3 ms instead of 17 for copier.yml, and
    # Copier's extension loader runs this module (so this cache) anew for every render.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load((ROOT / "copier.yml").read_text(encoding="utf-8"), Loader=loader)
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
def question_fields(platform: str = DEFAULT_PLATFORM) -> dict[str, tuple[tuple[str, ...], Mapping[str, Any]]]:
    """question name -> (path in the platform's manifest, schema node)."""
    fields = _fields(manifest_schema(platform))
    return {node["x-question"]: (path, node) for path, node in fields if "x-question" in node}


@cache
def platform_only() -> dict[str, tuple[str, ...]]:
    """Questions only some platforms' manifests have -> those platforms (e.g. kse_enabled -> liftos)."""
    having: dict[str, list[str]] = {}
    for platform in PLATFORMS:
        for name in question_fields(platform):
            having.setdefault(name, []).append(platform)
    return {name: tuple(found) for name, found in having.items() if len(found) < len(PLATFORMS)}


def applies(name: str, platform: str) -> bool:
    """Whether question ``name`` means anything for a module of ``platform``."""
    return platform in platform_only().get(name, (platform,))


def _error_text(
    schema: Mapping[str, Any], start: Mapping[str, Any], error: SchemaError
) -> tuple[str | None, str | None]:
    """The deepest x-question and x-rule along the error's schema path."""
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


def _first_error(validator: SchemaValidator, value: Any) -> SchemaError | None:
    # Schema order: the first subschema that fails speaks (e.g. an apiList's item
    # format before the "contains /v1/analyze" rule that follows it in allOf).
    return min(validator.iter_errors(value), key=lambda e: [str(p) for p in e.schema_path], default=None)


@cache
def _validator(platform: str, question: str | None = None) -> SchemaValidator:
    """The platform's schema validator, or one for a question's field (built once)."""
    validator = SchemaValidator(manifest_schema(platform))
    if question is not None:
        validator = validator.evolve(schema=question_fields(platform)[question][1])
    return validator


def check_question(name: str, value: Any, platform: str = DEFAULT_PLATFORM) -> None:
    """Raise AnswerError when ``value`` breaks the rule of question ``name`` for ``platform``."""
    spec = questions()[name]
    if not applies(name, platform):
        others = " or ".join(platform_only()[name])
        raise AnswerError(name, f"applies only when platform is {others} (platform is {platform})", show_value=False)
    fields = question_fields(platform)
    if name in fields:
        _, node = fields[name]
        error = _first_error(_validator(platform, name), value)
        if error is not None:
            _, rule = _error_text(manifest_schema(platform), node, error)
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
    if questions()[name].get("multiselect"):
        # Copier wants a YAML list here and raises a traceback for anything else.
        value = raw
        if isinstance(raw, str):
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = None
        if not isinstance(value, list):
            example = ", ".join(map(str, _choices(questions()[name])[:2]))
            raise AnswerError(name, f"must be a YAML list of choices, e.g. [{example}]", raw)
        return value
    if kind == "yaml" and isinstance(raw, str):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError:
            raise AnswerError(name, "must be valid YAML, e.g. [a, b]", raw) from None
    if kind == "str" and not isinstance(raw, str):
        return str(raw)
    return raw


def platform_of(answers: Mapping[str, Any]) -> str:
    return str(answers.get("platform", DEFAULT_PLATFORM))


def build_manifest(answers: Mapping[str, Any]) -> dict[str, Any]:
    """The platform's module manifest, filled from the answers through ``x-question``.

    Fields without a question take the schema's ``default`` (e.g. requirements).
    """
    schema = manifest_schema(platform_of(answers))
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
    """The doctrine policy a new BLUX module starts with: exactly what the manifest declares."""
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


def check_manifest(manifest: Mapping[str, Any], platform: str = DEFAULT_PLATFORM) -> None:
    """Whole-manifest rules, cross-field ones included."""
    schema = manifest_schema(platform)
    error = _first_error(_validator(platform), manifest)
    if error is not None:
        question, rule = _error_text(schema, schema, error)
        raise AnswerError(question or "/".join(map(str, error.path)), rule or error.message, error.instance)


def check_all(answers: Mapping[str, Any]) -> None:
    """Every answer that applies to the chosen platform, then the manifest built from them."""
    platform = platform_of(answers)
    check_question("platform", platform)
    for name in questions():
        if not computed(name) and name in answers and applies(name, platform):
            check_question(name, answers[name], platform)
    check_manifest(build_manifest(answers), platform)


class _Renderer:
    """Renders copier.yml's expressions, each compiled once."""

    def __init__(self, filters: Mapping[str, Any]) -> None:
        self.env = Environment(undefined=StrictUndefined, keep_trailing_newline=True)
        self.env.filters.update(filters)
        self.env.globals.update(preflight=lambda: True, final_check=lambda: False)
        self.compiled: dict[str, Any] = {}

    def render(self, source: str, answers: Mapping[str, Any]) -> str:
        template = self.compiled.get(source)
        if template is None:
            template = self.compiled[source] = self.env.from_string(source)
        return str(template.render(answers))


@cache
def _resolver_env(filters: tuple[tuple[str, Any], ...]) -> _Renderer:
    return _Renderer(dict(filters))


def resolve(given: Mapping[str, Any], filters: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The answers a non-interactive Copier run works with, for tools and tests.

    ``given`` is parsed as ``--data`` is; every other question takes its default,
    rendered (defaults may depend on earlier answers, e.g. the port on the
    platform) with ``filters`` (extensions/naming.py's). Returns the answers,
    hidden questions included as Copier's render context has them, and the names
    of the questions whose ``when`` holds: the ones Copier records.
    """
    env = _resolver_env(tuple(sorted(filters.items())))
    answers: dict[str, Any] = {}
    asked: set[str] = set()
    for name, spec in questions().items():
        when = spec.get("when", True)
        if isinstance(when, str):
            when = env.render(when, answers).strip().lower() not in {"", "false", "0", "none"}
        if name == GUARD_QUESTION:
            continue
        if name in given:
            value = parse_data(name, given[name])
        else:
            default = spec.get("default")
            if isinstance(default, str) and ("{{" in default or "{%" in default):
                default = env.render(default, answers)
            value = parse_data(name, default)
        answers[name] = value
        if when:
            asked.add(name)
    return answers, asked


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
    try:
        platform = parse_data("platform", data.get("platform", DEFAULT_PLATFORM))
        check_question("platform", platform)
    except AnswerError as error:
        raise UserMessageError(str(error)) from None
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
            check_question(name, parse_data(name, raw), platform)
        except AnswerError as error:
            raise UserMessageError(str(error)) from None
    return True


@pass_context
def answer_error(ctx: Context, name: str) -> str:
    if not _interactive(ctx, name):
        return ""  # preflight() or final_check() reports it, in one line
    try:
        check_question(name, ctx[name], str(ctx["platform"]))
    except AnswerError as error:
        return str(error).split(": ", 1)[1]
    return ""


@pass_context
def manifest_error(ctx: Context) -> str:
    if not _interactive(ctx, "license"):
        return ""
    answers = _answers(ctx)
    try:
        check_manifest(build_manifest(answers), platform_of(answers))
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
