"""Prometheus metrics, one registry per app (no global state between app instances).

HTTP metrics are recorded by the request middleware (middleware.py); task
metrics are read from the task manager when /metrics is scraped, so a task
transition costs nothing here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from .core import ModuleCore

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "task_gauges"]

# Seconds; the module answers most requests in well under 10 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def task_gauges(core: ModuleCore) -> dict[str, int]:
    """Tasks by state right now: the one place that knows the task manager's API."""
    return {"queued": core.tasks.queued, "running": core.tasks.active}


class _StateCollector(Collector):
    """Gauges computed at scrape time from the live module."""

    def __init__(self, core: Callable[[], ModuleCore | None], in_flight: Callable[[], int]) -> None:
        self._core = core
        self._in_flight = in_flight

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "http_requests_in_flight", "HTTP requests being served right now"
        )
        in_flight.add_metric([], self._in_flight())
        yield in_flight
        core = self._core()
        states = task_gauges(core) if core is not None else {"queued": 0, "running": 0}
        by_state = GaugeMetricFamily(
            "module_tasks", "Tasks held by this process, by state", labels=["state"]
        )
        for state, count in states.items():
            by_state.add_metric([state], count)
        yield by_state
        depth = GaugeMetricFamily("module_queue_depth", "Tasks waiting for a worker")
        depth.add_metric([], states["queued"])
        yield depth


class Metrics:
    """The app's registry and the HTTP instruments the middleware feeds."""

    def __init__(self, core: Callable[[], ModuleCore | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.in_flight = 0
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from request start to the last response byte, by method and route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(core, lambda: self.in_flight))
        # (method, route, status) -> bound instruments: labels() is the costly part.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
