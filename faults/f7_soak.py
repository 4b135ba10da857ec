"""F7: a soak — ten minutes of steady mixed load; memory and file descriptors stay flat.

One ``opstatus serve`` on SQLite (FULL), pinned to the server CPU, with a short
retention (``OPSTATUS_RETENTION_SECONDS``) so the engine purges finished operations all
along, and a rate limit high enough never to bite (its per-key windows still fill). An
asyncio client pinned to the load CPU keeps a fixed mix going at fixed rates:

* creators trigger operations on 1-3 of 16 targets (20/s);
* 16 agents long-poll their target's inbox and report ``in_progress`` then
  ``succeeded`` (one in ten ``failed``);
* status reads of recent operations (60/s; purged ones answer 410), 20 long-polls
  (``wait=10&version=N``), list queries with filters and a next page (5/s), event
  pages following ``after`` (5/s), forced cancels of recent operations (1/s, 409
  when they finished first), and one Server-Sent Events stream reopened every 15 s.

The server's RSS and open file descriptors are sampled every few seconds. After a
warm-up (60 s; 10 s in a quick run) the steady state begins; RSS is *flat* when, over
the second half of the steady state, the least-squares slope is at most SLOPE_LIMIT
(1 MiB) per minute **and** the growth is under GROWTH_LIMIT (5 %). Why these bounds: a
leak of 100 bytes per request at the 150-200 requests/s this mix offers is 0.9-1.1
MiB/min, so the slope bound catches any leak of about a hundred bytes a request; the
SQLite page cache, allocator arenas and limiter windows are bounded and have filled
during the warm-up and the first half, so a working server stays well inside both. The
figures also give the leak per request the measured slope implies. A quick run's
second half is 25 s, still the allocator settling: its slope bound is QUICK_SLOPE_LIMIT.
File descriptors must end within FD_SLACK of the steady-state start (the client keeps
a fixed set of keep-alive connections; the SSE stream reconnects) and drop back once
the load stops. Goal also: 0 5xx, 0 transport errors, no unexpected answers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import json
import os
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import (
    ADMIN_KEY,
    Options,
    Server,
    agent_key,
    cpu_affinity,
    expect,
    http,
    opstatus,
    register_targets,
    rss_bytes,
    run_async,
    sqlite_database,
)
from faults import wire
from faults.common import Outcome

MIB = 1 << 20
SLOPE_LIMIT = 1.0  #: MiB per minute over the second half of the steady state
#: the same in a quick run, whose 25 s second half still shows the allocator settling
QUICK_SLOPE_LIMIT = 4.0
GROWTH_LIMIT = 0.05  #: RSS growth over the second half, as a fraction
FD_SLACK = 8
TARGETS = tuple(f"soak-{i}" for i in range(16))
TIMEOUT = 30.0  #: seconds for one answer (long-polls wait 10)
EXAMPLES = 5
LIST_QUERIES = (
    "state=running&limit=50",
    f"target={TARGETS[3]}&limit=20",
    "kind=soak&limit=100",
    "state=succeeded,failed&limit=20",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """How long and how hard."""

    seconds: float
    warmup: float
    sample_every: float
    retention: int  #: OPSTATUS_RETENTION_SECONDS
    slope_limit: float  #: MiB per minute
    creates: float = 20.0  #: per second
    reads: float = 60.0
    lists: float = 5.0
    events: float = 5.0
    cancels: float = 1.0
    long_polls: int = 20  #: concurrent
    stream_seconds: float = 15.0

    @classmethod
    def of(cls, opts: Options) -> Plan:
        """Ten minutes (one in a quick run)."""
        return cls(
            seconds=opts.pick(600.0, 60.0),
            warmup=opts.pick(60.0, 10.0),
            sample_every=opts.pick(5.0, 2.0),
            retention=opts.pick(30, 10),
            slope_limit=opts.pick(SLOPE_LIMIT, QUICK_SLOPE_LIMIT),
        )


#: statuses that are part of the mix, by request kind; anything else is unexpected
EXPECTED: dict[str, frozenset[int]] = {
    "create": frozenset({202}),
    "inbox": frozenset({200}),
    "patch": frozenset({200, 409}),  # 409: cancelled meanwhile
    "read": frozenset({200, 410}),  # 410: purged past retention
    "long-poll": frozenset({200, 410}),
    "list": frozenset({200}),
    "events": frozenset({200}),
    "cancel": frozenset({200, 409, 410}),  # 409: it finished first
    "stream": frozenset({200}),
}


@dataclasses.dataclass
class Tally:
    """Answers by kind and status; what went wrong, with a few examples."""

    answers: collections.Counter[tuple[str, int]] = dataclasses.field(
        default_factory=collections.Counter
    )
    transport_errors: int = 0
    stream_events: int = 0
    examples: collections.defaultdict[str, list[str]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )

    def count(self, kind: str, status: int, body: bytes = b"") -> None:
        """One answer."""
        self.answers[(kind, status)] += 1
        if status not in EXPECTED[kind]:
            self.keep("unexpected" if status < 500 else "5xx", f"{kind} {status} {body[:160]!r}")

    def keep(self, what: str, text: str) -> None:
        """A few different examples of ``what``."""
        found = self.examples[what]
        if len(found) < EXAMPLES and text not in found:
            found.append(text)

    @property
    def requests(self) -> int:
        return sum(self.answers.values())

    def where(self, test: Callable[[str, int], bool]) -> int:
        """Answers whose (kind, status) pass ``test``."""
        return sum(n for (kind, status), n in self.answers.items() if test(kind, status))


@dataclasses.dataclass(frozen=True)
class Sample:
    """One look at the server."""

    t: float  #: seconds since the load started
    rss: int
    fds: int
    requests: int  #: answers so far


# -- the load ------------------------------------------------------------------------------


class Client:
    """JSON requests with one key over one keep-alive connection."""

    def __init__(self, base: str, key: str) -> None:
        split = urllib.parse.urlsplit(base)
        self.connection = wire.RawConnection(split.hostname or "127.0.0.1", split.port or 80)
        self.headers = [("X-API-Key", key)]

    async def request(self, method: str, path: str, body: Any = None) -> wire.Reply:
        """One request and its answer (ConnectionError or TimeoutError when none came)."""
        data = None if body is None else json.dumps(body).encode()
        headers = self.headers + ([("Content-Type", "application/json")] if data else [])
        request = wire.request_bytes(method, path, headers, data)
        return await self.connection.exchange(request, TIMEOUT)

    async def close(self) -> None:
        """Close the connection."""
        await self.connection.close()


class Soak:
    """The mixed load against one server, and its tally."""

    def __init__(self, base: str, plan: Plan, keys: dict[str, str]) -> None:
        self.base, self.plan, self.keys = base, plan, keys
        self.tally = Tally()
        self.recent: collections.deque[str] = collections.deque(maxlen=200)
        self.last_seq = 0
        self.until = 0.0

    def connection(self, who: str) -> Client:
        """A keep-alive connection sending ``who``'s key."""
        return Client(self.base, self.keys[who])

    async def call(self, conn: Client, kind: str, method: str, path: str, body: Any = None) -> Any:
        """One request, counted; its JSON answer (None when there is none to use)."""
        try:
            answer = await conn.request(method, path, body)
        except (OSError, TimeoutError) as exc:
            self.tally.transport_errors += 1
            self.tally.keep("transport", f"{kind} {path[:60]}: {type(exc).__name__}: {exc}")
            await conn.close()
            return None
        self.tally.count(kind, answer.status, answer.body)
        return wire.decoded_json(answer.body) if 200 <= answer.status < 300 else None

    async def paced(self, rate: float, step: Callable[[], Awaitable[None]]) -> None:
        """Call ``step`` ``rate`` times a second until the end (no catching up after a stall)."""
        due = time.monotonic()
        while (now := time.monotonic()) < self.until:
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 1.0:
                due = now  # the server fell behind: report less throughput, do not burst
            await step()
            due += 1.0 / rate

    def _recent(self) -> str | None:
        return random.choice(self.recent) if self.recent else None

    async def creator(self, n: int, workers: int) -> None:
        """Trigger operations on 1-3 targets."""
        conn, counter = self.connection("admin"), itertools.count()

        async def step() -> None:
            targets = random.sample(TARGETS, random.randint(1, 3))
            body = {"kind": "soak", "targets": targets, "parameters": {"n": next(counter)},
                    "timeouts": {"lease": 60}}  # fmt: skip
            made = await self.call(conn, "create", "POST", "/v1/operations", body)
            if made is not None:
                self.recent.append(made["id"])

        await self.paced(self.plan.creates / workers, step)
        await conn.close()

    async def agent(self, target: str) -> None:
        """Long-poll the inbox; report each execution in progress, then its end."""
        conn = self.connection("agent")
        while time.monotonic() < self.until:
            inbox = await self.call(conn, "inbox", "GET", f"/v1/targets/{target}/inbox?wait=5")
            for item in (inbox or {}).get("items", []):
                path = f"/v1/executions/{item['id']}"
                await self.call(
                    conn, "patch", "PATCH", path, {"state": "in_progress", "progress": 50}
                )
                end = {"state": "succeeded", "result": {"ok": True}}
                if random.random() < 0.1:
                    end = {"state": "failed", "error": "soak failure"}
                await self.call(conn, "patch", "PATCH", path, end)
        await conn.close()

    async def reader(self, workers: int) -> None:
        """Status reads of recent operations."""
        conn = self.connection("viewer")

        async def step() -> None:
            if (op := self._recent()) is not None:
                await self.call(conn, "read", "GET", f"/v1/operations/{op}")

        await self.paced(self.plan.reads / workers, step)
        await conn.close()

    async def long_poller(self) -> None:
        """Wait for a recent operation to change, over and over."""
        conn = self.connection("viewer")
        while time.monotonic() < self.until:
            op = self._recent()
            if op is None:
                await asyncio.sleep(0.5)
                continue
            seen = await self.call(conn, "read", "GET", f"/v1/operations/{op}")
            if seen is not None:
                path = f"/v1/operations/{op}?wait=10&version={seen['version']}"
                await self.call(conn, "long-poll", "GET", path)
        await conn.close()

    async def lister(self) -> None:
        """Filtered lists, and the next page when there is one."""
        conn = self.connection("viewer")
        queries = itertools.cycle(LIST_QUERIES)

        async def step() -> None:
            page = await self.call(conn, "list", "GET", f"/v1/operations?{next(queries)}")
            if page is not None and page.get("next_cursor"):
                cursor = urllib.parse.quote(page["next_cursor"])
                await self.call(conn, "list", "GET", f"/v1/operations?limit=20&cursor={cursor}")

        await self.paced(self.plan.lists, step)
        await conn.close()

    async def events(self) -> None:
        """Event pages, following ``after``."""
        conn = self.connection("viewer")

        async def step() -> None:
            page = await self.call(conn, "events", "GET", f"/v1/events?after={self.last_seq}")
            if page is not None:
                self.last_seq = max(self.last_seq, page["last_seq"])

        await self.paced(self.plan.events, step)
        await conn.close()

    async def canceller(self) -> None:
        """Forced cancels of recent operations."""
        conn = self.connection("admin")

        async def step() -> None:
            if (op := self._recent()) is not None:
                path = f"/v1/operations/{op}/cancel"
                await self.call(conn, "cancel", "POST", path, {"force": True})

        await self.paced(self.plan.cancels, step)
        await conn.close()

    async def streamer(self) -> None:
        """One SSE stream of the tenant's events, reopened every ``stream_seconds``."""
        split = urllib.parse.urlsplit(self.base)
        headers = [("X-API-Key", self.keys["viewer"]), ("Accept", "text/event-stream")]
        while time.monotonic() < self.until:
            request = wire.request_bytes("GET", f"/v1/events?after={self.last_seq}", headers)
            try:
                reader, writer = await asyncio.open_connection(split.hostname, split.port)
            except OSError as exc:
                self.tally.transport_errors += 1
                self.tally.keep("transport", f"stream: {type(exc).__name__}: {exc}")
                await asyncio.sleep(1)
                continue
            try:
                writer.write(request)
                await self._stream(reader)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def _stream(self, reader: asyncio.StreamReader) -> None:
        status_line = await reader.readline()
        parts = status_line.split()
        self.tally.count("stream", int(parts[1]) if len(parts) > 1 else 0, status_line)
        ends = min(self.until, time.monotonic() + self.plan.stream_seconds)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, ends - time.monotonic())):
                while line := await reader.readline():
                    self.tally.stream_events += line.startswith(b"id: ")

    async def run(self, sample: Callable[[], Sample], samples: list[Sample]) -> None:
        """Every role until the plan's end; ``sample`` every ``sample_every`` seconds."""
        self.until = time.monotonic() + self.plan.seconds
        roles = [self.creator(n, 4) for n in range(4)] + [self.reader(4) for _ in range(4)]
        roles += [self.agent(t) for t in TARGETS]
        roles += [self.long_poller() for _ in range(self.plan.long_polls)]
        roles += [self.lister(), self.events(), self.canceller(), self.streamer()]
        tasks = [asyncio.create_task(role) for role in roles]
        while time.monotonic() < self.until:
            samples.append(sample())
            await asyncio.sleep(min(self.plan.sample_every, self.until - time.monotonic() + 0.01))
        samples.append(sample())  # the last look under load: the roles are still finishing
        await asyncio.gather(*tasks)


# -- figures -------------------------------------------------------------------------------


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` points (0 for fewer than two)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def fd_count(pid: int) -> int:
    """Open file descriptors of ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def database_bytes(url: str) -> int:
    """Size of a SQLite database with its WAL."""
    path = Path(url.removeprefix("sqlite:///"))
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The memory and descriptor figures of the steady state."""

    figures: dict[str, Any]
    flat: bool
    notes: list[str]


def memory(samples: list[Sample], plan: Plan, idle_fds: int) -> Verdict:
    """RSS and fds over the steady state (after the warm-up), second half against first."""
    steady = [s for s in samples if s.t >= plan.warmup] or samples
    half = steady[len(steady) // 2]
    second = [s for s in steady if s.t >= half.t]
    start, end = steady[0], steady[-1]
    per_minute = slope([(s.t / 60, s.rss / MIB) for s in second])
    growth = (end.rss - half.rss) / half.rss
    minutes = (end.t - half.t) / 60
    rate = (end.requests - half.requests) / minutes if minutes else 0.0
    leak = per_minute * MIB / rate if rate else 0.0
    figures = {
        "RSS MiB at steady start": round(start.rss / MIB, 1),
        "RSS MiB at half": round(half.rss / MIB, 1),
        "RSS MiB at end": round(end.rss / MIB, 1),
        "RSS growth over the second half %": round(100 * growth, 2),
        "RSS slope over the second half MiB/min": round(per_minute, 3),
        "implied leak bytes/request": round(max(0.0, leak), 1),
        "fds before the load": samples[0].fds,
        "fds at steady start": start.fds,
        "fds at end": end.fds,
        "fds once idle": idle_fds,
    }
    fds_ok = end.fds <= start.fds + FD_SLACK and idle_fds <= samples[0].fds + 2
    flat = per_minute <= plan.slope_limit and growth < GROWTH_LIMIT
    notes = [
        f"flat means slope <= {plan.slope_limit} MiB/min and growth < {GROWTH_LIMIT:.0%} over the "
        f"second half ({half.t:.0f}-{end.t:.0f} s); fds within +{FD_SLACK} of the steady start "
        "and back to where they started once idle",
        "RSS MiB over time: " + " ".join(f"{s.rss / MIB:.1f}" for s in _thin(samples)),
        "fds over time: " + " ".join(str(s.fds) for s in _thin(samples)),
    ]
    if plan.seconds < 300:
        notes.append(
            f"a quick run: the warm-up is short, so the slope may be up to {QUICK_SLOPE_LIMIT} "
            "MiB/min and the verdict on memory is weak"
        )
    return Verdict(figures, flat and fds_ok, notes)


def _thin(samples: list[Sample], most: int = 40) -> list[Sample]:
    """At most ``most`` samples, evenly spread, the last one kept."""
    step = max(1, -(-len(samples) // most))
    return samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])


def throughput(samples: list[Sample], plan: Plan) -> dict[str, Any]:
    """Requests per second over each half of the steady state."""
    steady = [s for s in samples if s.t >= plan.warmup] or samples
    half = steady[len(steady) // 2]

    def rate(a: Sample, b: Sample) -> float:
        return round((b.requests - a.requests) / (b.t - a.t)) if b.t > a.t else 0

    return {
        "requests/s first half": rate(steady[0], half),
        "requests/s second half": rate(half, steady[-1]),
    }


# -- the scenario ------------------------------------------------------------------------


def keys(base: str) -> dict[str, str]:
    """Targets registered; admin, agent and viewer secrets."""
    register_targets(base, TARGETS)
    viewer = expect(*http("POST", f"{base}/v1/keys", body={"name": "soak", "role": "viewer"}), 201)
    return {"admin": ADMIN_KEY, "agent": agent_key(base, TARGETS, "soak agent"),
            "viewer": viewer["secret"]}  # fmt: skip


def soak(server: Server, plan: Plan, opts: Options) -> tuple[Tally, list[Sample]]:
    """Run the load from the load CPU, sampling the server."""
    load = Soak(server.url, plan, keys(server.url))
    started = time.monotonic()
    samples: list[Sample] = []

    def sample() -> Sample:
        return Sample(time.monotonic() - started, rss_bytes(server.pid), fd_count(server.pid),
                      load.tally.requests)  # fmt: skip

    with cpu_affinity(opts.load_cpu):
        run_async(load.run(sample, samples))
    return load.tally, samples


def run(opts: Options) -> Outcome:
    """One soak on SQLite."""
    plan = Plan.of(opts)
    env = {
        "OPSTATUS_RETENTION_SECONDS": str(plan.retention),
        "OPSTATUS_RATE_LIMIT": "100000/second",
    }
    with (
        sqlite_database(opts, "soak.db") as db,
        opstatus(db, cpu=opts.server_cpu, env=env) as server,
    ):
        tally, samples = soak(server, plan, opts)
        time.sleep(3)  # the client's connections are closed: let the server notice
        idle_fds = fd_count(server.pid)
        database = database_bytes(db)
        logged = wire.logged_errors(server)
    verdict = memory(samples, plan, idle_fds)
    errors_5xx = tally.where(lambda kind, status: status >= 500)
    unexpected = tally.where(lambda kind, status: status < 500 and status not in EXPECTED[kind])
    figures = {
        "seconds": plan.seconds,
        "requests": tally.requests,
        **throughput(samples, plan),
        "operations created": tally.answers[("create", 202)],
        f"creates/s (planned {plan.creates:.0f})": round(
            tally.answers[("create", 202)] / plan.seconds, 1
        ),
        "purged reads (410)": tally.where(lambda kind, status: status == 410),
        "5xx": errors_5xx,
        "transport errors": tally.transport_errors,
        "unexpected answers": unexpected,
        **verdict.figures,
        "database MiB at end": round(database / MIB, 1),
    }
    by_kind: collections.Counter[str] = collections.Counter()
    for (kind, status), n in tally.answers.items():
        by_kind[f"{kind} {status}"] += n
    details = [
        f"retention {plan.retention} s, warm-up {plan.warmup:.0f} s, samples every "
        f"{plan.sample_every:.0f} s; {tally.stream_events} events streamed over SSE",
        f"answers: {dict(sorted(by_kind.items()))}",
        "every role is paced: when the server falls behind its rate drops (no bursts to catch "
        "up), so the achieved rates above are what the server kept up with",
        *verdict.notes,
        *[f"{what}: {' | '.join(found)}" for what, found in tally.examples.items()],
        *logged,
    ]
    passed = verdict.flat and errors_5xx == tally.transport_errors == unexpected == 0
    return Outcome(
        scenario="F7",
        title=f"{plan.seconds / 60:.0f}-minute soak (SQLite)",
        goal=f"RSS flat (second half: slope <= {plan.slope_limit} MiB/min and growth < "
        f"{GROWTH_LIMIT:.0%}), fds flat, 0 5xx, 0 transport errors",
        passed=passed,
        figures=figures,
        details=details,
        command="python -m faults --only F7",
    )
