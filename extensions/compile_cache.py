"""Reuse compiled template code: Jinja compilation is most of a render's time.

Copier builds a new Jinja environment for every run and compiles each file, each
path and each question's ``when``/``default``/``validator`` string anew, the
same strings many times over (about 650 compiles for one copy of this
template, two thirds of its time). This extension, loaded last, gives the
environment:

- a memo of compiled code, shared by every environment of the process with the
  same configuration: the harness renders dozens of answer sets in one process;
- a bytecode cache on disk for file templates, keyed by the template's name (not
  the path of Copier's temporary clone, which changes every run) and checked
  against a hash of the source by Jinja itself, so the command line reuses code
  compiled by the previous run.

Compiled code depends on the source and the environment's syntax settings, and
on the filters and tests that exist when it is compiled: all are in the key.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

import jinja2
from jinja2 import Environment
from jinja2.bccache import FileSystemBytecodeCache
from jinja2.ext import Extension

# copier_template_extensions executes this file anew for every render (a new module
# object each time), so the memo lives in a module of its own that stays in sys.modules.
_HOME = sys.modules.setdefault("_modforge_compile_memo", ModuleType("_modforge_compile_memo"))
_MEMO: dict[tuple[Any, ...], CodeType | str] = _HOME.__dict__.setdefault("memo", {})
_MEMO_LIMIT = 20_000


def fingerprint(environment: Environment) -> str:
    """What, besides the source, decides the code Jinja compiles."""
    parts = [
        jinja2.__version__,
        environment.block_start_string,
        environment.block_end_string,
        environment.variable_start_string,
        environment.variable_end_string,
        environment.comment_start_string,
        environment.comment_end_string,
        str(environment.line_statement_prefix),
        str(environment.line_comment_prefix),
        str(environment.trim_blocks),
        str(environment.lstrip_blocks),
        environment.newline_sequence,
        str(environment.keep_trailing_newline),
        str(environment.optimized),
        repr(environment.autoescape),
        str(environment.is_async),
        ",".join(sorted(environment.extensions)),
        ",".join(sorted(environment.filters)),
        ",".join(sorted(environment.tests)),
    ]
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:16]


def cache_directory() -> Path:
    """A per-user directory only its owner can write (bytecode is executed when loaded)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    directory = Path(base) / "modforge" / "jinja"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if directory.stat().st_uid == os.getuid() and os.access(directory, os.W_OK):
            return directory
    except OSError:
        pass
    # Jinja's own default: a private directory in the temporary directory.
    return Path(FileSystemBytecodeCache()._get_default_cache_dir())


class _NameKeyedCache(FileSystemBytecodeCache):
    def __init__(self, environment: Environment, directory: Path) -> None:
        super().__init__(str(directory), pattern="modforge-%s.cache")
        self._environment = environment

    def get_cache_key(self, name: str, filename: str | None = None) -> str:
        key = f"{fingerprint(self._environment)}|{name}"
        return hashlib.sha1(key.encode("utf-8"), usedforsecurity=False).hexdigest()


class CompileCacheExtension(Extension):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        if environment.bytecode_cache is None and not os.environ.get("MODFORGE_NO_JINJA_CACHE"):
            environment.bytecode_cache = _NameKeyedCache(environment, cache_directory())
        original: Any = environment.compile
        # Computed at the first compile, once Copier has added every filter and test.
        settled: list[str] = []

        def compile(
            source: Any,
            name: str | None = None,
            filename: str | None = None,
            raw: bool = False,
            defer_init: bool = False,
        ) -> Any:
            if not isinstance(source, str):
                return original(source, name, filename, raw, defer_init)
            if not settled:
                settled.append(fingerprint(environment))
            key = (settled[0], source, name, filename, raw, defer_init)
            code = _MEMO.get(key)
            if code is None:
                code = original(source, name, filename, raw, defer_init)
                if len(_MEMO) >= _MEMO_LIMIT:
                    _MEMO.clear()
                _MEMO[key] = code
            return code

        environment.compile = compile  # type: ignore[method-assign]
