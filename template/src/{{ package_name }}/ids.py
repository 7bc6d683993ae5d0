"""Identifiers: version-7 UUIDs for tasks, version-4 for requests and the rest.

Both draw their random bits from ``os.urandom`` in blocks. ``uuid.uuid4()`` makes
one ``os.urandom`` system call per id, and every system call lets another thread
take the GIL: under load that wait, not the call, was a visible share of each
request. One call here serves 256 ids.

Request ids are made as text directly, and task ids keep their text (``TextUUID``):
formatting a UUID is pure Python, and a task id is written out several times.

Task ids are version 7 (RFC 9562): the time in milliseconds first, then 74
random bits. The task table's id index is a B-tree; random ids land on a random
page of it, which is rarely in the cache once the table is large, while ids made
in time order land on its last page. An insert then costs the same with 100,000
tasks stored as with 100.
"""

from __future__ import annotations

import os
import threading
import time
from uuid import UUID, SafeUUID

_IDS_PER_BLOCK = 256


class _RandomBlocks:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # ids are also made in worker threads
        self._block = b""
        self._offset = 0

    def take16(self) -> bytes:
        with self._lock:
            if self._offset >= len(self._block):
                self._block, self._offset = os.urandom(16 * _IDS_PER_BLOCK), 0
            start = self._offset
            self._offset += 16
            return self._block[start : start + 16]


_random = _RandomBlocks()

_VARIANT_RFC = 0b10 << 62
_VERSION_4 = 4 << 76
_VERSION_7 = 7 << 76
# Version 4: every bit random but the version nibble and the variant's two bits.
_RANDOM_4 = ((1 << 128) - 1) ^ (0xF << 76) ^ (0b11 << 62)
_TIME_SHIFT = 80  # version 7: the 48-bit millisecond count fills the top of the 128 bits
# Version 7: 12 random bits after the version nibble, 62 after the variant.
_RANDOM_7 = (((1 << 12) - 1) << 64) | ((1 << 62) - 1)


def new_uuid4() -> UUID:
    return UUID(bytes=_random.take16(), version=4)


def new_uuid4_text() -> str:
    """The text of a fresh version-4 UUID, without making the UUID object."""
    random = int.from_bytes(_random.take16(), "big")
    return _text((random & _RANDOM_4) | _VERSION_4 | _VARIANT_RFC)


def new_uuid7() -> UUID:
    """A version-7 UUID: Unix time in milliseconds, version, 12 random bits, variant,
    62 random bits. Ids made in later milliseconds sort after earlier ones."""
    random = int.from_bytes(_random.take16(), "big")
    moment = (time.time_ns() // 1_000_000) & ((1 << 48) - 1)
    # UUID(version=7) is refused before Python 3.14: the bits are set here.
    value = (moment << _TIME_SHIFT) | _VERSION_7 | _VARIANT_RFC | (random & _RANDOM_7)
    made = object.__new__(TextUUID)
    # UUID's own __setattr__ refuses: this is how UUID.__init__ sets its fields too.
    object.__setattr__(made, "int", value)
    object.__setattr__(made, "is_safe", SafeUUID.unknown)
    object.__setattr__(made, "_text", _text(value))
    return made


class TextUUID(UUID):
    """A UUID that keeps its text. A task id is written out four times while its
    submission is answered (the answer, its Location, the audit record, the store),
    and ``UUID.__str__`` formats it anew each time."""

    __slots__ = ("_text",)
    _text: str

    def __str__(self) -> str:
        try:
            return self._text
        except AttributeError:  # a copy or an unpickled one: those restore ``int`` only
            return super().__str__()


def _text(value: int) -> str:
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
