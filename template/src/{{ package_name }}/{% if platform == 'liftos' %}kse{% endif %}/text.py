"""Text for the indexes: a memory's value flattened to words, a query made safe for FTS5.

User text never reaches FTS5's query syntax. A query is cut into words
(letters and digits, as FTS5's unicode61 tokenizer cuts them), each word is
quoted as a phrase and the phrases are OR-ed, so quotes, ``*``, ``NEAR``,
``-``, ``:`` or parentheses in a query are just separators.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from ..errors import RequestRejected

# A query's words beyond this add cost but hardly change the ranking.
MAX_QUERY_WORDS = 32
# Underscore is a separator, as in unicode61, so "user_id" is the words "user" "id".
_WORD = re.compile(r"[^\W_]+")


def flatten_value(value: Any) -> str:
    """Keys and scalar values of a JSON value, in document order, separated by spaces.

    Iterative rather than recursive: a deeply nested value cannot exhaust the stack.
    """
    parts: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                stack.append(child)
                stack.append(_Key(str(key)))
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))
        elif isinstance(item, _Key):
            parts.append(item.name)
        elif isinstance(item, bool):
            parts.append(json.dumps(item))
        elif item is not None:
            parts.append(str(item))
    return " ".join(part for part in parts if part)


class _Key:
    """Marks a dict key on flatten_value's stack (a key is text even if it looks like a value)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def memory_text(key: str, value: dict[str, Any]) -> str:
    """What an embedder sees of a memory: its key and its flattened value."""
    return f"{key} {flatten_value(value)}"


def query_words(query: str) -> list[str]:
    """The distinct words of ``query``, in order, at most MAX_QUERY_WORDS."""
    words: list[str] = []
    for word in _WORD.findall(unicodedata.normalize("NFC", query)):
        folded = word.casefold()
        if folded not in words:
            words.append(folded)
        if len(words) == MAX_QUERY_WORDS:
            break
    return words


def fts_expression(query: str) -> str:
    """An FTS5 MATCH expression any of whose words matches; 422 if the query has none."""
    words = query_words(query)
    if not words:
        raise RequestRejected(
            "query has no searchable words: keyword search needs letters or digits"
        )
    # The words hold no quotes (see _WORD); doubling them anyway keeps this safe
    # even if the pattern changes.
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in words)
