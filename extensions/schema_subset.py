"""JSON Schema (draft 2020-12) for the keywords the manifest schemas use, and no others.

Why not ``jsonschema`` here: Copier imports the extensions in every command-line
copy, and importing ``jsonschema`` there (``referencing``, ``attrs`` and every
metaschema) took 39-85 ms, a fifth of all the template adds to Copier's own
floor. The schemas are the same files either way: the generated module still
validates its manifest with ``jsonschema`` at start-up and from its CLI.

Keeping the two evaluators in step is enforced, not hoped for:

- a schema that uses a keyword this module does not evaluate is refused when
  its validator is built (``UnsupportedKeyword``), so a new rule in a schema
  cannot be silently skipped;
- ``tests/test_schema_subset.py`` checks every error this module reports (message,
  keyword, schema path, instance path, failing value) against ``jsonschema``'s on
  the shipped schemas, for hand-picked and generated instances.

Errors come in ``jsonschema``'s order and with its paths (``$ref`` and ``if`` add
no step to a schema path), because ``validation.py`` picks the error to show by
its schema path.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

# Keywords that only annotate: no instance can fail them.
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples"})
# Read by another keyword's check ("if" reads them), not alone.
_COMPANIONS = frozenset({"then", "else"})


class UnsupportedKeyword(ValueError):
    """A schema uses a keyword this evaluator does not check."""


@dataclass
class SchemaError:
    """One failed keyword, shaped like ``jsonschema.ValidationError`` where validation.py reads it."""

    message: str
    validator: str | None  # the keyword that failed
    instance: Any
    schema_path: list[str | int]
    path: list[str | int]


def _is_integer(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _of(kind: type) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return isinstance(value, kind)

    return check


_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": _of(str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": _of(bool),
    "object": _of(dict),
    "array": _of(list),
    "null": partial(operator.is_, None),
}


def _unbool(value: Any) -> Any:
    # JSON tells true from 1 and false from 0; Python's bool is an int.
    return ("bool", value) if isinstance(value, bool) else value


def equal(one: Any, two: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1, recursively."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, dict) and isinstance(two, dict):
        return len(one) == len(two) and all(key in two and equal(value, two[key]) for key, value in one.items())
    return bool(_unbool(one) == _unbool(two))


def _unique(items: list[Any]) -> bool:
    return all(not equal(items[i], items[j]) for i in range(len(items)) for j in range(i))


def _extras(names: list[str]) -> str:
    verb = "was" if len(names) == 1 else "were"
    return f"{', '.join(repr(name) for name in names)} {verb}"


class SchemaValidator:
    """Validates instances against ``node`` (the whole schema by default); ``$ref`` resolves in ``root``."""

    def __init__(self, root: Mapping[str, Any], node: Mapping[str, Any] | bool | None = None) -> None:
        if node is None:
            _check_keywords(root)
        self.root = root
        self.node = root if node is None else node

    def evolve(self, *, schema: Mapping[str, Any]) -> SchemaValidator:
        """The same root, validating against ``schema`` (a node of it), as jsonschema's ``evolve``."""
        return SchemaValidator(self.root, schema)

    def iter_errors(self, instance: Any) -> Iterator[SchemaError]:
        return self._errors(instance, self.node)

    def is_valid(self, instance: Any, node: Mapping[str, Any] | bool | None = None) -> bool:
        return next(self._errors(instance, self.node if node is None else node), None) is None

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise UnsupportedKeyword(f"only local $ref ('#/...') is supported, got {ref!r}")
        target: Any = self.root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return target

    def _descend(
        self, instance: Any, node: Any, path: str | int | None = None, step: str | int | None = None
    ) -> Iterator[SchemaError]:
        if node is False:  # as jsonschema: the bare error, no steps added
            yield from self._errors(instance, node)
            return
        for error in self._errors(instance, node):
            if path is not None:
                error.path.insert(0, path)
            if step is not None:
                error.schema_path.insert(0, step)
            yield error

    def _errors(self, instance: Any, node: Any) -> Iterator[SchemaError]:
        if node is True:
            return
        if node is False:
            yield SchemaError(f"False schema does not allow {instance!r}", None, instance, [], [])
            return
        for keyword, value in node.items():
            check = _KEYWORDS.get(keyword)
            if check is None:
                continue  # annotations and companions (checked when the schema was built)
            for error in check(self, value, instance, node):
                if error.instance is _UNSET:  # raised by this keyword, not by a subschema
                    error.validator, error.instance = keyword, instance
                if keyword not in ("if", "$ref"):
                    error.schema_path.insert(0, keyword)
                yield error


_UNSET: Any = object()


def _error(message: str) -> SchemaError:
    return SchemaError(message, None, _UNSET, [], [])


Check = Any  # (validator, keyword value, instance, schema node) -> Iterator[SchemaError]


def _type(v: SchemaValidator, types: Any, instance: Any, node: Any) -> Iterator[SchemaError]:
    names = [types] if isinstance(types, str) else list(types)
    if not any(_TYPES[name](instance) for name in names):
        yield _error(f"{instance!r} is not of type {', '.join(repr(name) for name in names)}")


def _enum(v: SchemaValidator, options: Any, instance: Any, node: Any) -> Iterator[SchemaError]:
    if all(not equal(option, instance) for option in options):
        yield _error(f"{instance!r} is not one of {options!r}")


def _const(v: SchemaValidator, const: Any, instance: Any, node: Any) -> Iterator[SchemaError]:
    if not equal(instance, const):
        yield _error(f"{const!r} was expected")


@cache
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _pattern(v: SchemaValidator, pattern: str, instance: Any, node: Any) -> Iterator[SchemaError]:
    if isinstance(instance, str) and not _pattern_regex(pattern).search(instance):
        yield _error(f"{instance!r} does not match {pattern!r}")


def _min_length(v: SchemaValidator, bound: int, instance: Any, node: Any) -> Iterator[SchemaError]:
    if isinstance(instance, str) and len(instance) < bound:
        yield _error(f"{instance!r} {'should be non-empty' if bound == 1 else 'is too short'}")


def _max_length(v: SchemaValidator, bound: int, instance: Any, node: Any) -> Iterator[SchemaError]:
    if isinstance(instance, str) and len(instance) > bound:
        yield _error(f"{instance!r} {'is expected to be empty' if bound == 0 else 'is too long'}")


def _minimum(v: SchemaValidator, bound: Any, instance: Any, node: Any) -> Iterator[SchemaError]:
    if _is_number(instance) and instance < bound:
        yield _error(f"{instance!r} is less than the minimum of {bound!r}")


def _maximum(v: SchemaValidator, bound: Any, instance: Any, node: Any) -> Iterator[SchemaError]:
    if _is_number(instance) and instance > bound:
        yield _error(f"{instance!r} is greater than the maximum of {bound!r}")


def _min_items(v: SchemaValidator, bound: int, instance: Any, node: Any) -> Iterator[SchemaError]:
    if isinstance(instance, list) and len(instance) < bound:
        yield _error(f"{instance!r} {'should be non-empty' if bound == 1 else 'is too short'}")


def _max_items(v: SchemaValidator, bound: int, instance: Any, node: Any) -> Iterator[SchemaError]:
    if isinstance(instance, list) and len(instance) > bound:
        yield _error(f"{instance!r} {'is expected to be empty' if bound == 0 else 'is too long'}")


def _unique_items(v: SchemaValidator, unique: bool, instance: Any, node: Any) -> Iterator[SchemaError]:
    if unique and isinstance(instance, list) and not _unique(instance):
        yield _error(f"{instance!r} has non-unique elements")


def _items(v: SchemaValidator, items: Any, instance: Any, node: Any) -> Iterator[SchemaError]:
    if not isinstance(instance, list):
        return
    if items is False:  # no prefixItems here, so every item is one too many
        if instance:
            rest = instance if len(instance) != 1 else instance[0]
            yield _error(f"Expected at most 0 items but found {len(instance)} extra: {rest!r}")
        return
    for index, item in enumerate(instance):
        yield from v._descend(item, items, path=index)


def _contains(v: SchemaValidator, contains: Any, instance: Any, node: Any) -> Iterator[SchemaError]:
    if isinstance(instance, list) and not any(v.is_valid(item, contains) for item in instance):
        yield _error(f"{instance!r} does not contain items matching the given schema")


def _properties(v: SchemaValidator, properties: Any, instance: Any, node: Any) -> Iterator[SchemaError]:
    if isinstance(instance, dict):
        for name, child in properties.items():
            if name in instance:
                yield from v._descend(instance[name], child, path=name, step=name)


def _additional(v: SchemaValidator, allowed: Any, instance: Any, node: Any) -> Iterator[SchemaError]:
    if not isinstance(instance, dict):
        return
    extras = [name for name in instance if name not in node.get("properties", {})]
    if isinstance(allowed, dict):
        for name in extras:
            yield from v._descend(instance[name], allowed, path=name)
    elif not allowed and extras:
        yield _error(f"Additional properties are not allowed ({_extras(sorted(extras, key=str))} unexpected)")


def _required(v: SchemaValidator, names: Any, instance: Any, node: Any) -> Iterator[SchemaError]:
    if isinstance(instance, dict):
        for name in names:
            if name not in instance:
                yield _error(f"{name!r} is a required property")


def _min_properties(v: SchemaValidator, bound: int, instance: Any, node: Any) -> Iterator[SchemaError]:
    if isinstance(instance, dict) and len(instance) < bound:
        yield _error(f"{instance!r} {'should be non-empty' if bound == 1 else 'does not have enough properties'}")


def _all_of(v: SchemaValidator, schemas: Any, instance: Any, node: Any) -> Iterator[SchemaError]:
    for index, child in enumerate(schemas):
        yield from v._descend(instance, child, step=index)


def _not(v: SchemaValidator, child: Any, instance: Any, node: Any) -> Iterator[SchemaError]:
    if v.is_valid(instance, child):
        yield _error(f"{instance!r} should not be valid under {child!r}")


def _if(v: SchemaValidator, condition: Any, instance: Any, node: Any) -> Iterator[SchemaError]:
    if v.is_valid(instance, condition):
        if "then" in node:
            yield from v._descend(instance, node["then"], step="then")
    elif "else" in node:
        yield from v._descend(instance, node["else"], step="else")


def _ref(v: SchemaValidator, ref: str, instance: Any, node: Any) -> Iterator[SchemaError]:
    yield from v._descend(instance, v._resolve(ref))


_KEYWORDS: dict[str, Check] = {
    "type": _type,
    "enum": _enum,
    "const": _const,
    "pattern": _pattern,
    "minLength": _min_length,
    "maxLength": _max_length,
    "minimum": _minimum,
    "maximum": _maximum,
    "minItems": _min_items,
    "maxItems": _max_items,
    "uniqueItems": _unique_items,
    "items": _items,
    "contains": _contains,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": _required,
    "minProperties": _min_properties,
    "allOf": _all_of,
    "not": _not,
    "if": _if,
    "$ref": _ref,
}
# Keywords whose value is a schema, a list of schemas, or a map of names to schemas.
_ONE_SCHEMA = ("items", "contains", "not", "if", "then", "else", "additionalProperties")
_SCHEMA_LIST = ("allOf",)
_SCHEMA_MAP = ("properties", "$defs")


def _check_keywords(node: Any, where: str = "#") -> None:
    """Refuse a schema with a keyword nobody here evaluates (see the module's docstring)."""
    if isinstance(node, bool):
        return
    for keyword, value in node.items():
        known = keyword in _KEYWORDS or keyword in _ANNOTATIONS or keyword in _COMPANIONS
        if not known and not keyword.startswith("x-"):
            raise UnsupportedKeyword(f"{where}: keyword {keyword!r} is not evaluated by extensions/schema_subset.py")
        if keyword in _ONE_SCHEMA:
            _check_keywords(value, f"{where}/{keyword}")
        elif keyword in _SCHEMA_LIST:
            for index, child in enumerate(value):
                _check_keywords(child, f"{where}/{keyword}/{index}")
        elif keyword in _SCHEMA_MAP:
            for name, child in value.items():
                _check_keywords(child, f"{where}/{keyword}/{name}")
