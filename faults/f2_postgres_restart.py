"""F2: PostgreSQL restarted with ``-m immediate`` (a crash) under create/claim/PATCH load.

The shared cluster on 5432 is never touched: the scenario makes a private
cluster (``initdb`` as the ``postgres`` OS user into a temporary directory, on a
free port), runs one ``opstatus serve`` on it with the load of
:mod:`faults.load` (creators, and two agents per target claiming from the same
inboxes), and crash-restarts PostgreSQL mid-load. It measures how long until
``/readyz`` and writes succeed again, tallies the answers given during the
outage, checks that the same opstatus process (same pid) carried on, and
reconciles every acknowledged write (no loss, no execution claimed twice).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import glob
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import (
    ADMIN_KEY,
    Options,
    Server,
    agent_key,
    free_port,
    http,
    register_targets,
    start_opstatus,
)
from faults import load
from faults.common import Outcome

SCENARIO = "F2"
TITLE = "PostgreSQL immediate restart under load"
GOAL = (
    "0 acknowledged writes lost, 0 double claims, the same opstatus process recovers "
    "(/readyz 200), outage errors are 503 or connection failures"
)
TARGETS = 4
OS_USER = "postgres"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A private PostgreSQL cluster run by the ``postgres`` OS user."""

    bin: Path
    data: Path
    sockets: Path
    log: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str, timeout: float = 120) -> None:
        """``pg_ctl`` as the postgres user; SystemExit with its output on failure."""
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1"
        argv = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w"]
        _as_postgres([*argv, "-t", str(int(timeout)), "-o", options, *args])


def _as_postgres(argv: list[str]) -> None:
    done = subprocess.run(
        ["runuser", "-u", OS_USER, "--", *argv], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


@contextlib.contextmanager
def private_cluster() -> Iterator[Cluster]:
    """initdb + start a throw-away cluster on a free port; stopped and removed afterwards."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise SystemExit("no initdb under /usr/lib/postgresql/*/bin")
    bin_dir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="faults-f2-pg-"))
    cluster = Cluster(bin_dir, root / "data", root / "sockets", root / "postgres.log", free_port())
    try:
        cluster.sockets.mkdir()
        for path in (root, cluster.sockets):
            shutil.chown(path, OS_USER, OS_USER)
        _as_postgres([str(bin_dir / "initdb"), "-D", str(cluster.data), "-U", "postgres",
                      "-A", "trust", "--no-sync", "-E", "UTF8"])  # fmt: skip
        cluster.ctl("start")
        try:
            yield cluster
        finally:
            with contextlib.suppress(SystemExit):
                cluster.ctl("-m", "immediate", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _ready_after(server: Server, since: float, deadline: float = 60.0) -> float | None:
    """Seconds from ``since`` until /readyz answers 200 (None: not within ``deadline``)."""
    while time.time() - since < deadline:
        with contextlib.suppress(OSError):
            if http("GET", f"{server.url}/readyz", key=None, timeout=2)[0] == 200:
                return time.time() - since
        time.sleep(0.02)
    return None


def _writes(journal: load.Journal, start: float, end: float) -> list[dict[str, Any]]:
    """Creates and PATCHes sent in [start, end), in the order sent."""
    found = (r for r in journal.requests if r["op"] != "inbox" and start <= r["t0"] < end)
    return sorted(found, key=lambda r: r["t0"])


def _failed(r: dict[str, Any]) -> bool:
    return not (200 <= r["status"] < 500)


def _recovery(journal: load.Journal, restart: dict[str, Any], end: float) -> dict[str, Any]:
    """One restart seen from the load: when writes succeeded again after PostgreSQL was back
    up, the answers during the outage, and writes that failed after that (before ``end``)."""
    at, up = restart["at"], restart["at"] + restart["postgres up after"]
    first = next((r for r in _writes(journal, up, end) if 200 <= r["status"] < 300), None)
    back = None if first is None else first["t1"]
    late = [r for r in _writes(journal, back or end, end) if _failed(r) and r["t1"] < end]
    return {
        "writes back after": None if back is None else back - at,
        "outage": journal.statuses(at, back or end),
        "failed after": len(late),
        "answers": journal.statuses(at, end),
    }


def _restarts(cluster: Cluster, server: Server, count: int, gap: float) -> list[dict[str, Any]]:
    """Crash-restart PostgreSQL ``count`` times, ``gap`` seconds of load apart."""
    done = []
    for _ in range(count):
        time.sleep(gap)
        started = time.time()
        cluster.ctl("-m", "immediate", "restart")
        up = time.time() - started
        ready = _ready_after(server, started)
        done.append({"at": started, "postgres up after": up, "readyz after": ready})
    time.sleep(gap)
    return done


def _storm(cluster: Cluster, opts: Options, journal_path: Path) -> dict[str, Any]:
    """opstatus + load on the private cluster, crash-restarted mid-load."""
    server = start_opstatus(cluster.url, cpu=opts.server_cpu, name="f2")
    pid = server.pid
    try:
        targets = [f"f2-t{i}" for i in range(TARGETS)]
        register_targets(server.url, targets)
        cfg = load.LoadConfig(
            url=server.url, admin_key=ADMIN_KEY, agent_key=agent_key(server.url, targets),
            targets=targets, journal=journal_path, kind="f2", creators=2, agents=2 * TARGETS,
        )  # fmt: skip
        proc = load.start_load(cfg, opts.load_cpu)
        try:
            restarts = _restarts(cluster, server, opts.pick(3, 1), opts.pick(5.0, 2.0))
        finally:
            load.stop_load(proc)
        alive = server.proc.poll() is None and server.pid == pid
        ready = http("GET", f"{server.url}/readyz", key=None)[0]
        log = server.log.read_text(errors="replace")
    finally:
        server.stop()
        server.log.unlink(missing_ok=True)
    return {"restarts": restarts, "alive": alive, "readyz": ready, "pid": pid, "log": log}


def _judge(storm: dict[str, Any], journal: load.Journal, result: load.Reconciliation) -> Outcome:
    """The outcome from the storm's record and the reconciliation."""
    restarts = storm["restarts"]
    ends = [r["at"] for r in restarts[1:]] + [float("inf")]
    seen = [_recovery(journal, r, end) for r, end in zip(restarts, ends, strict=True)]
    outage: collections.Counter[str] = collections.Counter()
    bad: collections.Counter[str] = collections.Counter()
    for one in seen:
        outage.update(one["outage"])
        bad.update({c: n for c, n in one["answers"].items() if c.startswith("5") and c != "503"})
    backs = [one["writes back after"] for one in seen]
    tracebacks = storm["log"].count("Traceback")
    recovered = storm["alive"] and storm["readyz"] == 200 and None not in backs
    passed = recovered and result.lost == 0 and not result.problems and not bad
    figures: dict[str, Any] = {
        "restarts": len(restarts),
        "postgres down+up, max s": round(max(r["postgres up after"] for r in restarts), 2),
        "/readyz 200 again after, max s": _worst([r["readyz after"] for r in restarts]),
        "writes succeed again after, max s": _worst(backs),
        "writes failed after that": sum(one["failed after"] for one in seen),
        "acknowledged writes": journal.acknowledged(),
        "lost": result.lost,
        "double claims": result.figures["double claims"],
        "double dispatches": result.figures["double dispatches"],
        "same process": storm["alive"],
        "outage answers": dict(sorted(outage.items())),
    }
    details = [
        f"opstatus pid {storm['pid']} served throughout: {storm['alive']}; "
        f"/readyz after the load: {storm['readyz']}; tracebacks in its log: {tracebacks}",
        "times are from the restart command; 'writes back' is the answer to the first write "
        "sent after PostgreSQL was up again that succeeded",
        *(f"restart {i + 1}: postgres up after {r['postgres up after']:.2f} s, /readyz 200 "
          f"after {_round(r['readyz after'])} s, writes back after "
          f"{_round(one['writes back after'])} s, answers until then {one['outage']}, "
          f"writes failed after that {one['failed after']}"
          for i, (r, one) in enumerate(zip(restarts, seen, strict=True))),
        "reconciliation: " + ", ".join(f"{k} {v}" for k, v in result.figures.items()),
        *(f"PROBLEM: {p}" for p in result.problems[:20]),
    ]  # fmt: skip
    if bad:
        details.append(
            f"PROBLEM: answers other than 503 or no connection while PostgreSQL restarted: "
            f"{dict(bad)} (database errors answer 500, see the log)"
        )
    return Outcome(
        scenario=SCENARIO, title=TITLE, goal=GOAL, passed=passed, figures=figures, details=details
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _worst(values: list[float | None]) -> float | None:
    """The largest of ``values``; None (never) if any is None."""
    return None if None in values else _round(max(v for v in values if v is not None))


def run(opts: Options) -> Outcome:
    """The crash-restart storm on a private cluster, reconciled."""
    try:
        with private_cluster() as cluster, tempfile.TemporaryDirectory(prefix="f2-") as folder:
            journal_path = Path(folder) / "journal.jsonl"
            storm = _storm(cluster, opts, journal_path)
            journal = load.read_journal(journal_path)
            snapshot = load.postgres_snapshot(cluster.url)
            result = load.reconcile(journal, snapshot, load.postgres_integrity(cluster.url))
    except SystemExit as exc:  # no private cluster here: say precisely why
        return Outcome(
            scenario=SCENARIO, title=TITLE, goal=GOAL, passed=False,
            details=[f"could not run: {exc}"],
        )  # fmt: skip
    return _judge(storm, journal, result)
