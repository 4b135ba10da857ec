"""P1: authenticated status reads next to a bare ASGI hello-world, same server software.

Subjects, each served by one process pinned to ``opts.server_cpu``:

* the baseline: bench/hello_asgi.py on uvicorn with the settings ``opstatus serve``
  passes it (uvloop, httptools, 1 worker, no access log);
* ``GET /v1/operations/{id}`` (an operation on 3 targets) from ``opstatus serve``
  with production defaults: the rate limiter on (``OPSTATUS_RATE_LIMIT`` set high
  enough to admit every request, so each one pays for the bucket), access checks,
  the failed-authentication limit, metrics. On SQLite and on PostgreSQL, each with
  ``X-API-Key`` and with ``Authorization: Bearer`` (the same key), the access log
  off (``--log-level warning``, as the hello-world logs nothing); and on SQLite with
  serve's default access log (a JSON line per request).

wrk runs pinned to ``opts.load_cpu`` (1 thread, 32 connections). After a warm-up
each round runs every subject in turn, so drifting background load hits all of
them alike; a figure is the median over rounds, the ratio is that median over
the hello-world's median. Goal: >= 0.5.
"""

from __future__ import annotations

import contextlib
from typing import Any

from bench.common import (
    ADMIN_KEY,
    RATE_LIMIT,
    Figure,
    Options,
    expect,
    hello_world,
    http,
    opstatus,
    postgres_database,
    register_targets,
    sqlite_database,
    wrk,
)

TARGETS = ("bench-t1", "bench-t2", "bench-t3")
GOAL = 0.5
CONNECTIONS = 32
#: high enough to admit every request: the limiter runs, and never refuses
LIMIT = {"OPSTATUS_RATE_LIMIT": RATE_LIMIT}
AUTH = {
    "X-API-Key": {"X-API-Key": ADMIN_KEY},
    "Bearer": {"Authorization": f"Bearer {ADMIN_KEY}"},
}


def one_operation(base: str) -> str:
    """Register the targets, trigger one operation on them; its status URL."""
    register_targets(base, TARGETS)
    body = {"kind": "bench", "targets": list(TARGETS), "parameters": {"image": "fw-2.4.1"}}
    made = expect(*http("POST", f"{base}/v1/operations", body=body), 202)
    url = f"{base}/v1/operations/{made['id']}"
    read = expect(*http("GET", url), 200)
    assert len(read["executions"]) == len(TARGETS), read
    return url


def setups(opts: Options) -> list[tuple[str, str, str | None, dict[str, str], tuple[str, ...]]]:
    """(label, store kind, serve's log level, extra env, auth schemes) of each subject.

    With ``opts.before`` (a checkout of an earlier commit) its code serves extra
    subjects through PYTHONPATH, for a before/after in the same run.
    """
    both = tuple(AUTH)
    out: list[tuple[str, str, str | None, dict[str, str], tuple[str, ...]]] = [
        ("SQLite", "sqlite", "warning", LIMIT, both),
        ("SQLite, access log on", "sqlite", None, LIMIT, ("X-API-Key",)),
    ]
    if opts.postgres:
        out.append(("PostgreSQL", "postgres", "warning", LIMIT, both))
    if opts.before is not None:
        old = {"PYTHONPATH": str(opts.before), **LIMIT}
        out.append(("SQLite, before", "sqlite", "warning", old, ("X-API-Key",)))
        if opts.postgres:
            out.append(("PostgreSQL, before", "postgres", "warning", old, ("X-API-Key",)))
    return out


def run(opts: Options) -> list[Figure]:
    """Measure every subject ``opts.repeats`` times, interleaved."""
    seconds = opts.pick(10, 2)
    subjects: dict[str, tuple[str, dict[str, str]]] = {}
    runs: dict[str, list[float]] = {}
    latency: dict[str, list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        hello = stack.enter_context(hello_world(opts.server_cpu))
        subjects["hello"] = (f"{hello.url}/", {})
        for label, kind, log_level, env, schemes in setups(opts):
            database = stack.enter_context(
                sqlite_database(opts)
                if kind == "sqlite"
                else postgres_database(opts.postgres or "", "p1")
            )
            server = stack.enter_context(
                opstatus(database, cpu=opts.server_cpu, log_level=log_level, env=env)
            )
            url = one_operation(server.url)
            for scheme in schemes:
                subjects[f"{label}, {scheme}"] = (url, AUTH[scheme])
        for url, headers in subjects.values():  # warm-up
            wrk(url, cpu=opts.load_cpu, seconds=2, headers=headers, connections=CONNECTIONS)
        for round_ in range(opts.repeats):
            for name, (url, headers) in subjects.items():
                result = wrk(
                    url, cpu=opts.load_cpu, seconds=seconds, headers=headers,
                    connections=CONNECTIONS,
                )  # fmt: skip
                runs.setdefault(name, []).append(result.requests_per_second)
                latency.setdefault(name, []).append(
                    {"p50": result.latency_p50, "p99": result.latency_p99}
                )
                print(f"  round {round_ + 1} {name:<24} {result.requests_per_second:>9,.0f} req/s")
    figures = []
    for name in subjects:
        if name == "hello":
            continue
        figure = Figure(
            benchmark="P1",
            name=f"status read rps ({name})",
            unit="req/s",
            runs=runs[name],
            goal=f">= {GOAL:.0%} of hello-world",
            baseline_name="bare ASGI hello-world, same uvicorn settings",
            baseline_runs=runs["hello"],
            extra={"latency": latency[name], "hello_latency": latency["hello"]},
        )
        figure.met = (figure.ratio or 0) >= GOAL
        figures.append(figure)
    return figures
