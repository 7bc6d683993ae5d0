"""Jinja filters that derive names from answers and quote values per target format.

Each quoting filter returns a complete literal for its format, so a template never
builds one by hand: ``{{ description | toml }}`` in TOML, ``{{ path | sh }}`` in shell,
``{{ name | py }}`` in Python. JSON (and YAML, a superset) use Jinja's own ``tojson``.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension


def package_name(module_name: str) -> str:
    """``my-blux-module`` -> ``my_blux_module``."""
    return str(module_name).strip().replace("-", "_").lower()


def env_prefix(module_name: str) -> str:
    """``my-blux-module`` -> ``MY_BLUX_MODULE_``: the settings' environment prefix."""
    return package_name(module_name).upper() + "_"


def py_literal(value: Any) -> str:
    """A Python literal in ruff's double-quote style.

    JSON escapes are valid Python escapes; non-ASCII stays literal because a
    ``\\ud83d\\ude00`` pair means two lone surrogates to Python, not one emoji.
    """
    if isinstance(value, bool) or value is None:
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(value: Any) -> str:
    """A TOML basic string. ``tojson`` is not enough: TOML rejects surrogate escapes."""
    out = []
    for ch in str(value):
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def shell_quote(value: Any) -> str:
    """One shell word, never expanded: ``$(...)`` and backticks stay text."""
    return shlex.quote(str(value))


FILTERS = {
    "package_name": package_name,
    "env_prefix": env_prefix,
    "py": py_literal,
    "toml": toml_string,
    "sh": shell_quote,
}


class NamingExtension(Extension):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters.update(FILTERS)
