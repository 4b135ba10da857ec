"""Write load for the fault scenarios, and the reconciliation of what it was told.

The load process (``python -m faults.load``, started pinned to the load CPU by
:func:`start_load`) plays two roles at once against one opstatus server:

* *creators* ``POST /v1/operations`` with a unique ``Idempotency-Key`` (also put in
  ``parameters``, so each operation can be found again), one target each;
* *agents* long-poll a target's inbox, then PATCH each execution
  ``acknowledged`` → ``in_progress`` (50 %) → ``succeeded``, always with
  ``expected_version``, so every PATCH has exactly one possible outcome.

It writes a journal (JSON lines) of every answer it got: a write that got a 2xx
is *acknowledged* and must survive whatever happens to the server; a write that
got no answer (connection lost, 5xx) is *unacknowledged* and may or may not be
there. It stops on SIGTERM.

:func:`reconcile` then holds the journal against a snapshot of the database
(:func:`sqlite_snapshot`, :func:`postgres_snapshot`): acknowledged creates and
PATCHes present with their fields and event rows, event seqs gapless, every
execution's version history complete in the event outbox, operations' derived
state matching their executions, no execution dispatched twice in one attempt.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.common import ROOT, pinned

#: seconds between retries of a request that got no answer
RETRY_PAUSE = 0.05
#: how long an agent keeps retrying one unanswered PATCH before it gives the work up
PATCH_PATIENCE = 60.0
#: journal statuses of requests that got no HTTP answer
REFUSED, LOST = -1, 0
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")
STATES = ("scheduled", "queued", "dispatched", "acknowledged", "in_progress", *TERMINAL)


# -- the load process ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoadConfig:
    """What the load process does, against which server."""

    url: str
    admin_key: str
    agent_key: str
    targets: Sequence[str]
    journal: Path
    kind: str = "fault-load"
    creators: int = 2
    agents: int = 4
    backlog: int = 40  #: most created-but-unfinished operations before creators wait
    lease: float = 3.0
    run_timeout: float = 10.0
    retries: int = 3

    def argv(self) -> list[str]:
        """The command line that runs this load."""
        return [
            sys.executable, "-m", "faults.load", "--url", self.url,
            "--admin-key", self.admin_key, "--agent-key", self.agent_key,
            "--targets", ",".join(self.targets), "--journal", str(self.journal),
            "--kind", self.kind, "--creators", str(self.creators),
            "--agents", str(self.agents), "--backlog", str(self.backlog),
            "--lease", str(self.lease), "--run-timeout", str(self.run_timeout),
            "--retries", str(self.retries),
        ]  # fmt: skip


class Load:
    """The creators and agents of one load process, sharing one HTTP client and journal."""

    def __init__(self, cfg: LoadConfig, client: Any, journal: Any) -> None:
        self.cfg = cfg
        self.client = client
        self.journal = journal
        self.stop = asyncio.Event()
        self.open = 0  #: operations created and not yet finished or given up
        self.room = asyncio.Condition()

    def note(self, record: dict[str, Any]) -> None:
        """Append one journal line."""
        self.journal.write(json.dumps(record, separators=(",", ":")) + "\n")

    async def request(
        self, op: str, method: str, path: str, key: str, **kw: Any
    ) -> tuple[int, Any]:
        """One request; (status, JSON body).

        Status ``REFUSED``: no connection, so nothing was sent; ``LOST``: sent but no
        answer came (connection lost, timeout), so it may or may not have happened.
        """
        import httpx

        started = time.time()
        try:
            answer = await self.client.request(
                method, path, headers={"X-API-Key": key, **kw.pop("headers", {})}, **kw
            )
            status, body = answer.status_code, answer.json() if answer.content else None
        except httpx.ConnectError as exc:
            status, body = REFUSED, f"{type(exc).__name__}: {exc}"
        except (httpx.HTTPError, ValueError) as exc:
            status, body = LOST, f"{type(exc).__name__}: {exc}"
        record = {"t": "req", "op": op, "status": status, "t0": started, "t1": time.time()}
        self.note(record if status > 0 else {**record, "err": str(body)[:200]})
        return status, body

    async def _finished(self) -> None:
        async with self.room:
            self.open = max(0, self.open - 1)
            self.room.notify_all()

    async def creator(self, n: int) -> None:
        """Create operations with fresh keys until stopped (waits while the backlog is full)."""
        cfg, i = self.cfg, 0
        while not self.stop.is_set():
            async with self.room:
                while self.open >= cfg.backlog and not self.stop.is_set():
                    try:
                        await asyncio.wait_for(self.room.wait(), 0.5)
                    except TimeoutError:
                        pass
            key = f"{cfg.kind}-c{n}-{i}"
            target = cfg.targets[(n + i) % len(cfg.targets)]
            i += 1
            body = {
                "kind": cfg.kind, "targets": [target], "parameters": {"key": key},
                "timeouts": {"lease": cfg.lease, "run": cfg.run_timeout}, "retries": cfg.retries,
            }  # fmt: skip
            status, made = await self.request(
                "create", "POST", "/v1/operations", cfg.admin_key,
                json=body, headers={"Idempotency-Key": key},
            )  # fmt: skip
            if 200 <= status < 300:
                self.note({
                    "t": "create", "ok": True, "key": key, "id": made["id"],
                    "number": made["number"], "target": target, "version": made["version"],
                })  # fmt: skip
                async with self.room:
                    self.open += 1
            else:
                self.note({"t": "create", "ok": False, "key": key, "status": status})
                await asyncio.sleep(RETRY_PAUSE if status == REFUSED else 0)

    async def agent(self, n: int) -> None:
        """Pull one target's inbox and run each execution to success until stopped."""
        cfg = self.cfg
        target = cfg.targets[n % len(cfg.targets)]
        while not self.stop.is_set():
            status, inbox = await self.request(
                "inbox", "GET", f"/v1/targets/{target}/inbox",
                cfg.agent_key, params={"wait": "1", "limit": "5"},
            )  # fmt: skip
            if status != 200:
                await asyncio.sleep(RETRY_PAUSE)
                continue
            for item in inbox["items"]:
                self.note({
                    "t": "claim", "exec": item["id"], "agent": n, "attempt": item["attempt"],
                    "version": item["version"],
                })  # fmt: skip
                await self.work(n, item)
                if self.stop.is_set():
                    break

    async def work(self, n: int, item: dict[str, Any]) -> None:
        """acknowledged → in_progress 50 % → succeeded, each with expected_version."""
        version: int | None = item["version"]
        for state, progress in (("acknowledged", None), ("in_progress", 50.0), ("succeeded", None)):
            assert version is not None
            version = await self.patch(n, item, version, state, progress)
            if version is None:
                break
        await self._finished()

    async def patch(
        self, n: int, item: dict[str, Any], expected: int, state: str, progress: float | None
    ) -> int | None:
        """PATCH until answered; the new version, or None when the work is not ours any more.

        A PATCH that got no answer is retried as is (``expected_version`` makes it
        safe); a 409 whose ``current`` shows exactly the change asked for means an
        unanswered attempt landed.
        """
        body: dict[str, Any] = {"state": state, "expected_version": expected}
        if progress is not None:
            body["progress"] = progress
        base = {"exec": item["id"], "agent": n, "attempt": item["attempt"], "state": state}
        unanswered, deadline = False, time.monotonic() + PATCH_PATIENCE
        while True:
            status, answer = await self.request(
                "patch", "PATCH", f"/v1/executions/{item['id']}", self.cfg.agent_key, json=body
            )
            if 200 <= status < 300:
                self.note({**base, "t": "patch", "version": answer["version"],
                           "progress": answer["progress"], "expected": expected})  # fmt: skip
                return int(answer["version"])
            if status in (REFUSED, LOST) or status >= 500:
                if not unanswered and status != REFUSED:
                    self.note({**base, "t": "unacked", "expected": expected, "status": status,
                               "progress": progress})  # fmt: skip
                unanswered = unanswered or status != REFUSED
                if self.stop.is_set() or time.monotonic() > deadline:
                    return None
                await asyncio.sleep(RETRY_PAUSE)
                continue
            current = answer.get("current") if isinstance(answer, dict) else None
            landed = (
                unanswered and current is not None and current["version"] == expected + 1
                and current["state"] == state
            )  # fmt: skip
            self.note({**base, "t": "refused", "status": status, "landed": landed})
            return int(current["version"]) if landed and current else None


async def run_load(cfg: LoadConfig) -> None:
    """Run creators and agents until SIGTERM, journalling to ``cfg.journal``."""
    import httpx

    limits = httpx.Limits(max_connections=cfg.creators + cfg.agents + 4)
    with cfg.journal.open("w", buffering=1) as journal:  # line by line: scenarios tail it
        async with httpx.AsyncClient(base_url=cfg.url, timeout=10.0, limits=limits) as client:
            load = Load(cfg, client, journal)
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, load.stop.set)
            tasks = [load.creator(n) for n in range(cfg.creators)]
            tasks += [load.agent(n) for n in range(cfg.agents)]
            print("load running", flush=True)
            await asyncio.gather(*tasks)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m faults.load``: the load process."""
    parser = argparse.ArgumentParser(prog="python -m faults.load", description=__doc__)
    for name in ("url", "admin-key", "agent-key", "targets", "journal", "kind"):
        parser.add_argument(f"--{name}", required=name != "kind", default="fault-load")
    for name in ("creators", "agents", "backlog", "retries"):
        parser.add_argument(f"--{name}", type=int, required=True)
    for name in ("lease", "run-timeout"):
        parser.add_argument(f"--{name}", type=float, required=True)
    a = parser.parse_args(argv)
    cfg = LoadConfig(
        url=a.url, admin_key=a.admin_key, agent_key=a.agent_key, targets=a.targets.split(","),
        journal=Path(a.journal), kind=a.kind, creators=a.creators, agents=a.agents,
        backlog=a.backlog, lease=a.lease, run_timeout=a.run_timeout, retries=a.retries,
    )  # fmt: skip
    asyncio.run(run_load(cfg))


# -- driving it from a scenario ----------------------------------------------------------


def start_load(cfg: LoadConfig, cpu: int | None) -> subprocess.Popen[bytes]:
    """Start the load process pinned to ``cpu``; return once it runs."""
    proc = subprocess.Popen(pinned(cpu, cfg.argv()), cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"load running":
        proc.kill()
        raise SystemExit(f"the load process did not start (exit {proc.wait()})")
    return proc


def stop_load(proc: subprocess.Popen[bytes], timeout: float = PATCH_PATIENCE + 15) -> None:
    """SIGTERM the load process and wait for it to write its journal."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise SystemExit("the load process did not stop") from None
    if code != 0:
        raise SystemExit(f"the load process failed with exit code {code}")


class Tail:
    """Follows a running load's journal: when each acknowledged write was answered."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.answered: list[float] = []  #: t1 of each 2xx create or PATCH, in journal order

    def _read(self) -> None:
        with self.path.open("rb") as journal:
            journal.seek(self.offset)
            for line in journal:
                if not line.endswith(b"\n"):
                    break  # the line being written: read it next time
                self.offset += len(line)
                if line.startswith(b'{"t":"req"') and b'"op":"inbox"' not in line:
                    record = json.loads(line)
                    if 200 <= record["status"] < 300:
                        self.answered.append(record["t1"])

    def wait(self, since: float, count: int, deadline: float = 60.0) -> bool:
        """Wait until ``count`` writes were acknowledged after ``since``; False on the deadline."""
        give_up = time.monotonic() + deadline
        while True:
            self._read()
            if sum(1 for t in self.answered if t >= since) >= count:
                return True
            if time.monotonic() > give_up:
                return False
            time.sleep(0.05)


@dataclasses.dataclass
class Journal:
    """What the load process was told, from its journal."""

    creates: dict[str, dict[str, Any]]  #: acknowledged creates by key
    unacked_creates: set[str]  #: keys whose create was sent and got no answer or a 5xx
    patches: list[dict[str, Any]]  #: acknowledged PATCHes
    unacked: list[dict[str, Any]]  #: PATCHes that got no answer at first
    requests: list[dict[str, Any]]  #: every request: op, status, t0, t1
    refused: list[dict[str, Any]]  #: PATCHes answered 4xx

    def acknowledged(self) -> int:
        """Acknowledged writes: creates and PATCHes."""
        return len(self.creates) + len(self.patches)

    def statuses(self, start: float = 0.0, end: float = float("inf")) -> dict[str, int]:
        """Answers per status code of requests sent in [start, end)."""
        names = {REFUSED: "refused", LOST: "no answer"}
        tally: collections.Counter[str] = collections.Counter()
        for r in self.requests:
            if start <= r["t0"] < end:
                tally[names.get(r["status"], str(r["status"]))] += 1
        return dict(sorted(tally.items()))


def read_journal(path: Path) -> Journal:
    """Parse a load journal."""
    creates: dict[str, dict[str, Any]] = {}
    failed: set[str] = set()
    out: dict[str, list[dict[str, Any]]] = {"patch": [], "unacked": [], "req": [], "refused": []}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        kind = record.pop("t")
        if kind == "create" and record["ok"]:
            creates[record["key"]] = record
        elif kind == "create" and (record["status"] == LOST or record["status"] >= 500):
            failed.add(record["key"])
        elif kind in out:
            out[kind].append(record)
    return Journal(
        creates=creates,
        unacked_creates=failed - set(creates),
        patches=out["patch"],
        unacked=out["unacked"],
        requests=out["req"],
        refused=out["refused"],
    )


# -- what the database holds -------------------------------------------------------------------


@dataclasses.dataclass
class Snapshot:
    """The rows reconciliation reads, the same shape from either store."""

    operations: dict[str, dict[str, Any]]  #: by id
    executions: dict[str, dict[str, Any]]  #: by id
    events: list[dict[str, Any]]  #: in seq order, ``data`` decoded
    event_seq: int  #: the tenant's last event seq handed out
    op_seq: int  #: the tenant's last operation number handed out


_OPERATIONS = (
    "SELECT id, idempotency_key, kind, parameters, number, state, counts, progress_sum, total, "
    "version FROM operations WHERE tenant_id = 'default'"
)
_EXECUTIONS = (
    "SELECT id, operation_id, target_id, state, progress, version, attempt FROM executions "
    "WHERE tenant_id = 'default'"
)
_EVENTS = (
    "SELECT seq, type, operation_id, execution_id, state, progress, data FROM events "
    "WHERE tenant_id = 'default' ORDER BY seq"
)
_TENANT = "SELECT event_seq, op_seq FROM tenants WHERE id = 'default'"


def _decoded(row: dict[str, Any], *fields: str) -> dict[str, Any]:
    for field in fields:
        if isinstance(row[field], str):
            row[field] = json.loads(row[field])
    return row


def _snapshot(
    ops: Iterable[dict[str, Any]],
    execs: Iterable[dict[str, Any]],
    events: Iterable[dict[str, Any]],
    tenant: dict[str, Any],
) -> Snapshot:
    return Snapshot(
        operations={r["id"]: _decoded(r, "parameters", "counts") for r in ops},
        executions={r["id"]: r for r in execs},
        events=[_decoded(r, "data") for r in events],
        event_seq=int(tenant["event_seq"]),
        op_seq=int(tenant["op_seq"]),
    )


def sqlite_snapshot(path: Path) -> Snapshot:
    """The rows of a SQLite database file (opened read-only)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row

        def rows(sql: str) -> list[dict[str, Any]]:
            return [dict(r) for r in db.execute(sql)]

        return _snapshot(rows(_OPERATIONS), rows(_EXECUTIONS), rows(_EVENTS), rows(_TENANT)[0])


def sqlite_integrity(path: Path) -> list[str]:
    """What ``PRAGMA integrity_check`` and ``PRAGMA foreign_key_check`` find (empty: clean)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        found = [r[0] for r in db.execute("PRAGMA integrity_check")]
        problems = [f"integrity_check: {r}" for r in found if r != "ok"]
        orphans = db.execute("PRAGMA foreign_key_check").fetchall()
        problems += [f"foreign_key_check: {tuple(r)}" for r in orphans]
    return problems


async def _pg_rows(url: str) -> Snapshot:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        ops, execs, events = [
            [dict(r) for r in await conn.fetch(sql)] for sql in (_OPERATIONS, _EXECUTIONS, _EVENTS)
        ]
        tenant = dict(await conn.fetchrow(_TENANT) or {})
    finally:
        await conn.close()
    return _snapshot(ops, execs, events, tenant)


def postgres_snapshot(url: str) -> Snapshot:
    """The rows of a PostgreSQL database."""
    return asyncio.run(_pg_rows(url))


_AMCHECK = """
SELECT c.relname, bt_index_check(c.oid, true) FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.amname = 'btree' AND n.nspname = 'public' AND c.relpersistence != 't'
"""


async def _pg_integrity(url: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        checked = await conn.fetch(_AMCHECK)
    except asyncpg.PostgresError as exc:
        return [f"amcheck: {type(exc).__name__}: {exc}"]
    finally:
        await conn.close()
    return [] if checked else ["amcheck: no index checked"]


def postgres_integrity(url: str) -> list[str]:
    """``bt_index_check`` (amcheck, heap included) over every index (empty: clean)."""
    return asyncio.run(_pg_integrity(url))


# -- reconciliation -------------------------------------------------------------------------


def derived_state(counts: dict[str, int]) -> str:
    """An operation's state from its executions' states, as docs/architecture.md words it."""
    total = sum(counts.values())
    waiting = counts.get("scheduled", 0) + counts.get("queued", 0)
    if total and counts.get("scheduled", 0) == total:
        return "scheduled"
    if waiting == total:
        return "queued"
    if sum(counts.get(s, 0) for s in TERMINAL) < total:
        return "running"
    if counts.get("succeeded", 0) == total:
        return "succeeded"
    return "failed" if counts.get("failed", 0) + counts.get("timed_out", 0) else "cancelled"


@dataclasses.dataclass
class Reconciliation:
    """What held and what did not."""

    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)

    def fail(self, problem: str) -> None:
        """Record a problem."""
        self.problems.append(problem)

    @property
    def lost(self) -> int:
        """Acknowledged writes not found."""
        return int(self.figures.get("lost creates", 0)) + int(self.figures.get("lost PATCHes", 0))


def _check_creates(journal: Journal, snap: Snapshot, out: Reconciliation) -> None:
    by_key = {op["idempotency_key"]: op for op in snap.operations.values()}
    targets = collections.defaultdict(list)
    for e in snap.executions.values():
        targets[e["operation_id"]].append(e["target_id"])
    lost = 0
    for key, ack in journal.creates.items():
        op = snap.operations.get(ack["id"])
        if op is None:
            lost += 1
            out.fail(f"acknowledged create {key} ({ack['id']}) is missing")
            continue
        wanted = (key, {"key": key}, ack["number"], [ack["target"]])
        found = (op["idempotency_key"], op["parameters"], op["number"], targets[op["id"]])
        if wanted != found:
            out.fail(f"create {key}: acknowledged {wanted}, stored {found}")
    present = sum(1 for key in journal.unacked_creates if key in by_key)
    out.figures.update({
        "acknowledged creates": len(journal.creates),
        "unacknowledged creates": len(journal.unacked_creates),
        "unacknowledged creates present": present,
        "lost creates": lost,
    })  # fmt: skip


def _exec_events(snap: Snapshot) -> dict[tuple[str, int], dict[str, Any]]:
    """Execution events by (execution id, the version they record)."""
    return {
        (ev["execution_id"], int(ev["data"]["version"])): ev
        for ev in snap.events
        if ev["execution_id"] is not None
    }


def _check_patches(journal: Journal, snap: Snapshot, out: Reconciliation) -> None:
    events = _exec_events(snap)
    lost = 0
    for ack in journal.patches:
        stored = snap.executions.get(ack["exec"])
        event = events.get((ack["exec"], ack["version"]))
        if stored is None or event is None or stored["version"] < ack["version"]:
            lost += 1
            out.fail(f"acknowledged PATCH {ack} is missing (row {stored}, event {event})")
        elif (event["state"], event["progress"]) != (ack["state"], ack["progress"]):
            out.fail(f"PATCH {ack}: its event says {event['state']} {event['progress']}")
    landed = 0
    for sent in journal.unacked:
        event = events.get((sent["exec"], sent["expected"] + 1))
        landed += event is not None and event["state"] == sent["state"]
    out.figures.update({
        "acknowledged PATCHes": len(journal.patches),
        "unacknowledged PATCHes": len(journal.unacked),
        "unacknowledged PATCHes present": landed,
        "lost PATCHes": lost,
    })  # fmt: skip


def _check_events(snap: Snapshot, out: Reconciliation) -> None:
    """Seqs 1..event_seq without a gap; each execution's versions 2..version, in seq order."""
    seqs = [ev["seq"] for ev in snap.events]
    if seqs != list(range(1, snap.event_seq + 1)):
        missing = sorted(set(range(1, snap.event_seq + 1)) - set(seqs))
        out.fail(f"event seqs are not 1..{snap.event_seq}: missing {missing[:20]}")
    numbers = sorted(op["number"] for op in snap.operations.values())
    if numbers != list(range(1, snap.op_seq + 1)):
        out.fail(f"operation numbers are not 1..{snap.op_seq} ({len(numbers)} operations)")
    history: dict[str, list[int]] = collections.defaultdict(list)
    created: collections.Counter[str] = collections.Counter()
    dispatched: collections.Counter[tuple[str, int]] = collections.Counter()
    for ev in snap.events:
        if ev["execution_id"] is not None:
            history[ev["execution_id"]].append(int(ev["data"]["version"]))
            if ev["type"] == "execution.dispatched":
                dispatched[(ev["execution_id"], int(ev["data"]["attempt"]))] += 1
        elif ev["type"] == "operation.created":
            created[ev["operation_id"]] += 1
    for exec_id, e in snap.executions.items():
        if history.get(exec_id, []) != list(range(2, e["version"] + 1)):
            out.fail(f"execution {exec_id} v{e['version']}: event versions {history.get(exec_id)}")
    for op_id in snap.operations:
        if created[op_id] != 1:
            out.fail(f"operation {op_id} has {created[op_id]} operation.created events")
    doubles = [k for k, n in dispatched.items() if n > 1]
    for exec_id, attempt in doubles[:20]:
        times = dispatched[(exec_id, attempt)]
        out.fail(f"execution {exec_id} dispatched {times}x in attempt {attempt}")
    out.figures.update({"events": len(seqs), "double dispatches": len(doubles)})


def _check_derived(snap: Snapshot, out: Reconciliation) -> None:
    """Each operation's counts, total, progress and state match its executions."""
    by_op: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for e in snap.executions.values():
        by_op[e["operation_id"]].append(e)
    for op_id, op in snap.operations.items():
        execs = by_op[op_id]
        counts = collections.Counter(e["state"] for e in execs)
        wanted = {s: counts.get(s, 0) for s in STATES}
        stored = {s: int(op["counts"].get(s, 0)) for s in STATES}
        progress = sum(100.0 if e["state"] in TERMINAL else e["progress"] for e in execs)
        if (stored, op["total"], op["state"]) != (wanted, len(execs), derived_state(wanted)):
            out.fail(f"operation {op_id}: stored {op['state']} {stored} {op['total']}, "
                     f"executions say {derived_state(wanted)} {wanted}")  # fmt: skip
        elif abs(progress - op["progress_sum"]) > 1e-6:
            out.fail(f"operation {op_id}: progress_sum {op['progress_sum']} != {progress}")
    out.figures["operations"] = len(snap.operations)
    out.figures["operations succeeded"] = sum(
        op["state"] == "succeeded" for op in snap.operations.values()
    )


def _check_claims(journal: Journal, out: Reconciliation) -> None:
    """No (execution, attempt) acknowledged with a 2xx by two agents."""
    owners: dict[tuple[str, int], set[int]] = collections.defaultdict(set)
    for ack in journal.patches:
        if ack["state"] == "acknowledged":
            owners[(ack["exec"], ack["attempt"])].add(ack["agent"])
    doubles = {k: v for k, v in owners.items() if len(v) > 1}
    for (exec_id, attempt), agents in list(doubles.items())[:20]:
        out.fail(f"execution {exec_id} attempt {attempt} acknowledged by agents {sorted(agents)}")
    out.figures["claims acknowledged"] = len(owners)
    out.figures["double claims"] = len(doubles)


def reconcile(journal: Journal, snap: Snapshot, integrity: Sequence[str]) -> Reconciliation:
    """Every check of the module docstring; ``integrity`` is the store's own check's findings."""
    out = Reconciliation()
    _check_creates(journal, snap, out)
    _check_patches(journal, snap, out)
    _check_events(snap, out)
    _check_derived(snap, out)
    _check_claims(journal, out)
    for problem in integrity:
        out.fail(problem)
    out.figures["integrity"] = "clean" if not integrity else f"{len(integrity)} problems"
    return out


if __name__ == "__main__":
    main()
