"""Tags: generated from a memory's value, merged with the caller's, all in one spelling.

Every tag is lowercase ``[a-z0-9_]`` (accents folded, other characters turned
into ``_``) so a filter matches whatever case or punctuation the writer used.
Generated tags follow the platform's convention: a ``user_id`` key marks user
data, ``report_type: weekly`` gives ``report_weekly``, a date key marks
temporal data.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

MAX_TAG_LENGTH = 64
MAX_TAGS = 64

# A key present in the value -> a fixed tag.
KEY_TAGS: dict[str, str] = {
    "user_id": "user_data",
    "date_range": "temporal_data",
    "start_date": "temporal_data",
    "end_date": "temporal_data",
    "timestamp": "temporal_data",
    "location": "location_data",
}
# A key with a text or integer value -> "<prefix>_<value>".
VALUE_TAGS: dict[str, str] = {
    "report_type": "report",
    "event_type": "event",
    "category": "category",
}

_OTHER = re.compile(r"[^a-z0-9_]+")
_REPEATED = re.compile(r"_{2,}")


def sanitise_tag(raw: str) -> str:
    """``raw`` in tag spelling; empty when nothing of it is usable."""
    ascii_text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")
    tag = _REPEATED.sub("_", _OTHER.sub("_", ascii_text.lower())).strip("_")
    return tag[:MAX_TAG_LENGTH].rstrip("_")


def generated_tags(value: Mapping[str, Any]) -> list[str]:
    """Tags the value's top-level keys imply, in the value's key order."""
    tags: list[str] = []
    for key, item in value.items():
        if key in KEY_TAGS:
            tags.append(KEY_TAGS[key])
        # bool is an int, but "event_true" says nothing.
        if key in VALUE_TAGS and isinstance(item, str | int) and not isinstance(item, bool):
            suffix = sanitise_tag(str(item))
            if suffix:
                tags.append(sanitise_tag(f"{VALUE_TAGS[key]}_{suffix}"))
    return tags


def merge_tags(caller: Iterable[str], value: Mapping[str, Any]) -> tuple[str, ...]:
    """The caller's tags then the generated ones, sanitised, without repeats or empties."""
    merged: list[str] = []
    for raw in [*caller, *generated_tags(value)]:
        tag = sanitise_tag(raw)
        if tag and tag not in merged:
            merged.append(tag)
    return tuple(merged[:MAX_TAGS])
