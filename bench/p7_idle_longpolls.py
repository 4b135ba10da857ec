"""P7: 10,000 idle long-polls on one ``opstatus serve`` process.

Per round, on a fresh database (SQLite, and PostgreSQL when it answers):

1. ``opstatus serve`` starts pinned to the server CPU. It inherits RLIMIT_NOFILE from
   this process, raised for the round (soft to hard, and hard to what is needed if
   it is lower and we are root); the server's own limit is read back from
   /proc/PID/limits and must leave room for every connection. OPERATIONS
   operations of one target each are created and claimed by an agent (dispatched,
   with a lease longer than the round), and the server's RSS is sampled idle: the
   baseline.
2. A load process pinned to the load CPU (``python -m bench.p7_idle_longpolls
   client``: asyncio on uvloop, raw HTTP/1.1, one connection per long-poll) opens
   COUNT connections, at most CONNECTING connecting at a time, each sending
   ``GET /v1/operations/{id}?wait=60&version=N`` for one of the operations at its
   current version. The server's ``opstatus_notifier_waiters`` gauge (/metrics)
   tells when it holds all of them; that instant ends the opening time. The
   machine's listen-queue overflow counters are recorded with it: when the server
   accepts slower than the connections come, the kernel drops SYNs and clients
   resend them after 1 s, 3 s, ...
3. They are held HOLD seconds while the server's RSS and open descriptors are
   sampled, and ``/healthz`` plus a plain status read are timed (the server must
   stay responsive).
4. The agent PATCHes every operation's execution to ``in_progress`` at once (one
   thread each, over connections opened beforehand), WAKE_MARGIN seconds before
   the first long-polls would time out at the latest: every long-poll must now
   answer 200 with a newer version. The wake-up time runs from the PATCHes to the
   last answer (monotonic clocks of the same machine).

Errors: any answer other than 200 with a newer version, any answer before the
wake-up (a long-poll must hold until its operation changes), connection failures,
resets and client timeouts. Figures per backend, each over ``opts.repeats`` rounds:
errors (goal: 0 in every round, every long-poll held at once, every probe
answered), peak RSS while the long-polls are open and woken (goal <= 1 GiB in
every round; baseline: the same server's RSS idle before the connections), and,
without a goal, the opening and the wake-up times.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

from bench.common import (
    ADMIN_KEY,
    ROOT,
    CpuTimes,
    Figure,
    Options,
    Server,
    agent_key,
    cpu_times,
    expect,
    http,
    median,
    opstatus,
    percentile,
    pinned,
    postgres_database,
    register_targets,
    rss_bytes,
    run_async,
    sqlite_database,
)

BENCH = "P7"
COUNT = 10_000
QUICK_COUNT = 1_000
#: operations the long-polls are spread over (one target each)
OPERATIONS = 10
WAIT = 60  #: seconds each long-poll asks for (the server's maximum)
HOLD = 5.0
QUICK_HOLD = 1.0
#: connections being opened at once by the load process (the listen backlog is 2048)
CONNECTING = 200
#: longest the server may take to hold every long-poll (well inside WAIT)
OPEN_DEADLINE = 45.0
SAMPLE_EVERY = 0.1
SCRAPE_TIMEOUT = 5.0
#: lease of the claimed executions: longer than a round, so that no expiry wakes them
LEASE = 3600
#: the wake-up goes out this long before the first long-polls would time out
WAKE_MARGIN = 8.0
RSS_GOAL = 1 << 30
MIB = 1 << 20
#: descriptors the server needs besides the connections (database, listener, logs)
FD_MARGIN = 200
#: SYNs dropped because the accept queue was full, and the retransmissions they cost
TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPSynRetrans")
Proc = subprocess.Popen[bytes]
_WAITERS = re.compile(r"^opstatus_notifier_waiters\s+(\S+)", re.MULTILINE)
_NOFILE = re.compile(r"^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)", re.MULTILINE)


# -- the load process -----------------------------------------------------------------------


@dataclasses.dataclass
class Tally:
    """What the load process saw."""

    statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    sent: list[float] = dataclasses.field(default_factory=list)  #: requests written, monotonic
    arrivals: list[float] = dataclasses.field(default_factory=list)  #: good answers, monotonic

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def _long_poll(
    host: str,
    port: int,
    request: bytes,
    known: int,
    gate: asyncio.Semaphore,
    tally: Tally,
) -> None:
    """One connection, one long-poll; tallies its outcome."""
    try:
        async with gate:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            await writer.drain()
            tally.sent.append(time.monotonic())
        try:
            answer = await asyncio.wait_for(reader.read(), WAIT + 30)
        finally:
            writer.close()
    except TimeoutError:
        tally.error("client timeout")
        return
    except OSError as exc:
        tally.error(f"{type(exc).__name__}: {exc.strerror or exc}")
        return
    arrived = time.monotonic()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/1.1 ") else "no answer"
    tally.statuses[status] = tally.statuses.get(status, 0) + 1
    if status != "200":
        tally.error(f"status {status}")
        return
    try:
        version = json.loads(body)["version"]
    except (ValueError, KeyError, TypeError):
        tally.error("unreadable body")
        return
    if version <= known:
        tally.error("answered without a change")
        return
    tally.arrivals.append(arrived)


async def _client(plan: dict[str, Any]) -> dict[str, Any]:
    """Open ``plan['count']`` long-polls over ``plan['operations']`` (id -> version)."""
    host, port = plan["host"], plan["port"]
    ops = list(plan["operations"].items())
    gate = asyncio.Semaphore(CONNECTING)
    tally = Tally()
    polls = []
    started = time.monotonic()
    for n in range(plan["count"]):
        op_id, known = ops[n % len(ops)]
        request = (
            f"GET /v1/operations/{op_id}?wait={WAIT}&version={known} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nX-API-Key: {plan['key']}\r\nConnection: close\r\n\r\n"
        ).encode()
        polls.append(_long_poll(host, port, request, known, gate, tally))
    await asyncio.gather(*polls)
    return {
        "started": started,
        "sent_seconds": max(tally.sent, default=started) - started,
        "sent": len(tally.sent),
        "statuses": tally.statuses,
        "errors": tally.errors,
        "arrivals": tally.arrivals,
    }


def _raise_nofile(want: int) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit, and the hard limit to
    ``want`` when it is lower and that is allowed (root); returns the old limits."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = old[1]
    if hard != resource.RLIM_INFINITY and hard < want:
        with contextlib.suppress(ValueError, OSError):  # not allowed: the caller checks
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return old
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return old


def client_main(argv: list[str] | None = None) -> None:
    """``python -m bench.p7_idle_longpolls client --plan JSON --out PATH``: open the
    long-polls of the plan, write the tally to PATH as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.p7_idle_longpolls client")
    parser.add_argument("--plan", required=True, help="host, port, key, count, operations")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    plan = json.loads(args.plan)
    _raise_nofile(plan["count"] + FD_MARGIN)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < plan["count"] + FD_MARGIN:
        raise SystemExit(f"RLIMIT_NOFILE {soft} is too low for {plan['count']} connections")
    args.out.write_text(json.dumps(run_async(_client(plan))))


# -- the server side ------------------------------------------------------------------------


@contextlib.contextmanager
def _nofile_raised(want: int) -> Iterator[int]:
    """Raise RLIMIT_NOFILE (``_raise_nofile``) while servers are started (they inherit
    it); restore it after. Yields the raised soft limit."""
    old = _raise_nofile(want)
    try:
        yield resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def _server_nofile(pid: int) -> int:
    """The server's own soft RLIMIT_NOFILE, from /proc (-1: unlimited)."""
    found = _NOFILE.search(Path(f"/proc/{pid}/limits").read_text())
    if found is None:
        raise SystemExit(f"no 'Max open files' in /proc/{pid}/limits")
    return -1 if found.group(1) == "unlimited" else int(found.group(1))


def _tcp_counters() -> dict[str, int]:
    """The machine's TCP listen-queue and retransmission counters (/proc/net/netstat)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], map(int, values.split()[1:]), strict=True))
            return {name: table.get(name, 0) for name in TCP_COUNTERS}
    return {}


def _fds(pid: int) -> int:
    """Descriptors the process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def _waiters(server: Server) -> int:
    """The server's long-polls waiting now, from /metrics (-1: no answer in time)."""
    try:
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=SCRAPE_TIMEOUT) as answer:
            found = _WAITERS.search(answer.read().decode())
    except OSError:
        return -1
    return int(float(found.group(1))) if found else -1


def _timed_ms(method: str, url: str, key: str | None) -> tuple[int, float]:
    """(status, milliseconds) of one request."""
    started = time.monotonic()
    status, _ = http(method, url, key, timeout=10)
    return status, (time.monotonic() - started) * 1000


@dataclasses.dataclass
class Setup:
    """Operations aimed at one target each, claimed by their agent."""

    versions: dict[str, int]  #: operation id -> version the long-polls know
    executions: dict[str, str]  #: operation id -> its execution id
    agent: str


def _setup(server: Server, operations: int) -> Setup:
    """Create ``operations`` operations of a target each and dispatch them to their agent."""
    targets = [f"p7-t{n}" for n in range(operations)]
    register_targets(server.url, targets)
    agent = agent_key(server.url, targets, name="bench-p7-agent")
    executions = {}
    for target in targets:
        body = {"kind": "bench.p7", "targets": [target], "timeouts": {"lease": LEASE}}
        made = expect(*http("POST", f"{server.url}/v1/operations", body=body), 202)
        inbox = expect(*http("GET", f"{server.url}/v1/targets/{target}/inbox", agent), 200)
        [item] = inbox["items"]
        executions[made["id"]] = item["id"]
    versions = {
        op_id: expect(*http("GET", f"{server.url}/v1/operations/{op_id}"), 200)["version"]
        for op_id in executions
    }
    return Setup(versions=versions, executions=executions, agent=agent)


def _idle_rss(pid: int) -> int:
    """The server's RSS after a second of rest (the largest of a few samples)."""
    time.sleep(1.0)
    samples = []
    for _ in range(5):
        samples.append(rss_bytes(pid))
        time.sleep(SAMPLE_EVERY)
    return max(samples)


@dataclasses.dataclass(kw_only=True)
class Round:
    """One round's measurements."""

    backend: str
    count: int
    idle_rss: int
    peak_rss: int = 0
    peak_fds: int = 0
    server_nofile: int = 0
    held: int = 0  #: most waiters the server reported
    open_seconds: float | None = None  #: client start -> the server holds every long-poll
    #: the server's CPU time while opening / waking (running, waiting for a CPU), seconds
    open_cpu: CpuTimes | None = None
    wake_cpu: CpuTimes | None = None
    sent_seconds: float = 0.0  #: client start -> every request written
    wake_seconds: float | None = None  #: first PATCH -> last answer
    wake_p50_ms: float | None = None
    wake_p99_ms: float | None = None
    good: int = 0  #: answers with a newer version
    early: int = 0  #: good answers that came before the wake-up
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    probes_ms: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    probe_failures: int = 0
    #: increase of TCP_COUNTERS over the round (machine-wide)
    tcp: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def error_count(self) -> int:
        """Failed answers, early answers and long-polls never answered."""
        failed = sum(self.errors.values())
        return failed + self.early + max(0, self.count - failed - self.good)

    def sample(self, pid: int) -> None:
        """Note the server's RSS and descriptors."""
        self.peak_rss = max(self.peak_rss, rss_bytes(pid))
        self.peak_fds = max(self.peak_fds, _fds(pid))

    def probe(self, server: Server) -> None:
        """Time /healthz and a plain status read; failures count."""
        for name, url, key in (
            ("healthz", f"{server.url}/healthz", None),
            ("status read", f"{server.url}/v1/operations/latest", ADMIN_KEY),
        ):
            try:
                status, ms = _timed_ms("GET", url, key)
            except OSError:
                status, ms = 0, 0.0
            if status != 200:
                self.probe_failures += 1
            else:
                self.probes_ms.setdefault(name, []).append(round(ms, 2))


def _start_client(opts: Options, server: Server, setup: Setup, count: int, out: Path) -> Proc:
    """The load process, pinned to the load CPU; its report goes to ``out``, stderr
    to ``out`` + ``.err`` (files: a pipe nobody reads while sampling would fill up)."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    plan = {
        "host": host,
        "port": int(port),
        "key": ADMIN_KEY,
        "count": count,
        "operations": setup.versions,
    }
    argv = [sys.executable, "-m", "bench.p7_idle_longpolls", "client", "--out", str(out)]
    argv += ["--plan", json.dumps(plan)]
    with out.with_suffix(".err").open("wb") as err:
        return subprocess.Popen(pinned(opts.load_cpu, argv), cwd=ROOT, stderr=err)


def _hold(
    server: Server, round_: Round, proc: Proc, started: tuple[float, CpuTimes], hold: float
) -> None:
    """Wait until the server holds every long-poll, then ``hold`` seconds, sampling and
    probing; return WAIT - WAKE_MARGIN seconds after the client started at the latest
    (``started``: monotonic time and the server's CPU times then), so that the wake-up
    reaches every long-poll before it would time out."""
    began, cpu = started
    latest = began + WAIT - WAKE_MARGIN
    deadline = min(began + OPEN_DEADLINE, latest)
    while time.monotonic() < deadline and proc.poll() is None:
        round_.sample(server.pid)
        round_.held = max(round_.held, _waiters(server))
        if round_.held >= round_.count:
            round_.open_seconds = time.monotonic() - began
            round_.open_cpu = cpu_times(server.pid) - cpu
            break
        time.sleep(SAMPLE_EVERY)
    until = min(time.monotonic() + hold, latest)
    while time.monotonic() < until and proc.poll() is None:
        round_.sample(server.pid)
        round_.probe(server)
        time.sleep(SAMPLE_EVERY)
    round_.held = max(round_.held, _waiters(server))


def _patcher(server: Server, agent: str, execution: str) -> Callable[[], int]:
    """The call that PATCHes ``execution`` to in_progress (returning the status) over a
    connection opened now: opened beforehand, the PATCHes wait for no accept."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = HTTPConnection(host, int(port), timeout=WAIT)
    conn.connect()
    body = json.dumps({"state": "in_progress", "progress": 10})
    headers = {"X-API-Key": agent, "Content-Type": "application/json"}

    def patch() -> int:
        try:
            conn.request("PATCH", f"/v1/executions/{execution}", body, headers)
            answer = conn.getresponse()
            answer.read()
            return answer.status
        finally:
            conn.close()

    return patch


def _wake(server: Server, setup: Setup, round_: Round, proc: Proc) -> float:
    """PATCH every execution to in_progress at once (a thread each); sample until the
    load process ends. Returns when the PATCHes were sent (monotonic)."""
    patches = [_patcher(server, setup.agent, e) for e in setup.executions.values()]
    with concurrent.futures.ThreadPoolExecutor(len(patches)) as pool:
        cpu = cpu_times(server.pid)
        woken = time.monotonic()
        sent = [pool.submit(patch) for patch in patches]
        while proc.poll() is None:
            round_.sample(server.pid)
            time.sleep(SAMPLE_EVERY)
        round_.wake_cpu = cpu_times(server.pid) - cpu
        statuses = [f.result() for f in sent]
    if any(status != 200 for status in statuses):
        raise SystemExit(f"the PATCHes that wake the long-polls answered {statuses}")
    return woken


def _one_round(opts: Options, backend: str, database: str, count: int) -> Round:
    """Start a server on ``database``, open, hold and wake ``count`` long-polls."""
    with (
        _nofile_raised(count + FD_MARGIN),
        opstatus(database, cpu=opts.server_cpu, name=f"p7-{backend}") as server,
        tempfile.TemporaryDirectory(prefix="bench-p7-") as folder,
    ):
        setup = _setup(server, OPERATIONS)
        round_ = Round(backend=backend, count=count, idle_rss=_idle_rss(server.pid))
        round_.server_nofile = _server_nofile(server.pid)
        if 0 <= round_.server_nofile < count + FD_MARGIN:
            raise SystemExit(
                f"the server's RLIMIT_NOFILE is {round_.server_nofile}, too low for {count} "
                "connections (raise the hard limit: ulimit -Hn)"
            )
        out = Path(folder) / "tally.json"
        tcp = _tcp_counters()
        started = time.monotonic(), cpu_times(server.pid)
        proc = _start_client(opts, server, setup, count, out)
        _hold(server, round_, proc, started, opts.pick(HOLD, QUICK_HOLD))
        woken = _wake(server, setup, round_, proc)
        round_.tcp = {k: v - tcp.get(k, 0) for k, v in _tcp_counters().items()}
        if proc.wait() != 0:
            why = out.with_suffix(".err").read_text()
            raise SystemExit(f"the load process failed ({proc.returncode}):\n{why}")
        _tally(round_, json.loads(out.read_text()), woken)
        return round_


def _tally(round_: Round, seen: dict[str, Any], woken: float) -> None:
    """Fold the load process's report into ``round_``."""
    arrivals: list[float] = seen["arrivals"]
    on_time = [a for a in arrivals if a >= woken]
    round_.early = len(arrivals) - len(on_time)
    round_.good = len(arrivals)
    round_.errors = seen["errors"]
    round_.statuses = seen["statuses"]
    round_.sent_seconds = seen["sent_seconds"]
    if on_time:
        lags = [(a - woken) * 1000 for a in on_time]
        round_.wake_seconds = max(lags) / 1000
        round_.wake_p50_ms = percentile(lags, 50)
        round_.wake_p99_ms = percentile(lags, 99)


# -- figures ----------------------------------------------------------------------------------


def _figures(backend: str, rounds: list[Round]) -> list[Figure]:
    """Errors, peak RSS (baseline: idle RSS), opening and wake-up times of one backend."""
    count = rounds[0].count
    detail = [dataclasses.asdict(r) | {"error_count": r.error_count} for r in rounds]
    errors = Figure(
        benchmark=BENCH,
        name=f"errors among {count:,} idle long-polls ({backend})",
        unit="errors",
        runs=[float(r.error_count) for r in rounds],
        goal="0 in every run, server responsive",
        higher_is_better=False,
        extra={"rounds": detail},
    )
    errors.met = all(
        r.error_count == 0 and r.probe_failures == 0 and r.held >= r.count for r in rounds
    )
    rss = Figure(
        benchmark=BENCH,
        name=f"peak RSS with {count:,} long-polls open ({backend})",
        unit="MiB",
        runs=[r.peak_rss / MIB for r in rounds],
        goal=f"<= {RSS_GOAL // MIB:,} MiB (1 GiB) in every run",
        baseline_name="same server idle, before the connections",
        baseline_runs=[r.idle_rss / MIB for r in rounds],
        higher_is_better=False,
        extra={"peak_fds": [r.peak_fds for r in rounds]},
    )
    rss.met = all(r.peak_rss <= RSS_GOAL for r in rounds)
    figures = [errors, rss]
    opened = [r.open_seconds for r in rounds if r.open_seconds is not None]
    if opened:
        opening = Figure(
            benchmark=BENCH,
            name=f"time to open {count:,} long-polls ({backend})",
            unit="s",
            runs=opened,
            higher_is_better=False,
            extra={
                "requests_written_s": [r.sent_seconds for r in rounds],
                "tcp": [r.tcp for r in rounds],
                "server_cpu_ms_per_long_poll": _per_poll([r.open_cpu for r in rounds], count),
            },
        )
        overflows = [r.tcp.get("ListenOverflows", 0) for r in rounds]
        if any(overflows):
            opening.notes.append(
                f"the listen queue overflowed {overflows} times (machine-wide counter): the "
                "server accepted slower than the connections came, the kernel dropped SYNs and "
                "clients sent them again after 1 s, 3 s, ..., which stretches the opening"
            )
        figures.append(opening)
    woken = [r.wake_seconds for r in rounds if r.wake_seconds is not None]
    if woken:
        cpu = _per_poll([r.wake_cpu for r in rounds], count)
        wake = Figure(
            benchmark=BENCH,
            name=f"wake-up of all {count:,} ({backend}, first PATCH to last answer)",
            unit="s",
            runs=woken,
            higher_is_better=False,
            extra={
                "p50_ms": [r.wake_p50_ms for r in rounds],
                "p99_ms": [r.wake_p99_ms for r in rounds],
                "server_cpu_ms_per_long_poll": cpu,
            },
        )
        if cpu["running"]:
            wake.notes.append(
                f"the server ran {median(cpu['running']):.2f} ms of CPU per woken long-poll "
                f"(its share of one read of the operation, rendering, sending) and waited "
                f"{median(cpu['waiting']):.2f} ms per long-poll for a CPU"
            )
        figures.append(wake)
    _annotate(errors, rounds)
    return figures


def _per_poll(spent: list[CpuTimes | None], count: int) -> dict[str, list[float]]:
    """CPU time (running, waiting) per long-poll in ms, of the rounds that measured it."""
    known = [c for c in spent if c is not None]
    return {
        "running": [round(c.running * 1000 / count, 3) for c in known],
        "waiting": [round(c.waiting * 1000 / count, 3) for c in known],
    }


def _annotate(errors: Figure, rounds: list[Round]) -> None:
    """Say what went wrong in the rounds that had errors, and how responsive it stayed."""
    for n, r in enumerate(rounds, 1):
        if r.error_count:
            errors.notes.append(
                f"run {n}: {r.error_count} errors: {r.errors or {}}; {r.early} answered before "
                f"the change; server held at most {r.held:,}; statuses {r.statuses}"
            )
        if r.held < r.count:
            errors.notes.append(
                f"run {n}: the server held at most {r.held:,} of {r.count:,} at once (the "
                f"opening took longer than {min(OPEN_DEADLINE, WAIT - WAKE_MARGIN):g} s)"
            )
        if r.probe_failures:
            errors.notes.append(f"run {n}: {r.probe_failures} probes failed during the hold")
    probes = [ms for r in rounds for ms in r.probes_ms.get("healthz", [])]
    if probes:
        errors.notes.append(
            f"/healthz during the hold: p50 {percentile(probes, 50):.1f} ms, "
            f"max {max(probes):.1f} ms over {len(probes)} probes"
        )


def run(opts: Options) -> list[Figure]:
    """Rounds of each backend, interleaved; figures per backend."""
    count = opts.pick(COUNT, QUICK_COUNT)
    backends = ["sqlite"] + (["postgres"] if opts.postgres else [])
    rounds: dict[str, list[Round]] = {b: [] for b in backends}
    for _ in range(opts.repeats):
        for backend in backends:
            with _database(opts, backend) as url:
                got = _one_round(opts, backend, url, count)
            print(
                f"   {backend}: {got.error_count} errors, held {got.held:,}, peak "
                f"{got.peak_rss / MIB:.0f} MiB (idle {got.idle_rss / MIB:.0f}), opened in "
                f"{_seconds(got.open_seconds)}, woken in {_seconds(got.wake_seconds)}",
                flush=True,
            )
            rounds[backend].append(got)
    return [f for b in backends for f in _figures(b, rounds[b])]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


@contextlib.contextmanager
def _database(opts: Options, backend: str) -> Iterator[str]:
    """A fresh database URL of ``backend``."""
    if backend == "sqlite":
        with sqlite_database(opts) as url:
            yield url
    else:
        assert opts.postgres is not None
        with postgres_database(opts.postgres, label="p7") as url:
            yield url


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        client_main(sys.argv[2:])
    else:
        raise SystemExit("usage: python -m bench.p7_idle_longpolls client --plan JSON --out PATH")
