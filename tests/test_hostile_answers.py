"""Property-based tests: answer sets drawn from the questions' own rules.

Every strategy is built from the rules as the template states them: the choices in
``copier.yml`` and the patterns, lengths, item counts and ranges of the manifest JSON
Schema (read through ``extensions.validation``). Broken variants break one rule at a time
(too long, wrong charset, control characters, duplicates, out of range, unknown keys).

- an accepted set renders a project whose manifests validate against the schemas it
  ships, whose Python compiles and whose JSON / TOML / YAML parse, with hostile text
  arriving intact;
- a rejected set fails with Copier's ``UserMessageError``: one line naming the question
  (or the unknown answer), no traceback, no destination directory.

Rendering takes about half a second, so the example counts are small and the runs
derandomized: CI replays the same draws every time. To explore further, e.g.
``MODFORGE_HOSTILE_SCALE=10 python3 dev.py test tests/test_hostile_answers.py``.
"""

from __future__ import annotations

import ast
import functools
import json
import keyword
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, parse_files, render, tree
from copier.errors import UserMessageError
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

sys.path.insert(0, str(REPO))

from extensions import naming, validation

# Both platforms' schemas share $defs and the fields they have in common
# (tests/test_extensions.py checks), so any of them resolves a shared node.
SCHEMA = validation.manifest_schema()
QUESTIONS = validation.questions()
FIELDS = {name: field for p in validation.PLATFORMS for name, field in validation.question_fields(p).items()}
KSE_DETAILS = ("memory_types", "search_capabilities", "kse_index_prefix", "kse_batch_size")
ANSWERABLE = [name for name in QUESTIONS if not validation.computed(name)]

# Text the escaping rules exist for: quotes, backslashes, Jinja and shell syntax,
# TOML/YAML/Markdown specials, non-ASCII, emoji, characters some formats treat as breaks.
HOSTILE = [
    '"',
    "'",
    "\\",
    "{{ module_name }}",
    "{% raw %}",
    "{#",
    "$(id)",
    "`uname`",
    "${HOME}",
    "|",
    "#",
    ": ",
    "- ",
    "&anchor",
    "*alias",
    "!!python/object",
    "<script>",
    "]]",
    "'''",
    '"""',
    "ü",
    "日本",
    "🚀",
    "\u00a0",
    "\u0085",
    "\ufeff",
    "\u200b",
    "%s",
    "\\n",
]
CONTROL = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))] + ["\u2028", "\u2029"]


def node_of(question: str) -> Mapping[str, Any]:
    """The schema node of a question, with a top-level $ref followed."""
    return validation._deref(SCHEMA, FIELDS[question][1])


def choices_of(question: str) -> list[Any]:
    return validation._choices(QUESTIONS[question])


def items_of(question: str) -> Mapping[str, Any]:
    node = node_of(question)
    if "allOf" in node:  # apis_provided: apiList plus "contains /v1/analyze"
        node = validation._deref(SCHEMA, node["allOf"][0])
    return validation._deref(SCHEMA, node["items"])


def list_node(question: str) -> Mapping[str, Any]:
    node = node_of(question)
    return validation._deref(SCHEMA, node["allOf"][0]) if "allOf" in node else node


UTF8 = st.characters(codec="utf-8")


def from_rule(node: Mapping[str, Any]) -> st.SearchStrategy[str]:
    """Strings that satisfy a schema string node: pattern, minLength, maxLength."""
    return _rule_strings(node["pattern"], node.get("minLength", 0), node.get("maxLength", 10_000))


@functools.cache
def _rule_strings(pattern: str, low: int, high: int) -> st.SearchStrategy[str]:
    # One strategy per rule, not per draw: hypothesis builds a regex strategy by
    # parsing the pattern, which cost most of these tests' time when redone per draw.
    return st.from_regex(pattern, fullmatch=True, alphabet=UTF8).filter(lambda s: low <= len(s) <= high)


# --- the rules' deny lists, for names that must not shadow anything -------------

DENIED_PACKAGES = set(node_of("package_name")["not"]["enum"])


def package_ok(name: str) -> bool:
    return not (
        keyword.iskeyword(name)
        or keyword.issoftkeyword(name)
        or name in sys.stdlib_module_names
        or name in DENIED_PACKAGES
    )


# --- accepted answers -----------------------------------------------------------


def free_text(node: Mapping[str, Any]) -> st.SearchStrategy[str]:
    """Free text within the rule, hostile fragments mixed in."""
    pattern = re.compile(node["pattern"])
    low, high = node["minLength"], node["maxLength"]
    pieces = st.one_of(st.sampled_from(HOSTILE), st.text(UTF8, min_size=1, max_size=8))
    mixed = st.lists(pieces, min_size=1, max_size=12).map("".join)
    return (
        st.one_of(mixed, from_rule(node))
        .map(lambda s: s[:high])
        .filter(lambda s: low <= len(s) and pattern.fullmatch(s) is not None)
    )


def unique_list(question: str, *, max_size: int = 4) -> st.SearchStrategy[list[str]]:
    node = list_node(question)
    return st.lists(
        from_rule(items_of(question)),
        min_size=node.get("minItems", 0),
        max_size=min(max_size, node.get("maxItems", max_size)),
        unique=True,
    )


def as_data(question: str, value: Any) -> st.SearchStrategy[Any]:
    """A value as an answer file or ``-d`` would give it: typed, or as text."""
    kind = QUESTIONS[question].get("type", "str")
    if kind == "yaml":
        return st.sampled_from([value, json.dumps(value), yaml.safe_dump(value, default_flow_style=True).strip()])
    if kind == "int":
        return st.sampled_from([value, str(value)])
    if kind == "bool":
        words = ["true", "yes", "on", "1"] if value else ["false", "no", "off", "0"]
        return st.sampled_from([value, *words])
    if QUESTIONS[question].get("multiselect"):
        return st.sampled_from([value, json.dumps(value)])
    return st.just(value)


@st.composite
def accepted_values(draw: st.DrawFn) -> dict[str, Any]:
    """One value per answerable question, each within its own rule."""
    values: dict[str, Any] = {}
    for name in ANSWERABLE:
        spec = QUESTIONS[name]
        if name != "platform" and not validation.applies(name, values["platform"]):
            continue  # another platform's question: not asked, and refused if given
        if name in KSE_DETAILS and not values["kse_enabled"]:
            continue  # asked only while the memory is on
        if name == "platform":
            values[name] = draw(st.sampled_from(validation.PLATFORMS))
        elif name == "search_capabilities":
            values[name] = draw(st.lists(st.sampled_from(choices_of(name)), min_size=1, unique=True))
        elif name == "memory_types":
            values[name] = draw(unique_list(name).filter(bool))
        elif name == "module_name":
            values[name] = draw(from_rule(node_of(name)).filter(lambda n: package_ok(naming.package_name(n))))
        elif name == "package_name":
            # Usually derived from module_name; sometimes given explicitly.
            explicit = from_rule(node_of(name)).filter(package_ok)
            chosen = draw(st.one_of(st.none(), explicit))
            if chosen is not None:
                values[name] = chosen
        elif name in ("description", "author_name"):
            values[name] = draw(free_text(node_of(name)))
        elif name in ("module_version", "author_email", "kse_index_prefix"):
            values[name] = draw(from_rule(node_of(name)))
        elif name == "apis_provided":
            apis = draw(unique_list(name))
            if "/v1/analyze" not in apis:
                apis.insert(draw(st.integers(0, len(apis))), "/v1/analyze")
            values[name] = apis
        elif spec.get("type") == "yaml":
            values[name] = draw(unique_list(name))
        elif spec.get("type") == "int":
            node = node_of(name)
            values[name] = draw(st.integers(node["minimum"], node["maximum"]))
        elif spec.get("type") == "bool":
            values[name] = draw(st.booleans())
        else:
            values[name] = draw(st.sampled_from(choices_of(name)))
    return values


def cross_field_violations(values: Mapping[str, Any]) -> list[str]:
    """The questions the manifest's cross-field rules (schema allOf) name, in schema order.

    Written out here rather than evaluated through validation.py, so the test is an
    independent oracle; ``test_oracle_covers_every_cross_field_rule`` keeps it in step.
    """
    violated = []
    encrypted = values["data_handling"] == "encrypted"
    if encrypted and values["authentication"] == "none":
        violated.append("authentication")
    if encrypted and values["audit_level"] == "none":
        violated.append("audit_level")
    if values["module_type"] == "connector" and not values["apis_required"]:
        violated.append("apis_required")
    if values["platform"] == "liftos" and values["kse_enabled"]:
        violated += [name for name in ("memory_types", "search_capabilities") if not values[name]]
    return violated


@st.composite
def data_of(draw: st.DrawFn, values: dict[str, Any]) -> dict[str, Any]:
    """The values as ``--data``: some typed, some as text; some left to their defaults."""
    data = {}
    for name, value in values.items():
        default = QUESTIONS[name].get("default")
        if name != "module_name" and draw(st.booleans()) and _same(name, value, default):
            continue  # leave it to the default, which says the same
        data[name] = draw(as_data(name, value))
    return data


def _same(name: str, value: Any, default: Any) -> bool:
    if name == "package_name" or "{{" in str(default):
        return False
    return bool(validation.parse_data(name, default) == value)


# MODFORGE_HOSTILE_SCALE=10 explores: ten times the examples, fresh random draws each run.
SCALE = int(os.environ.get("MODFORGE_HOSTILE_SCALE", "1"))


def examples(count: int) -> settings:
    """Few, slow, reproducible examples: each one renders (or refuses) a whole project."""
    return settings(
        max_examples=count * SCALE,
        deadline=None,
        derandomize=SCALE == 1,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# --- checks on a rendered project -------------------------------------------------


def schema_errors(instance: Any, schema_path: Path) -> list[str]:
    schema = json.loads(schema_path.read_text("utf-8"))
    return [error.message for error in Draft202012Validator(schema).iter_errors(instance)]


def check_project(dst: Path, values: Mapping[str, Any]) -> None:
    package = values.get("package_name") or naming.package_name(values["module_name"])
    schemas = dst / "src" / package / "schemas"
    if values["platform"] == "blux":
        manifest = json.loads((dst / "manifests" / "module.manifest.json").read_text("utf-8"))
        policy = json.loads((dst / "manifests" / "doctrine.policy.json").read_text("utf-8"))
        assert schema_errors(manifest, schemas / "module.manifest.schema.json") == []
        assert schema_errors(policy, schemas / "doctrine.policy.schema.json") == []
        # What was asked is what was written, hostile text included.
        module, author = manifest["module"], manifest["module"]["author"]
        assert (author["name"], author["email"]) == (values["author_name"], values["author_email"])
        port = manifest["runtime"]["port"]
    else:
        manifest = module = json.loads((dst / "manifests" / "module.json").read_text("utf-8"))
        assert schema_errors(manifest, schemas / "module.schema.json") == []
        assert (module["author"], module["author_email"]) == (values["author_name"], values["author_email"])
        port = manifest["configuration"]["port"]
        kse = manifest["kse_integration"]
        assert kse["enabled"] == values["kse_enabled"]
        if values["kse_enabled"]:
            assert kse["memory_types"] == values["memory_types"]
            # Copier keeps a multiselect answer in the choices' order.
            assert kse["search_capabilities"] == [
                c for c in choices_of("search_capabilities") if c in values["search_capabilities"]
            ]
    assert module["name"] == values["module_name"]
    assert module["description"] == values["description"]
    assert manifest["integration"]["apis"]["provided"] == values["apis_provided"]
    assert manifest["runtime"]["package"] == package
    assert port == values["port"]

    # Hostile text lands in scripts too (quoted by the `sh` filter): bash -n included.
    checked = parse_files(tree(dst))
    assert checked > 20, f"only {checked} files checked: did the render produce the module?"

    project = tomllib.loads((dst / "pyproject.toml").read_text("utf-8"))["project"]
    assert project["name"] == values["module_name"]
    assert project["description"] == values["description"]
    assert project["authors"] == [{"name": values["author_name"], "email": values["author_email"]}]
    answers = yaml.safe_load((dst / ".copier-answers.yml").read_text("utf-8"))
    assert answers["description"] == values["description"]
    assert answers["author_name"] == values["author_name"]
    # Python carries names only through the `py` filter: the constants say them back.
    constants = dst / "src" / package / "constants.py"
    if constants.exists():
        literals = {
            node.value for node in ast.walk(ast.parse(constants.read_text("utf-8"))) if isinstance(node, ast.Constant)
        }
        assert values["module_name"] in literals


def expect_refusal(dst: Path, data: Mapping[str, Any], question: str | None) -> str:
    """Render, expecting one clean line that names ``question`` (None: an unknown answer)."""
    with pytest.raises(UserMessageError) as info:
        render(dst, dict(data))
    message = str(info.value.message)
    assert len(message.splitlines()) == 1 and "\n" not in message, repr(message)
    assert "Traceback" not in message
    if question is None:
        assert message.startswith("Unknown answer '"), message
    else:
        assert f"question '{question}'" in message, message
    assert not dst.exists(), "a refused render left a destination behind"
    return message


_counter = iter(range(10**9))


def fresh(tmp_path: Path) -> Path:
    return tmp_path / f"out-{next(_counter)}"


# --- the properties -----------------------------------------------------------------


@examples(15)
@given(st.data())
def test_accepted_answers_render_a_valid_project(tmp_path: Path, data: st.DataObject) -> None:
    values = data.draw(accepted_values(), label="values")
    assume(not cross_field_violations(values))
    answers = data.draw(data_of(values), label="data")
    dst = fresh(tmp_path)
    render(dst, answers)
    check_project(dst, values)


@examples(6)
@given(st.data())
def test_cross_field_violations_name_the_first_rule_broken(tmp_path: Path, data: st.DataObject) -> None:
    values = data.draw(accepted_values(), label="values")
    rules = ["authentication", "audit_level", "apis_required", "memory_types", "search_capabilities"]
    rule = data.draw(st.sampled_from(rules), label="rule")
    if rule == "apis_required":
        values.update(module_type="connector", apis_required=[])
    elif rule in ("memory_types", "search_capabilities"):
        # Lift OS with the memory on; the other KSE answers valid.
        valid = {"memory_types": ["events"], "search_capabilities": ["keyword"], "kse_index_prefix": "p_"}
        values = {**valid, "kse_batch_size": 10, **values, "platform": "liftos", "kse_enabled": True}
        values[rule] = []
    else:
        values.update({"data_handling": "encrypted", rule: "none"})
    violated = cross_field_violations(values)
    assert rule in violated
    expect_refusal(fresh(tmp_path), data.draw(data_of(values), label="data"), violated[0])


# --- rejected answers: one rule broken at a time ----------------------------------------


def too_long(node: Mapping[str, Any]) -> st.SearchStrategy[str]:
    """Pattern-conforming text past maxLength."""
    high = node["maxLength"]
    return (
        from_rule({**node, "maxLength": 10_000, "minLength": 0})
        .filter(bool)
        .map(lambda s: (s * (high + 1))[: high + 1])
    )


def with_control(node: Mapping[str, Any]) -> st.SearchStrategy[str]:
    @st.composite
    def build(draw: st.DrawFn) -> str:
        text = draw(from_rule(node))[: node.get("maxLength", 10_000) - 1]
        ch = draw(st.sampled_from(CONTROL))
        at = draw(st.integers(0, len(text)))
        return text[:at] + ch + text[at:]

    return build()


def breaking(node: Mapping[str, Any]) -> st.SearchStrategy[str]:
    """Text the node's pattern refuses (wrong charset, shape, control characters)."""
    pattern = re.compile(node["pattern"])
    low, high = node.get("minLength", 0), node.get("maxLength", 10_000)
    text = st.one_of(st.text(UTF8, max_size=20), with_control(node), st.sampled_from(HOSTILE))
    return text.filter(lambda s: pattern.fullmatch(s) is None or not low <= len(s) <= high)


def broken_string(question: str) -> st.SearchStrategy[str]:
    node = node_of(question)
    options = [breaking(node), with_control(node)]
    if "maxLength" in node:
        options.append(too_long(node))
    if node.get("minLength", 0) > 0:
        options.append(st.just(""))
    return st.one_of(options)


def broken_list(question: str) -> st.SearchStrategy[Any]:
    node = list_node(question)
    item = items_of(question)
    good = from_rule(item)
    options: list[st.SearchStrategy[Any]] = [
        # duplicates
        st.lists(good, min_size=1, max_size=3).map(lambda xs: [*xs, xs[0]]),
        # one item off the pattern or too long
        st.tuples(st.lists(good, max_size=2, unique=True), broken_string_of(item)).map(lambda t: [*t[0], t[1]]),
        # not a list at all
        st.one_of(st.integers(), good, st.dictionaries(good, good, min_size=1, max_size=2)),
    ]
    if node.get("minItems", 0) > 0:
        options.append(st.just([]))
    if "maxItems" in node:
        many = node["maxItems"] + 1
        options.append(st.just([f"{ok}x{i}" for i, ok in enumerate([_example(item)] * many)]))
    return st.one_of(options)


def broken_string_of(item: Mapping[str, Any]) -> st.SearchStrategy[str]:
    options = [breaking(item), with_control(item)]
    if "maxLength" in item:
        options.append(too_long(item))
    return st.one_of(options)


def _example(item: Mapping[str, Any]) -> str:
    return {"snakeCase": "cap", "event": "a.b", "api": "/v1/x"}[_kind(item)]


def _kind(item: Mapping[str, Any]) -> str:
    if item["pattern"].startswith("^/v"):
        return "api"
    return "event" if "\\." in item["pattern"] else "snakeCase"


def broken_int(question: str) -> st.SearchStrategy[Any]:
    node = node_of(question)
    low, high = node["minimum"], node["maximum"]
    out_of_range = st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1))
    not_a_number = st.text(UTF8, max_size=10).filter(lambda s: not _is_int(s))
    return st.one_of(out_of_range, out_of_range.map(str), not_a_number, st.floats(allow_nan=False), st.booleans())


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def broken_choice(question: str) -> st.SearchStrategy[Any]:
    choices = [str(c) for c in choices_of(question)]
    near = st.sampled_from(choices).map(lambda c: c.upper() if c.upper() != c else c + "x")
    return st.one_of(st.text(UTF8, max_size=12), near).filter(lambda s: s not in choices)


def broken_bool(question: str) -> st.SearchStrategy[str]:
    words = validation._TRUE | validation._FALSE
    return st.text(UTF8, max_size=10).filter(lambda s: s.strip().lower() not in words)


def broken_value(question: str) -> st.SearchStrategy[Any]:
    spec = QUESTIONS[question]
    if question == "package_name":
        shadowing = st.sampled_from(
            sorted(DENIED_PACKAGES) + sorted(keyword.kwlist) + ["json", "os", "typing", "asyncio", "match"]
        )
        return st.one_of(shadowing, broken_string(question))
    if question == "platform":
        return broken_choice(question)
    if spec.get("multiselect"):
        choices = choices_of(question)
        return st.one_of(
            st.sampled_from(choices),  # one choice, not a list of them
            st.lists(st.sampled_from(choices), min_size=1, max_size=2).map(lambda xs: [*xs, xs[0]]),
            st.tuples(st.lists(st.sampled_from(choices), max_size=2, unique=True), broken_choice(question)).map(
                lambda t: [*t[0], t[1]]
            ),
        )
    if question == "apis_provided":
        without_analyze = unique_list(question).filter(lambda xs: "/v1/analyze" not in xs)
        return st.one_of(without_analyze, broken_list(question))
    if question in FIELDS and "pattern" in node_of(question):
        return broken_string(question)
    if spec.get("type") == "yaml":
        return broken_list(question)
    if spec.get("type") == "int":
        return broken_int(question)
    if spec.get("type") == "bool":
        return broken_bool(question)
    return broken_choice(question)


@examples(25)
@given(st.data())
def test_rejected_answers_fail_cleanly(tmp_path: Path, data: st.DataObject) -> None:
    values = data.draw(accepted_values(), label="values")
    assume(not cross_field_violations(values))
    answers = data.draw(data_of(values), label="data")
    question = data.draw(st.sampled_from(ANSWERABLE), label="question")
    bad = data.draw(broken_value(question), label="bad")
    if isinstance(bad, list) and QUESTIONS[question].get("type") == "yaml":
        bad = data.draw(as_data(question, bad), label="as data")
    answers[question] = bad
    expect_refusal(fresh(tmp_path), answers, question)


@examples(6)
@given(st.data())
def test_unknown_answers_are_refused(tmp_path: Path, data: st.DataObject) -> None:
    values = data.draw(accepted_values(), label="values")
    answers = data.draw(data_of(values), label="data")
    near = st.sampled_from(ANSWERABLE).map(lambda n: n.replace("_", "-") if "_" in n else n + "s")
    unknown = data.draw(
        st.one_of(near, st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)).filter(lambda k: k not in QUESTIONS),
        label="unknown",
    )
    answers[unknown] = data.draw(st.one_of(st.text(UTF8, max_size=10), st.integers()), label="value")
    expect_refusal(fresh(tmp_path), answers, None)


def test_oracle_covers_every_cross_field_rule() -> None:
    """cross_field_violations() mirrors each schema's allOf, rule for rule, in order."""
    named = {p: [rule["x-question"] for rule in validation.manifest_schema(p)["allOf"]] for p in validation.PLATFORMS}
    shared = ["authentication", "audit_level", "apis_required"]
    assert named == {"blux": shared, "liftos": [*shared, "memory_types", "search_capabilities"]}
