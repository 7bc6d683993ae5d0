"""Semantic search's plug-in point (an Embedder) and the vector arithmetic it needs.

Vectors are stored as little-endian float32 and scaled to unit length when
stored, so cosine similarity is a plain dot product at search time.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Protocol

NO_EMBEDDER_REASON = (
    "no embedder is installed: install the module's 'semantic' extra and set KSE_EMBEDDER, "
    "or set MEMORY_SERVICE_URL"
)


class Embedder(Protocol):
    """Turns texts into vectors. Synchronous and CPU-bound: callers run it off the event loop."""

    def embed(self, texts: list[str]) -> list[list[float]]: ...


def checked_vectors(vectors: object, count: int) -> list[list[float]]:
    """The embedder's answer, or ValueError if it is not ``count`` lists of finite numbers."""
    if not isinstance(vectors, list) or len(vectors) != count:
        raise ValueError(f"the embedder must return {count} vector(s)")
    checked: list[list[float]] = []
    for vector in vectors:
        if not isinstance(vector, list | tuple) or not vector:
            raise ValueError("the embedder returned an empty or non-list vector")
        numbers = [float(x) for x in vector if isinstance(x, int | float)]
        if len(numbers) != len(vector) or not all(math.isfinite(x) for x in numbers):
            raise ValueError("the embedder returned a vector that is not all finite numbers")
        checked.append(numbers)
    return checked


def unit(vector: Sequence[float]) -> list[float] | None:
    """``vector`` scaled to length 1; None for the zero vector (it has no direction)."""
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0:
        return None
    return [x / norm for x in vector]


def pack(vector: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(vector)}f", *vector)


def unpack(blob: bytes) -> tuple[float, ...]:
    return struct.unpack(f"<{len(blob) // 4}f", blob)


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two unit vectors; ValueError when their dimensions differ."""
    if len(a) != len(b):
        raise ValueError("vectors of different dimensions")
    return math.fsum(x * y for x, y in zip(a, b, strict=True))
