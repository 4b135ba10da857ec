"""Status reads next to a bare ASGI hello-world, same server software, same run.

Measures requests/s of an authenticated ``GET /v1/operations/{id}`` (one
operation on 3 targets, ``X-API-Key``) served by ``opstatus serve``, and of a
bare ASGI hello-world (bench/hello_asgi.py) served by uvicorn with the same
settings as ``opstatus serve`` (uvloop, httptools, 1 worker, no access log).
Every server is pinned to one core with ``taskset``; wrk runs pinned to
another. The measurements are interleaved (hello, SQLite, PostgreSQL; repeated)
so that background load on the machine falls on all of them alike; each figure
is the median of the repeats, and the ratio is status-read median / hello median.

PostgreSQL runs when ``--postgres`` (default: the local server) answers: a
fresh database is created for the run and dropped afterwards. The PostgreSQL
server itself is not pinned (it is shared), so its backends may share wrk's core.

Usage: .venv/bin/python bench/p1_status_read.py [--duration 10] [--repeats 3]
       [--connections 32] [--server-cpu 0] [--wrk-cpu 1] [--postgres URL | --no-postgres]
       [--output bench/results-p1.json]
Needs ``wrk`` (Debian: ``apt-get install wrk``) and ``taskset`` (util-linux).
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
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ADMIN_KEY = "bench-p1-admin-key"
TARGETS = ("bench-t1", "bench-t2", "bench-t3")
START_DEADLINE = 30.0
STOP_DEADLINE = 10.0
WARM_UP_SECONDS = 2
#: more log lines than this from one server means it logs every request
ACCESS_LOG_LINES = 1000
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
#: the uvicorn settings of ``opstatus serve`` (opstatus/cli.py), for the hello-world
UVICORN_FLAGS = ("--loop", "uvloop", "--http", "httptools", "--workers", "1", "--no-access-log")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Wrk:
    """One wrk run's figures."""

    requests_per_second: float
    requests: int
    non_2xx: int
    socket_errors: int
    latency_avg: str
    latency_p99: str


@dataclasses.dataclass(kw_only=True, slots=True)
class Subject:
    """Something measured: a URL, the headers wrk sends, the runs so far."""

    name: str
    url: str
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    runs: list[Wrk] = dataclasses.field(default_factory=list)

    @property
    def median(self) -> float:
        """Median requests/s over the runs."""
        return statistics.median(r.requests_per_second for r in self.runs)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http(
    method: str, url: str, key: str | None = None, body: Any = None
) -> tuple[int, dict[str, Any]]:
    """One JSON request with the stdlib; (status, decoded body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if key is not None:
        request.add_header("X-API-Key", key)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status: int = answer.status
            payload = answer.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise SystemExit(f"{method} {url}: {exc.code} {detail}") from None
    return status, json.loads(payload) if payload else {}


@contextlib.contextmanager
def server(
    name: str, argv: Sequence[str], env: dict[str, str], port: int, notes: list[str]
) -> Iterator[str]:
    """Start ``argv`` pinned as given, wait for an answer on ``port``; yield its base URL.

    Appends a note to ``notes`` when the server logged a line per request.
    """
    log = Path(tempfile.mkstemp(prefix=f"bench-p1-{name}-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=HERE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not answer in {START_DEADLINE}s") from None
                time.sleep(0.1)
        yield url
        lines = log.read_bytes().count(b"\n")
        if lines > ACCESS_LOG_LINES:
            note = (
                f"{name} logged {lines:,} lines while measured: an access log line per "
                "request, which costs throughput (the hello-world runs with --no-access-log)"
            )
            print(f"note: {note}")
            notes.append(note)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.unlink(missing_ok=True)


def hello_server(cpu: int, notes: list[str]) -> contextlib.AbstractContextManager[str]:
    """uvicorn serving bench/hello_asgi.py on ``cpu``."""
    port = free_port()
    uvicorn = Path(sys.executable).with_name("uvicorn")
    argv = ["taskset", "-c", str(cpu), str(uvicorn), "--app-dir", str(HERE), "hello_asgi:app"]
    argv += [*UVICORN_FLAGS, "--host", "127.0.0.1", "--port", str(port)]
    return server("hello", argv, dict(os.environ), port, notes)


def opstatus_server(
    cpu: int, database: str, log_level: str | None, notes: list[str]
) -> contextlib.AbstractContextManager[str]:
    """``opstatus serve`` on ``cpu``: bootstrap admin key, no rate limit, its own log level."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSTATUS_")}
    env["OPSTATUS_BOOTSTRAP_ADMIN_KEY"] = ADMIN_KEY
    env["OPSTATUS_RATE_LIMIT"] = "off"
    opstatus = Path(sys.executable).with_name("opstatus")
    argv = ["taskset", "-c", str(cpu), str(opstatus), "serve"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--database", database]
    if log_level is not None:
        argv += ["--log-level", log_level]
    return server(f"opstatus-{database.split(':')[0]}", argv, env, port, notes)


def one_operation(base: str) -> str:
    """Register the targets, trigger one operation on them; its status URL."""
    for target in TARGETS:
        http("POST", f"{base}/v1/targets", ADMIN_KEY, {"id": target})
    status, made = http(
        "POST",
        f"{base}/v1/operations",
        ADMIN_KEY,
        {"kind": "bench", "targets": list(TARGETS), "parameters": {"image": "fw-2.4.1"}},
    )
    assert status == 202, status
    url = f"{base}/v1/operations/{made['id']}"
    status, read = http("GET", url, ADMIN_KEY)
    assert status == 200 and len(read["executions"]) == len(TARGETS), read
    return url


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_TOTAL = re.compile(r"(\d+) requests in")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_LATENCY = re.compile(r"Latency\s+(\S+)")
_P99 = re.compile(r"^\s+99%\s+(\S+)", re.MULTILINE)


def wrk(subject: Subject, args: argparse.Namespace, seconds: int) -> Wrk:
    """Run wrk pinned to ``args.wrk_cpu`` against ``subject``; parse its summary."""
    argv = ["taskset", "-c", str(args.wrk_cpu), "wrk", f"-t{args.threads}"]
    argv += [f"-c{args.connections}", f"-d{seconds}s", "--latency"]
    for name, value in subject.headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run([*argv, subject.url], capture_output=True, text=True, check=True).stdout
    rps, total = _RPS.search(out), _TOTAL.search(out)
    if rps is None or total is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    non_2xx = _NON2XX.search(out)
    sockets = _SOCKET.search(out)
    latency, p99 = _LATENCY.search(out), _P99.search(out)
    result = Wrk(
        requests_per_second=float(rps.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
        latency_avg=latency.group(1) if latency else "?",
        latency_p99=p99.group(1) if p99 else "?",
    )
    if result.non_2xx:
        raise SystemExit(f"{subject.name}: {result.non_2xx} non-2xx answers:\n{out}")
    return result


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_postgres(admin_url: str) -> Iterator[str]:
    """A new, empty database on ``admin_url``'s server for the run; dropped afterwards."""
    name = f"opstatus_bench_p1_{os.getpid()}"
    base = admin_url.rsplit("/", 1)[0]
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def postgres_reachable(url: str) -> str | None:
    """None when ``url`` answers, else why not."""
    try:
        asyncio.run(_admin(url, "SELECT 1"))
    except Exception as exc:  # any failure: say which and go on without PostgreSQL
        return f"{type(exc).__name__}: {exc}"
    return None


def environment(args: argparse.Namespace) -> dict[str, Any]:
    """What the figures depend on."""
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("opstatus", "uvicorn", "uvloop", "httptools", "starlette", "msgspec"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model,
        "cpus": os.cpu_count(),
        "wrk": (wrk_version.stdout or wrk_version.stderr).splitlines()[0],
        "versions": versions,
        "server_cpu": args.server_cpu,
        "wrk_cpu": args.wrk_cpu,
    }


def measure(subjects: Sequence[Subject], args: argparse.Namespace) -> None:
    """Warm each subject up, then ``repeats`` rounds of one wrk run per subject, in turn."""
    for subject in subjects:
        wrk(subject, args, WARM_UP_SECONDS)
    for round_ in range(1, args.repeats + 1):
        for subject in subjects:
            result = wrk(subject, args, args.duration)
            subject.runs.append(result)
            print(
                f"  round {round_} {subject.name:<24} {result.requests_per_second:>10,.0f} req/s"
                f"  (avg {result.latency_avg}, p99 {result.latency_p99})",
                flush=True,
            )


def report(subjects: Sequence[Subject], hello: Subject) -> list[dict[str, Any]]:
    """Print the table; the rows for the JSON file."""
    rows = []
    print()
    print(f"{'subject':<24} {'median req/s':>12} {'runs':<30} {'vs hello':>8}")
    for subject in subjects:
        ratio = subject.median / hello.median
        runs = ", ".join(f"{r.requests_per_second:,.0f}" for r in subject.runs)
        print(f"{subject.name:<24} {subject.median:>12,.0f} {runs:<30} {ratio:>8.3f}")
        rows.append(
            {
                "name": subject.name,
                "url_path": subject.url.split("/", 3)[3],
                "median_rps": subject.median,
                "ratio_to_hello": ratio,
                "runs": [dataclasses.asdict(r) for r in subject.runs],
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print, write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=3, help="wrk runs per subject")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--wrk-cpu", type=int, default=1)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a server to make a db on")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--opstatus-log-level",
        metavar="LEVEL",
        help="pass --log-level LEVEL to opstatus serve (warning: no access log); "
        "default: serve's own default",
    )
    parser.add_argument("--output", type=Path, default=HERE / "results-p1.json")
    args = parser.parse_args(argv)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install wrk util-linux)")

    skipped: dict[str, str] = {}
    if args.no_postgres:
        skipped["postgresql"] = "--no-postgres"
    elif (why := postgres_reachable(args.postgres)) is not None:
        skipped["postgresql"] = why
        print(f"PostgreSQL skipped: {why}")
    notes: list[str] = []
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        hello_url = stack.enter_context(hello_server(args.server_cpu, notes))
        hello = Subject(name="hello-world (bare ASGI)", url=f"{hello_url}/")
        subjects = [hello]
        sqlite_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-p1-"))
        databases = {"sqlite": f"sqlite:///{sqlite_dir}/opstatus.db"}
        if "postgresql" not in skipped:
            databases["postgresql"] = stack.enter_context(fresh_postgres(args.postgres))
        for store, database in databases.items():
            base = stack.enter_context(
                opstatus_server(args.server_cpu, database, args.opstatus_log_level, notes)
            )
            subjects.append(
                Subject(
                    name=f"status read ({store})",
                    url=one_operation(base),
                    headers={"X-API-Key": ADMIN_KEY},
                )
            )
        print(
            f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s x{args.repeats}, "
            f"servers on cpu {args.server_cpu}, wrk on cpu {args.wrk_cpu}",
            flush=True,
        )
        measure(subjects, args)
    rows = report(subjects, hello)
    results = {
        "benchmark": "p1_status_read",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {
            "duration_s": args.duration,
            "repeats": args.repeats,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "targets_per_operation": len(TARGETS),
            "uvicorn": list(UVICORN_FLAGS),
            "rate_limit": "off",
            "opstatus_log_level": args.opstatus_log_level,
        },
        "environment": environment(args),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "skipped": skipped,
        "notes": notes,
        "subjects": rows,
    }
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
