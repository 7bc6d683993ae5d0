"""Data transformations: normalize, standardize, scale, sort, deduplicate.

Pure functions like analysis.py. Degenerate input is answered, not crashed on:
an empty list transforms to an empty list, and zero range / zero variance maps
every value to 0.0 with a note saying why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

TransformOperation = Literal["normalize", "standardize", "scale", "sort", "deduplicate"]
OPERATIONS: tuple[str, ...] = ("normalize", "standardize", "scale", "sort", "deduplicate")
Number = float | int


def _checked(values: list[float]) -> list[float]:
    if not all(math.isfinite(v) for v in values):
        raise ArithmeticError("the result is outside the range of a 64-bit float")
    return values


def normalize(values: Sequence[Number]) -> tuple[list[float], str | None]:
    """Min-max scaling to [0, 1]."""
    if not values:
        return [], None
    low, high = min(values), max(values)
    span = high - low
    if span == 0:
        return [0.0] * len(values), "all values are equal (range 0); each maps to 0.0"
    if not math.isfinite(span):
        raise ArithmeticError("the value range is outside the range of a 64-bit float")
    return [(v - low) / span for v in values], None


def standardize(values: Sequence[Number]) -> tuple[list[float], str | None]:
    """z-scores with the population standard deviation."""
    n = len(values)
    if n == 0:
        return [], None
    mean = math.fsum(v / n for v in values)
    std = math.sqrt(math.fsum((v - mean) * (v - mean) for v in values) / n)
    if not math.isfinite(std):
        raise ArithmeticError("the standard deviation is outside the range of a 64-bit float")
    if std == 0:
        return [0.0] * n, "all values are equal (standard deviation 0); each maps to 0.0"
    return _checked([(v - mean) / std for v in values]), None


def transform(
    operation: str,
    values: Sequence[Number],
    *,
    factor: float | None = None,
    descending: bool = False,
) -> dict[str, Any]:
    note: str | None = None
    if operation == "normalize":
        out, note = normalize(values)
    elif operation == "standardize":
        out, note = standardize(values)
    elif operation == "scale":
        if factor is None:
            raise ValueError("the scale operation needs a factor")
        out = _checked([v * factor for v in values])
    elif operation == "sort":
        out = sorted((float(v) for v in values), reverse=descending)
    elif operation == "deduplicate":
        # dict keeps first-seen order; 1 and 1.0 count as the same value.
        out = list(dict.fromkeys(float(v) for v in values))
    else:
        raise ValueError(f"unknown transform operation {operation!r}")
    result: dict[str, Any] = {"operation": operation, "count": len(out), "values": out}
    if note is not None:
        result["note"] = note
    return result
