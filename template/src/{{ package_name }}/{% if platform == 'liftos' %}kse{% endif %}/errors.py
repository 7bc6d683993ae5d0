"""The one error the memory layer adds to the module's domain errors."""

from __future__ import annotations

from ..errors import NotReady


class MemoryUnavailable(NotReady):
    """The memory backend cannot serve now (store closed, disk failing, service down): 503."""
