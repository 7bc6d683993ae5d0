"""Statistical, pattern and trend analysis of a list of numbers.

Pure functions: no I/O, no shared state, so the task manager can run them in a
worker thread. Inputs are finite numbers (the request models reject bools, NaN
and infinities); every function is defined on empty and one-value input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise
from typing import Any, Literal

AnalysisType = Literal["statistical", "pattern", "trend"]
Number = float | int
Result = dict[str, Any]


def _finite(value: float, what: str) -> float:
    # Finite inputs can still overflow (e.g. the sum of two values near 1e308).
    if not math.isfinite(value):
        raise ArithmeticError(f"{what} is outside the range of a 64-bit float")
    return value


def _fsum(terms: Iterable[float], what: str) -> float:
    try:
        return _finite(math.fsum(terms), what)
    except OverflowError:  # fsum raises instead of returning inf
        raise ArithmeticError(f"{what} is outside the range of a 64-bit float") from None


def _mean(values: Sequence[Number]) -> float:
    # Dividing before summing keeps huge values from overflowing the sum.
    n = len(values)
    return _fsum((v / n for v in values), "the mean")


def statistical(values: Sequence[Number]) -> Result:
    """count, sum, mean, median, population variance and std_dev, min, max."""
    n = len(values)
    if n == 0:
        return {
            "count": 0,
            "sum": 0,
            "mean": None,
            "median": None,
            "variance": None,
            "std_dev": None,
            "min": None,
            "max": None,
        }
    mean = _mean(values)
    ordered = sorted(values)
    mid = n // 2
    median = float(ordered[mid]) if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    # Population variance (divide by n): the data is the whole population here.
    variance = _fsum(((v - mean) * (v - mean) / n for v in values), "the variance")
    return {
        "count": n,
        "sum": _fsum(values, "the sum"),
        "mean": mean,
        "median": median,
        "variance": variance,
        "std_dev": math.sqrt(variance),
        "min": ordered[0],
        "max": ordered[-1],
    }


def pattern(values: Sequence[Number]) -> Result:
    """Step counts and the whole-sequence patterns they form.

    increasing / decreasing / constant need at least two values; alternating
    (up, down, up... with no flat step) needs at least three.
    """
    steps = [b - a for a, b in pairwise(values)]
    ups = sum(1 for s in steps if s > 0)
    downs = sum(1 for s in steps if s < 0)
    flats = len(steps) - ups - downs
    # A turn is a rise followed by a fall or the reverse (flat steps never turn).
    turns = [(a > 0) != (b > 0) for a, b in pairwise(steps) if a != 0 and b != 0]
    patterns: list[str] = []
    if steps and ups == len(steps):
        patterns.append("increasing")
    if steps and downs == len(steps):
        patterns.append("decreasing")
    if steps and flats == len(steps):
        patterns.append("constant")
    if len(steps) >= 2 and flats == 0 and all(turns):
        patterns.append("alternating")
    direction_changes = sum(turns)
    return {
        "count": len(values),
        "patterns_detected": patterns,
        "pattern_count": len(patterns),
        "increasing_steps": ups,
        "decreasing_steps": downs,
        "constant_steps": flats,
        "direction_changes": direction_changes,
    }


def trend(values: Sequence[Number]) -> Result:
    """Least-squares line through (index, value) and the first-to-last change."""
    n = len(values)
    result: Result = {
        "count": n,
        "slope": None,
        "intercept": None,
        "direction": None,
        "initial_value": values[0] if n else None,
        "final_value": values[-1] if n else None,
        "change_percentage": None,
    }
    if n < 2:
        result["reason"] = "a trend needs at least two values"
        return result
    x_mean = (n - 1) / 2
    y_mean = _mean(values)
    sxx = math.fsum((i - x_mean) * (i - x_mean) for i in range(n))
    sxy = _fsum(((i - x_mean) * (v - y_mean) for i, v in enumerate(values)), "the slope")
    slope = _finite(sxy / sxx, "the slope")
    # A slope this small relative to the data is rounding noise, not a trend.
    scale = max(1.0, max(abs(v) for v in values))
    if abs(slope) <= 1e-12 * scale:
        direction = "flat"
    else:
        direction = "increasing" if slope > 0 else "decreasing"
    result.update(slope=slope, intercept=y_mean - slope * x_mean, direction=direction)
    first, last = values[0], values[-1]
    if first == 0:
        result["change_percentage_reason"] = (
            "the first value is 0, so a percentage change is undefined"
        )
    else:
        # Divide by |first| so the sign follows the direction of the change.
        change = (last - first) / abs(first) * 100
        result["change_percentage"] = _finite(change, "the change percentage")
    return result


ANALYSES: dict[str, Callable[[Sequence[Number]], Result]] = {
    "statistical": statistical,
    "pattern": pattern,
    "trend": trend,
}


def analyze(analysis_type: str, values: Sequence[Number]) -> Result:
    """Dispatch by name; the result carries its type and data-point count."""
    try:
        function = ANALYSES[analysis_type]
    except KeyError:
        raise ValueError(f"unknown analysis type {analysis_type!r}") from None
    return {"analysis_type": analysis_type, "data_points": len(values), "result": function(values)}
