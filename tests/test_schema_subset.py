"""extensions/schema_subset.py against jsonschema, on the schemas the template ships.

The extensions check answers with schema_subset (importing jsonschema cost every
command-line copy 39-85 ms); generated modules check their manifests with
jsonschema. These tests hold the two to the same errors, field by field, so an
answer can never pass the template and then fail the module it made, or the
other way round.
"""

from __future__ import annotations

import copy
import json
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

sys.path.insert(0, str(REPO))

from extensions import naming, validation
from extensions.schema_subset import SchemaValidator, UnsupportedKeyword, equal

SCHEMAS = sorted(validation.SCHEMA_DIR.glob("*.schema.json"))
Found = tuple[str, str | None, str, str, str]


def schema_of(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _key(error: Any) -> tuple[list[str], list[str]]:
    return [str(step) for step in error.schema_path], [str(step) for step in error.path]


def _shape(error: Any) -> Found:
    return (error.message, error.validator, repr(list(error.schema_path)), repr(list(error.path)), repr(error.instance))


def both(schema: dict[str, Any], instance: Any, node: dict[str, Any] | None = None) -> tuple[list[Found], list[Found]]:
    """Each evaluator's errors, in its order after a stable sort by (schema path, path).

    The sort only sets apart errors whose paths differ: jsonschema visits the extra
    keys of an object whose additionalProperties is a schema in set order, which
    changes with the hash seed. Errors at the same paths keep their order
    (``required`` lists its missing keys in the schema's order; the first one is
    the one validation.py reports).
    """
    ours = SchemaValidator(schema)
    theirs: Any = Draft202012Validator(schema)
    if node is not None:
        ours, theirs = ours.evolve(schema=node), theirs.evolve(schema=node)
    return (
        [_shape(e) for e in sorted(ours.iter_errors(instance), key=_key)],
        [_shape(e) for e in sorted(theirs.iter_errors(instance), key=_key)],
    )


def default_manifest(platform: str) -> dict[str, Any]:
    answers, _ = validation.resolve({"platform": platform}, naming.FILTERS)
    return validation.build_manifest(answers)


# Values that sit on either side of every keyword the schemas use.
ODD: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    1.0,
    1.5,
    -1,
    65535,
    65536,
    10**12,
    math.inf,
    "",
    "a",
    "my-module",
    "My Module",
    "1.2.3",
    "x" * 300,
    "line\nbreak",
    "/v1/analyze",
    [],
    [1, 1],
    [1, True],
    ["a", "a"],
    ["/v1/analyze"],
    ["task.completed", "task.failed"],
    [{}],
    {},
    {"a": 1},
    {"blux-lite": ">=1.0.0", "other": "1.0"},
]


def field_paths(document: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(document, dict):
        for key, value in document.items():
            yield (*prefix, key)
            yield from field_paths(value, (*prefix, key))


def with_value(document: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = copy.deepcopy(value)
    return changed


def without(document: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    target = changed
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return changed


MANIFEST_SCHEMAS = {platform: validation.SCHEMA_DIR / name for platform, name in validation.SCHEMA_FILES.items()}


@pytest.mark.parametrize("platform", validation.PLATFORMS)
def test_every_field_set_to_every_odd_value_gets_the_same_errors(platform: str) -> None:
    schema = schema_of(MANIFEST_SCHEMAS[platform])
    base = default_manifest(platform)
    assert both(schema, base) == ([], [])
    compared = failing = 0
    for path in field_paths(base):
        for value in ODD:
            ours, theirs = both(schema, with_value(base, path, value))
            assert ours == theirs, (path, value)
            compared += 1
            failing += bool(theirs)
        ours, theirs = both(schema, without(base, path))
        assert ours == theirs, ("removed", path)
        ours, theirs = both(schema, with_value(base, (*path[:-1], "unexpected"), 1))
        assert ours == theirs, ("extra key beside", path)
    # The comparison is only worth something if most of these break a rule.
    assert compared > 500 and failing > compared // 2


@pytest.mark.parametrize("platform", validation.PLATFORMS)
def test_each_question_s_field_alone_gets_the_same_errors(platform: str) -> None:
    """As check_question() uses them: the validator evolved to the field's node."""
    schema = schema_of(MANIFEST_SCHEMAS[platform])
    for question, (_, node) in validation.question_fields(platform).items():
        for value in ODD:
            ours, theirs = both(schema, value, dict(node))
            assert ours == theirs, (question, value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["blux", "liftos", "required", "none", "encrypted", "/v1/analyze", ">=1.0", "0.1.0"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    platform=st.sampled_from(validation.PLATFORMS),
    where=st.integers(min_value=0),
    value=json_values,
)
def test_generated_values_anywhere_in_a_manifest_get_the_same_errors(platform: str, where: int, value: Any) -> None:
    schema = schema_of(MANIFEST_SCHEMAS[platform])
    base = default_manifest(platform)
    paths = list(field_paths(base))
    ours, theirs = both(schema, with_value(base, paths[where % len(paths)], value))
    assert ours == theirs


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_whole_documents_get_the_same_errors(value: Any) -> None:
    for path in SCHEMAS:
        ours, theirs = both(schema_of(path), value)
        assert ours == theirs, path.name


# Each keyword alone and in the combinations the shipped schemas do not (yet) have.
SMALL: list[dict[str, Any]] = [
    {"pattern": "b"},
    {"pattern": "^[a-z]+$", "minLength": 2, "maxLength": 3},
    {"type": ["integer", "null"]},
    {"type": "number", "minimum": 0, "maximum": 1.5},
    {"enum": [1, "a", None, [1], {"a": 1}]},
    {"const": {"a": [1, True]}},
    {"contains": {"const": 1}},
    {"not": {"enum": [1, "a"]}},
    {"if": {"type": "string"}, "then": {"minLength": 2}, "else": {"type": "integer"}},
    {"if": {"type": "string"}, "else": {"maxItems": 0}},
    {"uniqueItems": True, "minItems": 1, "maxItems": 2},
    {"items": False},
    {"items": {"type": "string"}, "uniqueItems": False},
    {"minProperties": 2, "additionalProperties": {"type": "integer"}, "properties": {"a": False}},
    {"required": ["b", "a"], "properties": {"a": {"type": "string"}}, "additionalProperties": False},
    {"allOf": [{"type": "object"}, {"required": ["a"]}, True, False]},
    {"$ref": "#/$defs/a", "maximum": 2, "$defs": {"a": {"minimum": 1, "$ref": "#/$defs/b"}, "b": {"type": "integer"}}},
]


@settings(max_examples=300, deadline=None)
@given(value=json_values | st.sampled_from([[1, 1.0], [True, 1], [[1], [1.0]], {"a": 1, "b": "x"}, "ab", 1.5]))
def test_each_keyword_alone_gets_the_same_errors(value: Any) -> None:
    for schema in SMALL:
        ours, theirs = both(schema, value)
        assert ours == theirs, schema


@given(one=json_values, two=json_values)
def test_equality_is_json_s(one: Any, two: Any) -> None:
    from jsonschema._utils import equal as reference

    assert equal(one, two) == reference(one, two)
    assert equal(one, copy.deepcopy(one))


def test_the_error_validation_reports_is_the_same_for_jsonschema() -> None:
    """validation.py picks the first error by schema path; ties must resolve alike."""
    schema = schema_of(MANIFEST_SCHEMAS["blux"])
    broken = default_manifest("blux")
    del broken["module"]["name"], broken["module"]["version"]  # two `required` errors, same paths
    broken["runtime"]["port"] = "80"
    ours = validation._first_error(SchemaValidator(schema), broken)
    theirs = validation._first_error(cast(Any, Draft202012Validator(schema)), broken)
    assert ours is not None and theirs is not None
    assert _shape(ours) == _shape(theirs)
    assert ours.message == "'name' is a required property"


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"format": "email"}, "#"),
        ({"properties": {"a": {"oneOf": [{"type": "string"}]}}}, "#/properties/a"),
        ({"allOf": [{"patternProperties": {"^x": {}}}]}, "#/allOf/0"),
        ({"$defs": {"d": {"prefixItems": []}}}, "#/$defs/d"),
    ],
)
def test_a_keyword_it_does_not_evaluate_is_refused_with_where_it_is(schema: dict[str, Any], where: str) -> None:
    with pytest.raises(UnsupportedKeyword, match=f"^{re.escape(where)}: keyword"):
        SchemaValidator(schema)


def test_annotations_and_extension_keywords_are_accepted() -> None:
    schema = {"$schema": "x", "title": "t", "description": "d", "x-rule": "r", "default": 1, "examples": [2]}
    assert SchemaValidator(schema).is_valid(3)


def test_a_copy_from_the_command_line_does_not_import_jsonschema(tmp_path: Path) -> None:
    """The reason schema_subset exists: load the extensions as Copier does, check sys.modules."""
    script = f"""
import sys
from importlib.util import module_from_spec, spec_from_file_location
folder = {str(REPO / "extensions")!r}
for name in ("naming", "validation"):
    spec = spec_from_file_location(f"copier_template_extensions.{{name}}", f"{{folder}}/{{name}}.py")
    module = module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
module.check_all(module.resolve({{"platform": "liftos"}}, sys.modules["copier_template_extensions.naming"].FILTERS)[0])
try:
    module.check_question("port", 80)
except module.AnswerError as error:
    print(error)
print(sorted(name for name in sys.modules if name.split(".")[0] in ("jsonschema", "referencing")))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]"
    assert "Validation error for question 'port'" in out  # the subset really ran
