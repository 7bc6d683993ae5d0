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
  compiled by the previous run;
- one file on disk for the compiled strings (paths, conditions, defaults: about
  290 per copy, 0.1 s of a command-line render), keyed by their source, read at
  the first compile and written back at exit when a run compiled new ones;
- no template at all for a string without markup: Copier renders every path
  part and question field as a template, about 440 per copy of this template
  that are plain text (``tests``, ``main.py``, most help texts), each with a new
  context of all the answers. Such a string renders to itself (``PlainText``):
  20 of a copy's 150 ms in-process.

Compiled code depends on the source and the environment's syntax settings, and
on the filters and tests that exist when it is compiled: all are in the key.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import marshal
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

import jinja2
from jinja2 import Environment, Template
from jinja2.bccache import FileSystemBytecodeCache
from jinja2.ext import Extension
from jinja2.runtime import Context

# copier_template_extensions executes this file anew for every render (a new module
# object each time), so the memo lives in a module of its own that stays in sys.modules.
_HOME = sys.modules.setdefault("_modforge_compile_memo", ModuleType("_modforge_compile_memo"))
_MEMO: dict[tuple[Any, ...], CodeType | str] = _HOME.__dict__.setdefault("memo", {})
_MEMO_LIMIT = 20_000
# fingerprint -> the strings' store on disk, loaded once per process: {key: code}.
_STORES: dict[str, _StringStore] = _HOME.__dict__.setdefault("stores", {})


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


class _StringStore:
    """Compiled template strings of one fingerprint, as one marshal file.

    Reading trusts the file as Jinja's own bytecode cache does: it sits in a
    directory only its owner can write. A file from another Python, or damaged,
    is ignored and replaced.
    """

    def __init__(self, directory: Path, fingerprint: str) -> None:
        magic = importlib.util.MAGIC_NUMBER.hex()
        self.path = directory / f"modforge-strings-{fingerprint}-{magic}.cache"
        self.codes: dict[str, CodeType] = {}
        self.added = 0
        try:
            loaded = marshal.loads(self.path.read_bytes())
            if isinstance(loaded, dict):
                self.codes = loaded
        except (OSError, EOFError, ValueError, TypeError):
            pass
        atexit.register(self.save)

    @staticmethod
    def key(source: str, name: str | None, filename: str | None, defer_init: bool) -> str:
        text = "\x00".join((source, str(name), str(filename), str(defer_init)))
        return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()

    def save(self) -> None:
        if not self.added:
            return
        try:
            if len(self.codes) > _MEMO_LIMIT:  # strings of old template versions pile up
                self.path.unlink(missing_ok=True)
                return
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".strings-")
            try:
                with os.fdopen(handle, "wb") as out:
                    marshal.dump(self.codes, out)
                os.replace(temporary, self.path)  # readers see the old file or the new one
            finally:
                Path(temporary).unlink(missing_ok=True)
        except OSError:
            pass  # a cache: the next run compiles again
        self.added = 0


class CompileCacheExtension(Extension):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        on_disk = not os.environ.get("MODFORGE_NO_JINJA_CACHE")
        if environment.bytecode_cache is None and on_disk:
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
            # A reused compile skips the extensions' preprocess hooks, where some keep
            # state (Copier's YieldExtension resets its yield context there): run them
            # for that. The source compiled and the key stay the ones given.
            environment.preprocess(source, name, filename)
            if not settled:
                settled.append(fingerprint(environment))
            key = (settled[0], source, name, filename, raw, defer_init)
            code = _MEMO.get(key)
            if code is None:
                code = stored(settled[0], source, name, filename, raw, defer_init)
                if len(_MEMO) >= _MEMO_LIMIT:
                    _MEMO.clear()
                _MEMO[key] = code
            return code

        def stored(
            fingerprint: str, source: str, name: str | None, filename: str | None, raw: bool, defer_init: bool
        ) -> Any:
            # Strings only: file templates have the bytecode cache (checked against
            # their source by Jinja); raw output is Python source, cheap to keep in memory.
            if raw or not on_disk or filename not in (None, "<template>"):
                return original(source, name, filename, raw, defer_init)
            store = _STORES.get(fingerprint)
            if store is None:
                store = _STORES[fingerprint] = _StringStore(cache_directory(), fingerprint)
            key = store.key(source, name, filename, defer_init)
            code = store.codes.get(key)
            if code is None:
                code = store.codes[key] = original(source, name, filename, raw, defer_init)
                store.added += 1
            return code

        environment.compile = compile  # type: ignore[method-assign]
        environment.from_string = _plain_text_shortcut(environment)  # type: ignore[method-assign]


class PlainText:
    """What ``from_string`` gives for a string without markup: it renders to itself.

    Anything but ``render`` (``generate``, ``module``...) gets the real template,
    built on first use.
    """

    __slots__ = ("_build", "_template", "text")

    def __init__(self, text: str, build: Any) -> None:
        self.text = text
        self._build = build
        self._template: Template | None = None

    def render(self, *args: Any, **kwargs: Any) -> str:
        return self.text

    def __getattr__(self, name: str) -> Any:
        if self._template is None:
            self._template = self._build()
        return getattr(self._template, name)


def plain_text_test(environment: Environment) -> Callable[[str], bool] | None:
    """A test for strings Jinja would render as exactly themselves in this environment.

    Such a string has no delimiter of the environment's syntax and nothing the lexer
    rewrites (line endings other than the environment's newline, the single trailing
    newline dropped without ``keep_trailing_newline``). None when the environment
    can change any text: line statements or comments, an extension that filters
    the token stream, a context class that hooks rendering.
    """
    env = environment
    if (
        env.line_statement_prefix is not None
        or env.line_comment_prefix is not None
        or env.context_class is not Context
        or any(type(ext).filter_stream is not Extension.filter_stream for ext in env.extensions.values())
    ):
        return None
    block, variable, comment = env.block_start_string, env.variable_start_string, env.comment_start_string
    other_newline = env.newline_sequence != "\n"
    keep_newline = env.keep_trailing_newline

    def plain(source: str) -> bool:
        return (
            block not in source
            and variable not in source
            and comment not in source
            and "\r" not in source
            and not (other_newline and "\n" in source)
            and (keep_newline or not source.endswith("\n"))
        )

    return plain


def _plain_text_shortcut(environment: Environment) -> Any:
    original: Any = environment.from_string
    # Settled at the first call, once every extension is loaded: the test, and the
    # preprocess hooks that do something (Environment.preprocess sorts all of them
    # on every call), in Jinja's order.
    settled: list[tuple[Callable[[str], bool] | None, list[Any]]] = []

    def from_string(source: Any, globals: Any = None, template_class: Any = None) -> Any:
        if not settled:
            hooks = [
                ext.preprocess
                for ext in environment.iter_extensions()
                if type(ext).preprocess is not Extension.preprocess
            ]
            settled.append((plain_text_test(environment), hooks))
        plain, hooks = settled[0]
        if isinstance(source, str) and template_class is None and plain is not None and plain(source):
            # The hooks still run, as a compile would run them: Copier's yield
            # extension resets its state there, and Copier reads it after every path part.
            text = source
            for hook in hooks:
                text = hook(text, None, None)
            if text == source:
                return PlainText(source, lambda: original(source, globals))
        return original(source, globals, template_class)

    return from_string
