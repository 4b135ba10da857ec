"""Prometheus metrics of one app, and ``GET /metrics`` to scrape them.

Each app owns its registry (no module-level registry: tests build many apps in
one process). With ``opstatus serve --workers N`` every worker process keeps its
own counts and a scrape reaches one of them; run one worker per scrape target
when exact totals matter.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

from opstatus.service.notifier import Notifier

#: request durations, seconds: status reads are sub-millisecond, long-polls up to a minute
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30, 60)


class Metrics:
    """The registry of one app and the instruments the middleware records into."""

    def __init__(self, *, notifier: Notifier) -> None:
        self.registry = CollectorRegistry()
        self.in_flight = 0  #: requests being answered now (the middleware counts)
        self.requests = Counter(
            "opstatus_http_requests",
            "HTTP requests answered, by route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "opstatus_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ("method", "route"),
            buckets=BUCKETS,
            registry=self.registry,
        )
        # Gauges read at scrape time: nothing on the request path updates them.
        waiters = Gauge(
            "opstatus_notifier_waiters",
            "Long-polls and streams waiting for a change in this process.",
            registry=self.registry,
        )
        waiters.set_function(_as_float(notifier.waiting))
        in_flight = Gauge(
            "opstatus_http_requests_in_flight",
            "HTTP requests being answered by this process.",
            registry=self.registry,
        )
        in_flight.set_function(lambda: float(self.in_flight))
        ProcessCollector(registry=self.registry)
        # Label lookups cost a lock and a tuple build in prometheus-client; the
        # children are cached here so a request pays one dict lookup for each.
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and record how long it took."""
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = self.requests.labels(method, route, str(status))
            self._counters[(method, route, status)] = counter
        counter.inc()
        histogram = self._histograms.get((method, route))
        if histogram is None:
            histogram = self.duration.labels(method, route)
            self._histograms[(method, route)] = histogram
        histogram.observe(seconds)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)


def _as_float(read: Callable[[], int]) -> Callable[[], float]:
    return lambda: float(read())


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text exposition of this process's metrics.

    Unauthenticated on purpose, as scrapers expect: it reveals request counts
    per route and process figures, never tenant data. Operators should keep it
    off the public network (firewall ``/metrics`` or expose it only to the
    scraper's address).
    """
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
