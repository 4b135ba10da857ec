"""F4: Idempotency-Key retries after dropped responses, and concurrent duplicate sends.

A client sends ``POST /v1/operations`` with an ``Idempotency-Key`` and loses the
answer, in turn one of three ways:

* ``rst`` — it resets the connection (SO_LINGER 0) right after sending;
* ``fin`` — it closes the connection right after sending;
* ``midway`` — it closes the connection 2 ms after sending, while the server works;
* ``unread`` — it waits until the answer starts to arrive, then closes unread;

then retries with the same key and body until it gets an answer, and once more.
Separately, several clients send the same key and body at the same instant (one of
them dropping its connection). Goal: one operation per key (counted through the
list API), and every answer for a key names the same operation.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import itertools
import json
import select
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

from bench.common import (
    ADMIN_KEY,
    Options,
    cpu_affinity,
    http,
    opstatus,
    postgres_database,
    register_targets,
    sqlite_database,
)
from faults.common import Outcome

SCENARIO = "F4"
TITLE = "Idempotency-Key retries after dropped responses"
GOAL = "0 duplicate operations; every retry and concurrent send of a key gets the same id"
MODES = ("rst", "fin", "midway", "unread")
MIDWAY = 0.002  #: seconds after sending that ``midway`` closes
TARGET = "f4-target"
SENDERS = 8  #: concurrent senders of one key
RETRY_LIMIT = 100


def _body(kind: str, key: str) -> dict[str, Any]:
    return {"kind": kind, "targets": [TARGET], "parameters": {"key": key}}


def drop(base: str, key: str, body: dict[str, Any], mode: str) -> None:
    """Send the create with ``key`` and lose the answer the way ``mode`` says."""
    split = urllib.parse.urlsplit(base)
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/operations HTTP/1.1\r\nHost: {split.netloc}\r\nX-API-Key: {ADMIN_KEY}\r\n"
        f"Idempotency-Key: {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    with socket.create_connection((split.hostname, split.port), timeout=10) as sock:
        sock.sendall(head.encode() + data)
        if mode == "rst":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif mode == "midway":
            time.sleep(MIDWAY)
        elif mode == "unread":
            select.select([sock], [], [], 10)  # the answer is on its way: close without reading


def settle(base: str, key: str, body: dict[str, Any]) -> tuple[int, Any, float]:
    """Retry until answered; (retries needed, the answer, when the answered retry was sent)."""
    for attempt in range(1, RETRY_LIMIT + 1):
        sent = time.time()
        status, answer = http(
            "POST", f"{base}/v1/operations", body=body, headers={"Idempotency-Key": key}
        )
        if 200 <= status < 300 or 400 <= status < 500:
            return attempt, (status, answer), sent
        time.sleep(0.02)
    raise SystemExit(f"{key}: no 2xx in {RETRY_LIMIT} retries (last {status}: {answer})")


def _unix(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class Tally:
    """What the client saw, per key."""

    def __init__(self) -> None:
        self.ids: dict[str, set[str]] = collections.defaultdict(set)
        self.statuses: collections.Counter[int] = collections.Counter()
        self.replayed: collections.Counter[str] = collections.Counter()  #: dropped send created
        self.retries: list[int] = []
        self.lock = threading.Lock()

    def answer(self, key: str, status: int, body: Any) -> None:
        """Record one answer for ``key``."""
        with self.lock:
            self.statuses[status] += 1
            if 200 <= status < 300:
                self.ids[key].add(body["id"])


def dropped_series(base: str, kind: str, keys: int, tally: Tally) -> None:
    """Each key: one dropped send, retries until answered, then one more retry."""
    for n, mode in zip(range(keys), itertools.cycle(MODES), strict=False):
        key, body = f"{kind}-drop-{n}", _body(kind, f"{kind}-drop-{n}")
        drop(base, key, body, mode)
        retries, (status, answer), sent = settle(base, key, body)
        tally.answer(key, status, answer)
        tally.retries.append(retries)
        if 200 <= status < 300 and _unix(answer["created_at"]) < sent:
            tally.replayed[mode] += 1  # the dropped send had made it: the retry was a replay
        tally.answer(key, *http("POST", f"{base}/v1/operations", body=body,
                                headers={"Idempotency-Key": key}))  # fmt: skip


def concurrent_series(base: str, kind: str, keys: int, tally: Tally) -> None:
    """Each key: SENDERS clients at once (one of them dropping its connection), then settle."""
    for n in range(keys):
        key, body = f"{kind}-race-{n}", _body(kind, f"{kind}-race-{n}")
        gate = threading.Barrier(SENDERS + 1)

        def send(key: str = key, body: dict[str, Any] = body, gate: Any = gate) -> None:
            gate.wait()
            tally.answer(key, *http("POST", f"{base}/v1/operations", body=body,
                                    headers={"Idempotency-Key": key}))  # fmt: skip

        def dropper(
            key: str = key,
            body: dict[str, Any] = body,
            gate: Any = gate,
            mode: str = MODES[n % len(MODES)],
        ) -> None:
            gate.wait()
            drop(base, key, body, mode)

        threads = [threading.Thread(target=send) for _ in range(SENDERS)]
        threads.append(threading.Thread(target=dropper))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _, (status, answer), _ = settle(base, key, body)
        tally.answer(key, status, answer)


def stored(base: str, kind: str) -> dict[str, list[str]]:
    """Operation ids per key, read back through the list API (filtered by kind)."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    cursor = ""
    while True:
        query = urllib.parse.urlencode({"kind": kind, "limit": 1000, "cursor": cursor})
        status, page = http("GET", f"{base}/v1/operations?{query}")
        if status != 200:
            raise SystemExit(f"list answered {status}: {page}")
        for op in page["items"]:
            found[op["parameters"]["key"]].append(op["id"])
        cursor = page.get("next_cursor") or ""
        if not cursor:
            return found


def _one_store(database: str, opts: Options, label: str) -> tuple[dict[str, Any], list[str]]:
    """Both series on one store; (figures, problems)."""
    kind = f"f4-{label.lower()}"
    tally = Tally()
    drops, races = opts.pick(200, 20), opts.pick(50, 8)
    with opstatus(database, cpu=opts.server_cpu, name="f4") as server:
        register_targets(server.url, [TARGET])
        with cpu_affinity(opts.load_cpu):
            dropped_series(server.url, kind, drops, tally)
            concurrent_series(server.url, kind, races, tally)
        ops = stored(server.url, kind)
    problems = [f"{key}: {len(ids)} operations {ids}" for key, ids in ops.items() if len(ids) > 1]
    problems += [f"{key}: answers named {sorted(ids)}" for key, ids in tally.ids.items()
                 if len(ids) != 1 or ids != set(ops.get(key, []))]  # fmt: skip
    missing = drops + races - len(tally.ids)
    if missing:
        problems.append(f"{missing} keys never got a 2xx answer")
    bad = {s: n for s, n in tally.statuses.items() if not 200 <= s < 300}
    if bad:
        problems.append(f"answers other than 2xx: {bad}")
    figures = {
        "keys": drops + races,
        "dropped sends": drops + races,
        "dropped sends carried out, by mode": dict(tally.replayed),
        "concurrent sends": races * SENDERS,
        "retries per dropped send, max": max(tally.retries),
        "duplicates": sum(len(ids) - 1 for ids in ops.values()),
        "keys answered with more than one id": sum(len(ids) > 1 for ids in tally.ids.values()),
    }
    return figures, problems


@contextlib.contextmanager
def _stores(opts: Options) -> Iterator[list[tuple[str, str]]]:
    with contextlib.ExitStack() as stack:
        found = [("SQLite", stack.enter_context(sqlite_database(opts, "f4.db")))]
        if opts.postgres:
            found.append(
                ("PostgreSQL", stack.enter_context(postgres_database(opts.postgres, "f4")))
            )
        yield found


def run(opts: Options) -> Outcome:
    """Both series on SQLite and PostgreSQL."""
    outcome = Outcome(scenario=SCENARIO, title=TITLE, goal=GOAL, passed=True)
    with _stores(opts) as stores:
        for label, database in stores:
            figures, problems = _one_store(database, opts, label)
            outcome.passed = outcome.passed and not problems
            for name, value in figures.items():
                outcome.figures[f"{label} {name}"] = value
            outcome.details += [f"{label} PROBLEM: {p}" for p in problems[:20]]
    outcome.details += [
        f"modes of dropping the answer, in turn: {', '.join(MODES)}; concurrent: {SENDERS} "
        "senders of one key released by one barrier, plus one dropping sender",
        "a dropped send counts as carried out when the operation its retry got was created "
        "before the retry was sent (so the retry was answered from the stored operation); "
        "a send dropped before the server reads its body is not carried out: uvicorn tells "
        "the app the client left",
    ]
    return outcome
