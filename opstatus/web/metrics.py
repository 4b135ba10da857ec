"""Prometheus metrics of one app, and ``GET /metrics`` to scrape them.

Each app owns its registry (no module-level registry: tests build many apps in
one process). With ``opstatus serve --workers N`` every worker process keeps its
own counts and a scrape reaches one of them; run one worker per scrape target
when exact totals matter.

The database figures (queue depth and age, executions per state, webhook lag) are
the same from every process: they are read from the store when a scrape comes,
at most once per ``SCRAPE_CACHE`` seconds, never on the request path.
docs/monitoring.md lists every metric and what it answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from opstatus.domain.clock import Clock, utcnow
from opstatus.domain.states import State
from opstatus.service.notifier import Notifier
from opstatus.store.port import Backlog, Store, WebhookStore

#: request durations, seconds: status reads are sub-millisecond, long-polls up to a minute
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30, 60)
#: time in one execution state, seconds: a queue hop is milliseconds, a run up to a day
STATE_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400)
#: seconds a scrape reuses the database figures of the previous one
SCRAPE_CACHE = 5.0
#: kinds given their own label value; further ones are counted under OTHER_KIND (kinds
#: are chosen by clients, and every label value is a series Prometheus keeps)
MAX_KINDS = 200
OTHER_KIND = "_other"
log = logging.getLogger("opstatus.metrics")


class Metrics:
    """The registry of one app and the instruments the middleware records into."""

    def __init__(
        self,
        *,
        notifier: Notifier,
        store: Store | None = None,
        webhooks: WebhookStore | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.registry = CollectorRegistry()
        self.state_seconds = self._histogram(
            "opstatus_execution_state_seconds",
            "Time executions spent in a state before leaving it, by kind and state.",
            ("kind", "state"), STATE_BUCKETS,
        )  # fmt: skip
        self.stalled = self._counter(
            "opstatus_executions_stalled",
            "Executions marked stalled (execution.stalled), by kind.", ("kind",),
        )  # fmt: skip
        self._kinds: set[str] = set()
        self.database = DatabaseFigures(store, webhooks, clock)
        if store is not None:
            self.registry.register(self.database)
        self.in_flight = 0  #: requests being answered now (the middleware counts)
        self.requests = self._counter(
            "opstatus_http_requests",
            "HTTP requests answered, by route template and status.", ("method", "route", "status"),
        )  # fmt: skip
        self.duration = self._histogram(
            "opstatus_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.", ("method", "route"), BUCKETS,
        )  # fmt: skip
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

    def _counter(self, name: str, doc: str, labels: tuple[str, ...]) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def _histogram(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> Histogram:
        return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)

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

    def watch_reads(self, figures: Callable[[], tuple[int, int, int]]) -> None:
        """Expose the fast read path's (hits, misses, entries)."""
        self.registry.register(CacheFigures(figures))

    def kind(self, kind: str) -> str:
        """The label value for ``kind``: itself, or OTHER_KIND past MAX_KINDS kinds."""
        if kind in self._kinds:
            return kind
        if len(self._kinds) >= MAX_KINDS:
            return OTHER_KIND
        self._kinds.add(kind)
        return kind

    def transition(self, kind: str, state: State, seconds: float) -> None:
        """Record that an execution of ``kind`` left ``state`` after ``seconds``."""
        self.state_seconds.labels(self.kind(kind), str(state)).observe(seconds)

    def stall(self, kind: str) -> None:
        """Count an execution of ``kind`` marked stalled."""
        self.stalled.labels(self.kind(kind)).inc()

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)


class CacheFigures(Collector):
    """The fast read path's figures (web/reads.py), read at scrape time."""

    def __init__(self, figures: Callable[[], tuple[int, int, int]]) -> None:
        self.figures = figures  #: () -> (hits, misses, entries)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        hits, misses, entries = self.figures()
        yield CounterMetricFamily(
            "opstatus_read_cache_hits",
            "Status reads (GET /v1/operations/{id}) answered from the read cache.",
            value=hits,
        )
        yield CounterMetricFamily(
            "opstatus_read_cache_misses",
            "Status reads the read cache could not answer (read the full way).",
            value=misses,
        )
        yield GaugeMetricFamily(
            "opstatus_read_cache_entries",
            "Operations whose encoded status body the read cache holds.",
            value=entries,
        )


class DatabaseFigures(Collector):
    """Gauges read from the database: refreshed by :meth:`refresh` (at most once per
    SCRAPE_CACHE seconds), exposed from the last snapshot."""

    def __init__(self, store: Store | None, webhooks: WebhookStore | None, clock: Clock) -> None:
        self.store = store
        self.webhooks = webhooks
        self.clock = clock
        self.backlog: Sequence[Backlog] = ()
        self.oldest_undelivered: datetime | None = None
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Read the figures again unless the last read is recent; a failed read keeps
        the previous figures (the scrape still answers, with process metrics)."""
        if self.store is None:
            return
        async with self._lock:  # concurrent scrapes share one read
            if self._read_at is not None and time.monotonic() - self._read_at < SCRAPE_CACHE:
                return
            try:
                self.backlog = await self.store.backlog()
                if self.webhooks is not None:
                    self.oldest_undelivered = await self.webhooks.oldest_undelivered()
            except Exception:  # the database is away: say so in the log, keep serving
                log.warning("metrics: the database figures could not be read", exc_info=True)
                return
            self._read_at = time.monotonic()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges of the last snapshot; ages are counted to now."""
        now = self.clock()
        depth = GaugeMetricFamily(
            "opstatus_queue_depth", "Queued executions (waiting in inboxes), by kind.",
            labels=("kind",),
        )  # fmt: skip
        age = GaugeMetricFamily(
            "opstatus_queue_oldest_age_seconds",
            "Seconds the oldest queued execution has waited, by kind.",
            labels=("kind",),
        )
        unfinished = GaugeMetricFamily(
            "opstatus_executions", "Unfinished executions, by kind and state.",
            labels=("kind", "state"),
        )  # fmt: skip
        for row in _by_kind(self.backlog):
            unfinished.add_metric((row.kind, str(row.state)), row.count)
            if row.state is State.QUEUED:
                depth.add_metric((row.kind,), row.count)
                if row.oldest_queued_at is not None:
                    age.add_metric((row.kind,), _age(now, row.oldest_queued_at))
        lag = GaugeMetricFamily(
            "opstatus_webhook_delivery_lag_seconds",
            "Age of the oldest event a webhook has still to deliver (0: none behind).",
        )
        oldest = self.oldest_undelivered
        lag.add_metric((), 0.0 if oldest is None else _age(now, oldest))
        yield from (depth, age, unfinished, lag)


def _age(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


def _by_kind(backlog: Sequence[Backlog]) -> list[Backlog]:
    """``backlog`` with kinds past MAX_KINDS (by count) folded into OTHER_KIND."""
    totals: dict[str, int] = {}
    for row in backlog:
        totals[row.kind] = totals.get(row.kind, 0) + row.count
    kept = set(sorted(totals, key=lambda k: (-totals[k], k))[:MAX_KINDS])
    folded: dict[tuple[str, State], Backlog] = {}
    for row in backlog:
        kind = row.kind if row.kind in kept else OTHER_KIND
        seen = folded.get((kind, row.state))
        if seen is None:
            folded[(kind, row.state)] = Backlog(
                kind=kind, state=row.state, count=row.count,
                oldest_queued_at=row.oldest_queued_at,
            )  # fmt: skip
            continue
        oldest = min(
            (t for t in (seen.oldest_queued_at, row.oldest_queued_at) if t is not None),
            default=None,
        )
        folded[(kind, row.state)] = Backlog(
            kind=kind, state=row.state, count=seen.count + row.count, oldest_queued_at=oldest
        )
    return list(folded.values())


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
    await metrics.database.refresh()
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
