"""Ask git for the destination's ``core.fileMode`` once per pass, not once per file.

Copier 9.19 keeps executable bits that git cannot see: after writing each file it
runs ``git config --get core.fileMode`` in the destination and, only when that
says ``false``, rewrites the file's mode in git's index
(``Worker._sync_git_index_executable_bit``). That is one ``git`` process per file
written, 87 for a default module: 0.25 s of a 0.9 s render, the same from the
command line, in every ``copier update`` and in every harness render.

The answer cannot change while Copier writes one tree (it runs no git command in
the destination between two files), so this asks once per pass of
``Worker._render_template`` and, when the answer is ``false``, lets Copier's own
method do its work for every file as before. Outside such a pass, or when
Copier's private names change, Copier's code runs untouched: slower, never wrong.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension

_MARK = "__modforge_git_filemode__"
_MEMO = "_modforge_filemode"  # on the Worker, only during a pass: {destination: answer}


def _file_mode(worker: Any, get_git: Any, error: type[Exception]) -> str | None:
    """What Copier's method would read: ``true``/``false``, or None when unset or no repo."""
    try:
        git = get_git(context_dir=worker.subproject.local_abspath)
        return str(git("config", "--type=bool", "--get", "core.fileMode")).strip()
    except (error, OSError):
        return None


def install() -> bool:
    """Wrap Copier's two methods once per process; False when Copier lacks them."""
    try:
        from copier import _main
        from plumbum import ProcessExecutionError
    except ImportError:
        return False
    worker = getattr(_main, "Worker", None)
    sync = getattr(worker, "_sync_git_index_executable_bit", None)
    render = getattr(worker, "_render_template", None)
    get_git = getattr(_main, "get_git", None)
    if sync is None or render is None or get_git is None:
        return False
    if getattr(sync, _MARK, False):
        return True

    @functools.wraps(render)
    def render_template(self: Any) -> None:
        vars(self)[_MEMO] = {}
        try:
            render(self)
        finally:
            vars(self).pop(_MEMO, None)

    @functools.wraps(sync)
    def sync_git_index_executable_bit(self: Any, dst_relpath: Path, src_mode: int) -> None:
        memo: dict[Path, str | None] | None = vars(self).get(_MEMO)
        if memo is not None:
            root = self.subproject.local_abspath
            if root not in memo:
                memo[root] = _file_mode(self, get_git, ProcessExecutionError)
            if memo[root] != "false":
                return  # Copier's method returns here too: git sees the chmod itself
        sync(self, dst_relpath, src_mode)

    setattr(render_template, _MARK, True)
    setattr(sync_git_index_executable_bit, _MARK, True)
    worker._render_template = render_template  # type: ignore[union-attr]
    worker._sync_git_index_executable_bit = sync_git_index_executable_bit  # type: ignore[union-attr]
    return True


class GitFileModeExtension(Extension):
    """Loaded with the template's other extensions, before Copier writes a file."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        install()
