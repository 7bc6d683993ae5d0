"""KSE settings as plain values: module.json's kse_integration plus the runtime settings.

The app builds a KseConfig from its own settings and manifest; nothing in this
package reads either, so the memory layer is tested (and reused) without the
app around it. Nonsense values stop the start with StartupError, naming the
field, rather than surfacing later as odd search results.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import StartupError
from .embedding import Embedder

# What module.json kse_integration.search_capabilities may list.
SEARCH_CAPABILITIES = frozenset({"semantic", "keyword", "temporal", "contextual"})


@dataclass(frozen=True)
class KseConfig:
    """Everything the memory layer needs; ``service_url=None`` selects the embedded backend.

    ``retry_attempts`` counts retries after the first try (0: try once).
    ``clock`` is wall-clock Unix seconds: expiry and archive cut-offs must hold
    across restarts, and tests drive time through it.
    """

    module: str
    version: str
    memory_types: tuple[str, ...]
    search_capabilities: frozenset[str]
    index_prefix: str
    batch_size: int
    database: Path
    archive_dir: Path
    service_url: str | None
    service_token: str | None
    timeout_seconds: float
    retry_attempts: int
    retry_initial_seconds: float
    max_batch_items: int = 1000
    embedder: Embedder | None = None
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        field = "module.json kse_integration"
        if not self.memory_types or any(not name for name in self.memory_types):
            raise StartupError(f"{field}.memory_types must list at least one non-empty type")
        if len(set(self.memory_types)) != len(self.memory_types):
            raise StartupError(f"{field}.memory_types lists a type twice")
        unknown = sorted(self.search_capabilities - SEARCH_CAPABILITIES)
        if unknown:
            known = ", ".join(sorted(SEARCH_CAPABILITIES))
            raise StartupError(
                f"{field}.search_capabilities: unknown {', '.join(unknown)} (known: {known})"
            )
        if self.batch_size < 1:
            raise StartupError(f"{field}.batch_size must be at least 1, not {self.batch_size}")
        if self.max_batch_items < 1:
            raise StartupError(
                f"KSE max_batch_items must be at least 1, not {self.max_batch_items}"
            )
        if not self.timeout_seconds > 0:
            raise StartupError("the memory service timeout must be positive")
        if self.retry_attempts < 0 or self.retry_initial_seconds < 0:
            raise StartupError("memory service retries and their delay cannot be negative")
        if self.service_url is not None and not self.service_url.startswith(
            ("http://", "https://")
        ):
            raise StartupError(
                f"MEMORY_SERVICE_URL must be an http(s) URL, not {self.service_url!r}"
            )
