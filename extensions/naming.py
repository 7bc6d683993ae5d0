"""Jinja filters that derive names from answers and quote values per target format.

Each quoting filter returns a complete literal for its format, so a template never
builds one by hand: ``{{ description | toml }}`` in TOML, ``{{ path | sh }}`` in shell,
``{{ name | py }}`` in Python. JSON (and YAML, a superset) use Jinja's own ``tojson``.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from jinja2 import Environment, pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context


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


# Settings a platform's own guide names: its variable -> the settings field. A
# generated module reads these besides <PREFIX><FIELD> (constants.PLATFORM_ENV is
# rendered from here), and its .env.example, compose file and Kubernetes
# manifests use them, so a module is configured the platform's way.
PLATFORM_ENV: dict[str, dict[str, str]] = {
    "blux": {},
    "liftos": {
        "MODULE_NAME": "module_name",
        "MODULE_VERSION": "module_version",
        "MODULE_PORT": "port",
        "GATEWAY_URL": "gateway_url",
        "AUTH_SERVICE_URL": "auth_service_url",
        "MEMORY_SERVICE_URL": "memory_service_url",
        "REGISTRY_SERVICE_URL": "registry_service_url",
        "SERVICE_AUTH_TOKEN": "service_auth_token",
        "KSE_ENABLED": "kse_enabled",
        "KSE_INDEX_PREFIX": "kse_index_prefix",
        "KSE_BATCH_SIZE": "kse_batch_size",
        "KSE_EMBEDDER": "kse_embedder",
        "KSE_EMBEDDER_MODEL": "kse_embedder_model",
        "JWT_SECRET_KEY": "jwt_secret",
        "RATE_LIMIT_REQUESTS": "rate_limit_requests",
        "RATE_LIMIT_WINDOW": "rate_limit_window_seconds",
    },
}


def env_var_for(platform: str, module_name: str, field: str) -> str:
    """The variable a module reads a setting from: the platform's name, else <PREFIX><FIELD>."""
    for name, known in PLATFORM_ENV[platform].items():
        if known == field.lower():
            return name
    return env_prefix(module_name) + field.upper()


@pass_context
def env_var(ctx: Context, field: str) -> str:
    """``{{ env_var('port') }}``: ``MY_BLUX_MODULE_PORT``, or ``MODULE_PORT`` for Lift OS."""
    return env_var_for(str(ctx["platform"]), str(ctx["module_name"]), field)


@pass_context
def platform_env(ctx: Context) -> dict[str, str]:
    return PLATFORM_ENV[str(ctx["platform"])]


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
        environment.globals.update(env_var=env_var, platform_env=platform_env)
