"""Random identifiers (uuid4) for tasks and requests, from os.urandom in blocks.

``uuid.uuid4()`` makes one ``os.urandom`` system call per id, and every system
call lets another thread take the GIL: under load that wait, not the call,
was a visible share of each request. One call here serves 256 ids, with the
same randomness and the same version-4 layout.
"""

from __future__ import annotations

import os
import threading
from uuid import UUID

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


def new_uuid4() -> UUID:
    return UUID(bytes=_random.take16(), version=4)
