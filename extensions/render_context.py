"""Build Copier's render context once per pass over the template, not once per string.

Copier 9.19 rebuilds the Jinja context (``Worker._render_context``) for every path
part, file and condition it renders: about 720 times for a default module, each
time merging the answers from their seven sources twice (once more for
``_copier_answers``). Nothing in it can change while ``Worker._render_template``
walks the tree: the answers were settled before, and the phase is the same.

So during that pass the first context built is kept, and every caller gets a
copy of it whose own parts are new too: ``_copier_answers``, and ``_copier_conf``
(Copier's lazy mapping, which ``Worker.answers_relpath`` changes in the context it
is given). Likewise ``Worker.answers_relpath``, which renders the answers file's
name and is asked once per path part (about 300 times): it is computed once per
pass. Outside the pass (questions, messages, tasks, migrations), or when
Copier's private names change, Copier's own code runs every time.
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension

_MARK = "__modforge_render_context__"
_MEMO = "_modforge_render_context"  # on the Worker, only during a pass: [] or [context]
_RELPATH = "_modforge_answers_relpath"  # likewise: [] or [path]


def _copy(context: dict[str, Any]) -> dict[str, Any] | None:
    """A copy no caller's change can reach the kept one through; None if its shape is unknown."""
    conf: Any = context.get("_copier_conf")
    answers = context.get("_copier_answers")
    pending = getattr(conf, "_pending", None)  # LazyDict: {key: function}; its values come later
    if not isinstance(pending, dict) or not isinstance(answers, dict):
        return None
    return {**context, "_copier_conf": type(conf)(pending), "_copier_answers": dict(answers)}


def install() -> bool:
    """Wrap Copier's methods once per process; False when Copier lacks them."""
    try:
        from copier import _main
    except ImportError:
        return False
    worker = getattr(_main, "Worker", None)
    build = getattr(worker, "_render_context", None)
    render = getattr(worker, "_render_template", None)
    relpath = getattr(worker, "answers_relpath", None)
    if build is None or render is None or not isinstance(relpath, property) or relpath.fget is None:
        return False
    if getattr(build, _MARK, False):
        return True
    compute_relpath = relpath.fget

    @functools.wraps(render)
    def render_template(self: Any) -> None:
        vars(self)[_MEMO] = []
        vars(self)[_RELPATH] = []
        try:
            render(self)
        finally:
            vars(self).pop(_MEMO, None)
            vars(self).pop(_RELPATH, None)

    @functools.wraps(compute_relpath)
    def answers_relpath(self: Any) -> Any:
        memo: list[Any] | None = vars(self).get(_RELPATH)
        if memo is None:
            return compute_relpath(self)
        if not memo:
            memo.append(compute_relpath(self))
        return memo[0]

    @functools.wraps(build)
    def render_context(self: Any) -> Any:
        memo: list[dict[str, Any]] | None = vars(self).get(_MEMO)
        if memo is None:
            return build(self)
        if not memo:
            memo.append(build(self))
        return _copy(memo[0]) or build(self)

    setattr(render_template, _MARK, True)
    setattr(render_context, _MARK, True)
    worker._render_template = render_template  # type: ignore[union-attr]
    worker._render_context = render_context  # type: ignore[union-attr]
    worker.answers_relpath = property(answers_relpath)  # type: ignore[union-attr]
    return True


class RenderContextExtension(Extension):
    """Loaded with the template's other extensions, before Copier renders a path."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        install()
