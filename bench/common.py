"""What every benchmark and fault scenario shares: servers, databases, wrk, figures.

A benchmark module (``bench/p<N>_*.py``) exposes ``run(opts: Options) -> list[Figure]``.
The runner (``python -m bench``) calls them in order and writes
``bench/results.json`` and ``BENCHMARKS.md`` from the figures.

Rules every benchmark keeps:

* each figure is the median of ``opts.repeats`` (≥ 3) runs, and its baseline is
  measured in the same run, interleaved with it where that is possible;
* the server under test is pinned to ``opts.server_cpu`` and the load generator
  to ``opts.load_cpu`` (``taskset``); PostgreSQL itself is shared and unpinned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ADMIN_KEY = "bench-admin-key-of-at-least-32-chars"  #: bootstrap secrets need 32+
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
START_DEADLINE = 30.0
STOP_DEADLINE = 15.0
BIN = Path(sys.executable).parent
#: the servers' rate limit: on, as in production (every request pays for its token),
#: and high enough to admit every request a benchmark sends
RATE_LIMIT = "1000000000/second"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """How the runner was asked to measure."""

    repeats: int = 3
    server_cpu: int = 0
    load_cpu: int = 1
    postgres: str | None = DEFAULT_POSTGRES  # None: PostgreSQL unavailable or not wanted
    quick: bool = False  # smaller sizes and shorter runs, for a smoke test of the scripts
    workdir: Path = ROOT  # where SQLite files go (a real disk: fsync must cost what it costs)
    #: a checkout of an earlier commit: benchmarks that record before/after run it too
    before: Path | None = None

    def pick(self, full: Any, quick: Any) -> Any:
        """``quick`` in a smoke run, else ``full``."""
        return quick if self.quick else full


@dataclasses.dataclass(kw_only=True)
class Figure:
    """One measured quantity next to its baseline from the same run.

    ``runs`` and ``baseline_runs`` hold every repeat; the table shows medians.
    ``goal`` says in words what the issue asks; ``met`` is the benchmark's verdict
    (None when the figure has no goal of its own, e.g. a baseline row).
    """

    benchmark: str
    name: str
    unit: str
    runs: list[float]
    goal: str = ""
    met: bool | None = None
    baseline_name: str | None = None
    baseline_runs: list[float] | None = None
    higher_is_better: bool = True
    notes: list[str] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def baseline_median(self) -> float | None:
        return statistics.median(self.baseline_runs) if self.baseline_runs else None

    @property
    def ratio(self) -> float | None:
        """Figure median / baseline median."""
        base = self.baseline_median
        return self.median / base if base else None

    def as_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(median=self.median, baseline_median=self.baseline_median, ratio=self.ratio)
        return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, nearest-rank."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# -- processes ----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cpu: int | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run under ``taskset -c cpu`` (as is when ``cpu`` is None)."""
    return list(argv) if cpu is None else ["taskset", "-c", str(cpu), *argv]


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclasses.dataclass
class Server:
    """A started server process: its base URL, process and log file."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    database: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGKILL falls back after STOP_DEADLINE)."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_ready(server: Server, deadline_s: float = START_DEADLINE, path: str = "/healthz") -> None:
    """Poll ``path`` until it answers 200; SystemExit with the log if the process dies."""
    deadline = time.monotonic() + deadline_s
    while True:
        if server.proc.poll() is not None:
            raise SystemExit(
                f"{server.name} exited with {server.proc.returncode}:\n{server.log.read_text()}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}{path}", timeout=1):
                return
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise SystemExit(f"{server.name} did not answer in {deadline_s}s") from None
            time.sleep(0.05)


def start_opstatus(
    database: str,
    *,
    cpu: int | None,
    env: Mapping[str, str] | None = None,
    log_level: str | None = "warning",
    extra_args: Sequence[str] = (),
    port: int | None = None,
    name: str | None = None,
) -> Server:
    """Start ``opstatus serve`` over ``database`` pinned to ``cpu``; return once healthy.

    The bootstrap admin key is ADMIN_KEY, the rate limiter is on at RATE_LIMIT and
    creates register unknown targets unless ``env`` says otherwise, and the log level defaults to
    warning (no access log line per request: the hello-world baseline logs nothing
    either).
    """
    port = port or free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPSTATUS_")}
    environ.update({"OPSTATUS_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY, "OPSTATUS_RATE_LIMIT": RATE_LIMIT})
    # The workloads aim at targets they never registered: creates register them.
    environ["OPSTATUS_REGISTER_TARGETS"] = "1"
    environ.update(env or {})
    argv = [str(BIN / "opstatus"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--database", database, *extra_args]
    if log_level is not None:
        argv += ["--log-level", log_level]
    label = name or f"opstatus-{database.split(':')[0]}-{port}"
    log = Path(tempfile.mkstemp(prefix=f"bench-{label}-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            pinned(cpu, argv), env=environ, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    server = Server(label, f"http://127.0.0.1:{port}", proc, log, database)
    try:
        wait_ready(server)
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server


@contextlib.contextmanager
def opstatus(database: str, **kw: Any) -> Iterator[Server]:
    """``start_opstatus`` as a context manager: stopped (SIGTERM) and its log removed after."""
    server = start_opstatus(database, **kw)
    try:
        yield server
    finally:
        server.stop()
        server.log.unlink(missing_ok=True)


@contextlib.contextmanager
def hello_world(cpu: int | None) -> Iterator[Server]:
    """uvicorn serving bench/hello_asgi.py with the uvicorn settings of ``opstatus serve``."""
    port = free_port()
    argv = [str(BIN / "uvicorn"), "--app-dir", str(HERE), "hello_asgi:app"]
    argv += ["--loop", "uvloop", "--http", "httptools", "--workers", "1", "--no-access-log"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    log = Path(tempfile.mkstemp(prefix="bench-hello-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(pinned(cpu, argv), stdout=out, stderr=subprocess.STDOUT)
    server = Server("hello", f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_ready(server, path="/")
        yield server
    finally:
        server.stop()
        log.unlink(missing_ok=True)


# -- databases ----------------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_database(opts: Options, name: str = "opstatus.db") -> Iterator[str]:
    """A database URL for a fresh SQLite file under ``opts.workdir`` (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="bench-", dir=opts.workdir) as folder:
        yield f"sqlite:///{folder}/{name}"


async def pg_execute(url: str, sql: str) -> None:
    """Run one statement on ``url`` over a short-lived connection."""
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def postgres_database(admin_url: str, label: str = "bench") -> Iterator[str]:
    """A new, empty database on ``admin_url``'s server; dropped afterwards."""
    name = f"opstatus_{label}_{os.getpid()}_{time.monotonic_ns() % 1_000_000}"
    base = admin_url.rsplit("/", 1)[0]
    asyncio.run(pg_execute(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(pg_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def postgres_reachable(url: str) -> str | None:
    """None when ``url`` answers, else why not."""
    try:
        asyncio.run(pg_execute(url, "SELECT 1"))
    except Exception as exc:  # any failure: say which, the caller goes on without PostgreSQL
        return f"{type(exc).__name__}: {exc}"
    return None


# -- HTTP -------------------------------------------------------------------------------


def http(
    method: str,
    url: str,
    key: str | None = ADMIN_KEY,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, Any]:
    """One JSON request with the stdlib; (status, decoded body). Never raises on 4xx/5xx."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if key is not None:
        request.add_header("X-API-Key", key)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status: int = answer.status
            payload = answer.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, payload.decode(errors="replace")


def expect(status: int, body: Any, *wanted: int) -> Any:
    """``body`` when ``status`` is one of ``wanted``; SystemExit naming both otherwise."""
    if status not in wanted:
        raise SystemExit(f"expected {wanted}, got {status}: {body}")
    return body


def register_targets(base: str, targets: Sequence[str]) -> None:
    for target in targets:
        expect(*http("POST", f"{base}/v1/targets", body={"id": target}), 200, 201, 409)


def agent_key(base: str, targets: Sequence[str], name: str = "bench-agent") -> str:
    """A fresh agent key bound to ``targets``; its secret."""
    body = {"name": name, "role": "agent", "targets": list(targets)}
    made = expect(*http("POST", f"{base}/v1/keys", body=body), 200, 201)
    secret: str = made["secret"]
    return secret


# -- wrk ----------------------------------------------------------------------------------

_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_TOTAL = re.compile(r"(\d+) requests in")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_P50 = re.compile(r"^\s+50%\s+(\S+)", re.MULTILINE)
_P99 = re.compile(r"^\s+99%\s+(\S+)", re.MULTILINE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WrkRun:
    """One wrk run's figures."""

    requests_per_second: float
    requests: int
    non_2xx: int
    socket_errors: int
    latency_p50: str
    latency_p99: str


def wrk(
    url: str,
    *,
    cpu: int | None,
    seconds: float,
    connections: int = 32,
    threads: int = 1,
    headers: Mapping[str, str] | None = None,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    allow_non_2xx: bool = False,
) -> WrkRun:
    """Run wrk pinned to ``cpu`` against ``url``; parse its summary."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    if script_args:
        argv += ["--", *script_args]
    done = subprocess.run(pinned(cpu, argv), capture_output=True, text=True, check=False)
    out = done.stdout
    rps, total = _RPS.search(out), _TOTAL.search(out)
    if done.returncode != 0 or rps is None or total is None:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{out}\n{done.stderr}")
    non_2xx, sockets = _NON2XX.search(out), _SOCKET.search(out)
    p50, p99 = _P50.search(out), _P99.search(out)
    result = WrkRun(
        requests_per_second=float(rps.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
        latency_p50=p50.group(1) if p50 else "?",
        latency_p99=p99.group(1) if p99 else "?",
    )
    if result.non_2xx and not allow_non_2xx:
        raise SystemExit(f"wrk {url}: {result.non_2xx} non-2xx answers:\n{out}")
    return result


# -- the record ---------------------------------------------------------------------------


def environment(opts: Options) -> dict[str, Any]:
    """What the figures depend on."""
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in (
        "opstatus",
        "uvicorn",
        "uvloop",
        "httptools",
        "starlette",
        "msgspec",
        "asyncpg",
        "procrastinate",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model,
        "cpus": os.cpu_count(),
        "wrk": (wrk_version.stdout or wrk_version.stderr or "?").splitlines()[0],
        "versions": versions,
        "server_cpu": opts.server_cpu,
        "load_cpu": opts.load_cpu,
        "repeats": opts.repeats,
        "quick": opts.quick,
        "load_average": os.getloadavg(),
    }


# -- asyncio load clients -----------------------------------------------------------------


@contextlib.contextmanager
def cpu_affinity(cpu: int | None) -> Iterator[None]:
    """Pin the calling thread (an in-process asyncio load client) to ``cpu``; restore after.

    Threads started inside inherit the pin; subprocesses started inside inherit it
    too unless they are started under ``pinned()``.
    """
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run_async(main: Any) -> Any:
    """Run the coroutine ``main`` on uvloop (the loop ``opstatus serve`` uses); its result."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


@dataclasses.dataclass(frozen=True)
class Answer:
    """One HTTP answer read by ``AsyncConnection``."""

    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class _Reading:
    """httptools callbacks collecting one answer."""

    __slots__ = ("body", "done", "keep_alive", "parser")

    def __init__(self) -> None:
        self.body = bytearray()
        self.done = False
        self.keep_alive = True
        self.parser: Any = None

    def on_headers_complete(self) -> None:
        # httptools answers should_keep_alive() correctly only until the message completes
        self.keep_alive = bool(self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


class AsyncConnection:
    """One keep-alive HTTP/1.1 connection for asyncio load clients.

    Requests go out as written (one at a time per connection); answers are parsed
    by httptools, so a request costs the load generator about a fifth of the CPU
    an httpx request costs (measured against bench/hello_asgi.py) and latencies
    are not padded by the client. JSON bodies in, ``Answer`` out; reconnects when
    the server closes.
    """

    def __init__(self, base_url: str, headers: Mapping[str, str] | None = None) -> None:
        split = urllib.parse.urlsplit(base_url)
        self.host, self.port = split.hostname or "127.0.0.1", split.port or 80
        fixed = {"Host": split.netloc, **(headers or {})}
        self._head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request and read its whole answer."""
        import httptools

        reader, writer = await self._connect()
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\n{self._head}"
        head += "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        writer.write(head.encode() + b"\r\n" + data)
        reading = _Reading()
        parser = reading.parser = httptools.HttpResponseParser(reading)
        while not reading.done:
            chunk = await reader.read(65536)
            if not chunk:
                await self.close()
                raise ConnectionError(f"{method} {path}: the server closed the connection")
            parser.feed_data(chunk)
        if not reading.keep_alive:
            await self.close()
        return Answer(parser.get_status_code(), bytes(reading.body))

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


# -- wrk's durations ----------------------------------------------------------------------

_DURATION = re.compile(r"([\d.]+)(us|ms|s|m|h)")
_DURATION_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def duration_ms(text: str) -> float:
    """A duration as wrk prints it (``812.00us``, ``3.21ms``, ``1.02s``) in milliseconds,
    e.g. ``duration_ms(run.latency_p99)``."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(found.group(1)) * _DURATION_MS[found.group(2)]


# -- process CPU time ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CpuTimes:
    """Seconds the threads of a process have spent on a CPU, and runnable waiting for one."""

    running: float
    waiting: float

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.running - other.running, self.waiting - other.waiting)


def cpu_times(pid: int) -> CpuTimes:
    """``/proc/PID/task/*/schedstat`` summed over the threads of ``pid``.

    Sampled before and after a run: ``running`` per request is the server's CPU cost
    per request, which background load barely moves (unlike requests/s); ``waiting``
    is time it was ready to run while the CPU ran something else (a busy machine).
    """
    running = waiting = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread may end while we read
            run_ns, wait_ns, _ = (task / "schedstat").read_text().split()
            running += int(run_ns)
            waiting += int(wait_ns)
    return CpuTimes(running / 1e9, waiting / 1e9)


# -- the runners (python -m bench, python -m faults) ---------------------------------------


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both runners take: which ids, the CPUs, PostgreSQL."""
    parser.add_argument("--only", help="comma-separated ids to run (default: all)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--no-postgres", action="store_true")


def selected(parser: argparse.ArgumentParser, only: str | None, known: Sequence[str]) -> list[str]:
    """The ids ``--only`` names (all of ``known`` without it); a usage error for unknown ones."""
    wanted = [i.strip().upper() for i in only.split(",")] if only else list(known)
    unknown = [i for i in wanted if i not in known]
    if unknown:
        parser.error(f"unknown ids {unknown}; known: {', '.join(known)}")
    return wanted


def postgres_choice(args: argparse.Namespace) -> tuple[str | None, dict[str, str]]:
    """The PostgreSQL URL to use (None: without) and, when without, why."""
    if args.no_postgres:
        return None, {"PostgreSQL": "--no-postgres"}
    if (why := postgres_reachable(args.postgres)) is not None:
        return None, {"PostgreSQL": why}
    return args.postgres, {}
