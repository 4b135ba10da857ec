"""F1: SIGKILL the server again and again under write load; reconcile every acknowledged write.

One ``opstatus serve`` (pinned to the server CPU) takes creates and agent PATCHes
from the load process (:mod:`faults.load`, pinned to the load CPU). At random
moments the server is killed with SIGKILL and started again on the same
database and port while the load keeps going. Afterwards the journal of
acknowledged writes is reconciled against the database, and the store's own
integrity check runs. On SQLite (synchronous=FULL) and on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import (
    ADMIN_KEY,
    Options,
    Server,
    agent_key,
    free_port,
    postgres_database,
    register_targets,
    sqlite_database,
    start_opstatus,
)
from faults import load
from faults.common import Outcome

SCENARIO = "F1"
TITLE = "SIGKILL the server under write load"
GOAL = "0 acknowledged writes lost, integrity check clean, events gapless"
TARGETS = 4
#: writes the server must acknowledge after each start before it may be killed
MIN_WRITES = 5
#: then it lives this much longer (seconds, uniform) under load before the kill
LIFE = (0.0, 1.5)
SEED = 7


def _kill(server: Server) -> None:
    """SIGKILL ``server`` and forget its log."""
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    server.log.unlink(missing_ok=True)


def _lives(journal: load.Journal, kills: list[float]) -> list[int]:
    """Acknowledged writes (2xx creates and PATCHes) during each server life before a kill."""
    starts = [0.0, *kills[:-1]]
    return [
        sum(
            1 for r in journal.requests
            if start <= r["t1"] < end and 200 <= r["status"] < 300 and r["op"] != "inbox"
        )
        for start, end in zip(starts, kills, strict=True)
    ]  # fmt: skip


def _storm(database: str, opts: Options, kills: int, journal_path: Path) -> dict[str, Any]:
    """Run the load against ``database`` and kill the server ``kills`` times; stop cleanly."""
    rng = random.Random(SEED)
    port = free_port()
    server = start_opstatus(database, cpu=opts.server_cpu, port=port, name="f1")
    targets = [f"f1-t{i}" for i in range(TARGETS)]
    register_targets(server.url, targets)
    cfg = load.LoadConfig(
        url=server.url, admin_key=ADMIN_KEY, agent_key=agent_key(server.url, targets),
        targets=targets, journal=journal_path, kind="f1", creators=2, agents=2 * TARGETS,
    )  # fmt: skip
    killed_at: list[float] = []
    ready_after: list[float] = []
    started = time.time()
    proc = load.start_load(cfg, opts.load_cpu)
    tail = load.Tail(journal_path)
    try:
        for _ in range(kills):
            if not tail.wait(started, MIN_WRITES):
                raise SystemExit(f"F1: no {MIN_WRITES} writes acknowledged in a minute")
            time.sleep(rng.uniform(*LIFE))
            killed_at.append(time.time())
            _kill(server)
            server = start_opstatus(database, cpu=opts.server_cpu, port=port, name="f1")
            started = time.time()
            ready_after.append(started - killed_at[-1])
        tail.wait(started, MIN_WRITES)  # a last life, killed by no one
        time.sleep(LIFE[1])
    finally:
        load.stop_load(proc)
        server.stop()
        server.log.unlink(missing_ok=True)
    return {"killed_at": killed_at, "ready_after": ready_after}


def _one_store(
    label: str,
    database: str,
    opts: Options,
    inspect: Callable[[], tuple[load.Snapshot, list[str]]],
) -> tuple[load.Reconciliation, list[str]]:
    """The storm on one store, then reconciliation; (its result, lines for the record)."""
    kills = opts.pick(20, 3)
    with tempfile.TemporaryDirectory(prefix="f1-") as folder:
        journal_path = Path(folder) / "journal.jsonl"
        storm = _storm(database, opts, kills, journal_path)
        journal = load.read_journal(journal_path)
        snapshot, integrity = inspect()
        result = load.reconcile(journal, snapshot, integrity)
        if result.problems:  # keep the evidence
            kept = Path(tempfile.mkstemp(prefix=f"f1-{label}-", suffix=".jsonl")[1])
            shutil.copyfile(journal_path, kept)
            result.problems.append(f"the load's journal is kept in {kept}")
    lives = _lives(journal, storm["killed_at"])
    result.figures.update({
        "kills": kills,
        "restart to ready, median s": round(statistics.median(storm["ready_after"]), 2),
        "fewest writes acknowledged in one life": min(lives),
    })  # fmt: skip
    statuses = journal.statuses()
    fives = sum(n for code, n in statuses.items() if code.startswith("5"))
    result.figures["5xx answers"] = fives
    lines = [
        f"{label}: {kills} SIGKILLs, each once the restarted server had acknowledged "
        f"{MIN_WRITES} writes, then {LIFE[0]}-{LIFE[1]} s later (seed {SEED}); "
        f"acknowledged writes per server life: {lives}",
        f"{label}: answers seen by the load: {statuses}",
        f"{label}: " + ", ".join(f"{k} {v}" for k, v in result.figures.items()),
    ]
    lines += [f"{label} PROBLEM: {p}" for p in result.problems[:20]]
    if fives:
        lines.append(f"{label}: 5xx answers while the server was up — see the server log")
    return result, lines


@contextlib.contextmanager
def _sqlite(opts: Options) -> Iterator[tuple[str, Callable[[], Any]]]:
    with sqlite_database(opts, "f1.db") as url:
        path = Path(url.removeprefix("sqlite:///"))
        yield url, lambda: (load.sqlite_snapshot(path), load.sqlite_integrity(path))


@contextlib.contextmanager
def _postgres(admin_url: str) -> Iterator[tuple[str, Callable[[], Any]]]:
    with postgres_database(admin_url, "f1") as url:
        yield url, lambda: (load.postgres_snapshot(url), load.postgres_integrity(url))


def run(opts: Options) -> Outcome:
    """SIGKILL storms on SQLite (FULL) and PostgreSQL, each reconciled."""
    outcome = Outcome(scenario=SCENARIO, title=TITLE, goal=GOAL, passed=True)
    outcome.details.append(
        "SQLite: a file on the work disk, synchronous=FULL (the default); PostgreSQL: a fresh "
        "database on the shared server; integrity: PRAGMA integrity_check and "
        "foreign_key_check on SQLite, amcheck bt_index_check (heap included) on PostgreSQL"
    )
    stores: list[tuple[str, Any]] = [("SQLite", _sqlite(opts))]
    if opts.postgres:
        stores.append(("PostgreSQL", _postgres(opts.postgres)))
    else:
        outcome.details.append("PostgreSQL: skipped (not reachable or --no-postgres)")
    for label, store in stores:
        try:
            with store as (database, inspect):
                result, lines = _one_store(label, database, opts, inspect)
        except SystemExit as exc:  # the storm could not go on: say why, go on with the next
            outcome.passed = False
            outcome.details.append(f"{label}: could not finish: {exc}")
            continue
        outcome.details += lines
        outcome.passed = outcome.passed and not result.problems and result.lost == 0
        for name in ("acknowledged creates", "acknowledged PATCHes", "lost creates",
                     "lost PATCHes", "unacknowledged creates present", "integrity",
                     "restart to ready, median s", "kills"):  # fmt: skip
            outcome.figures[f"{label} {name}"] = result.figures[name]
        outcome.figures[f"{label} problems"] = len(result.problems)
    outcome.details.append(
        "A process kill loses nothing the kernel already holds, so this tests opstatus's "
        "commit-before-answer order and crash recovery, not the disk's fsync (that needs "
        "power loss)."
    )
    return outcome
