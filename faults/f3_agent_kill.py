"""F3: an agent SIGKILLed with work in hand; the work must come back and finish.

Three ways an agent dies, each timed from the operation's own event history
(``GET /v1/operations/{id}/events``; the server's clock is this host's):

* **lease** — a minimal agent claims work (``dispatched``, lease L) and is killed
  before acknowledging it. Nobody reads the target's inbox until the lease has
  run out: the engine must queue the work again with attempt 2 about L after the
  claim; a replacement ``opstatus agent`` then claims attempt 2 and completes it.
* **redelivery** — the same death, but the replacement starts at once: held
  (claimed, unacknowledged) work is redelivered to the next inbox read, so it
  must be taken up well before its (long) lease runs out, still in attempt 1.
* **run timeout** — the real ``opstatus agent`` acknowledges at once, so a kill
  mid-run leaves the execution ``in_progress``, where the operation's *run*
  timeout R applies (leases only cover dispatched work): it must time out R after
  the start, be queued again (attempt 2) after the 1 s retry backoff and be
  claimed by a second agent already waiting on the inbox.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import (
    BIN,
    Options,
    agent_key,
    expect,
    http,
    opstatus,
    pinned,
    postgres_database,
    register_targets,
    sqlite_database,
)
from faults.common import Outcome

SCENARIO = "F3"
TITLE = "agent SIGKILL: lease and run-timeout recovery"
GOAL = (
    "a killed agent's claimed work is queued again (attempt 2) within lease + 1 s of the "
    "claim, or times out within run timeout + 1 s of the start and is queued again after the "
    "1 s backoff (+1 s), then finished by another agent; a replacement started at once gets "
    "held work back well within its lease; every operation succeeds"
)
LEASE = 2.0  #: seconds, the short lease of the lease case
LONG_LEASE = 30.0  #: the redelivery case's lease: redelivery must not wait for it
RUN_TIMEOUT = 5.0  #: seconds, the run timeout of the run-timeout case
ORPHAN_WAIT = 2.0  #: seconds to wait for a killed agent's command to name itself
BACKOFF = 1.0  #: the engine's wait before the first retry (domain.deadlines.backoff(1))
SLACK = 1.0  #: engine sweep interval (0.25 s) and a loaded machine's scheduling
WAIT_LIMIT = 30.0  #: longest wait for any one event

#: a minimal agent: claim once, print the item, then "work" without acknowledging
CLAIMER = """
import json, sys, time, urllib.request
url, key, target = sys.argv[1:4]
request = urllib.request.Request(f"{url}/v1/targets/{target}/inbox?wait=10",
                                 headers={"X-API-Key": key})
with urllib.request.urlopen(request, timeout=30) as answer:
    items = json.load(answer)["items"]
print(json.dumps(items[0] if items else None), flush=True)
time.sleep(3600)
"""


class Site:
    """One server with one target and its agent key, and the agent processes started on it."""

    def __init__(self, url: str, target: str, opts: Options, folder: Path) -> None:
        self.url, self.target, self.opts, self.folder = url, target, opts, folder
        register_targets(url, [target])
        self.key = agent_key(url, [target], name=f"{target}-agent")
        self.procs: list[subprocess.Popen[bytes]] = []

    def create(self, **timeouts: float) -> str:
        """A new operation on the target (retries=1); its id."""
        body = {"kind": "f3", "targets": [self.target], "timeouts": timeouts, "retries": 1}
        made = expect(*http("POST", f"{self.url}/v1/operations", body=body), 202)
        op_id: str = made["id"]
        return op_id

    def claimer(self) -> subprocess.Popen[bytes]:
        """The minimal agent, once it has claimed."""
        argv = [sys.executable, "-c", CLAIMER, self.url, self.key, self.target]
        proc = subprocess.Popen(pinned(self.opts.load_cpu, argv), stdout=subprocess.PIPE)
        self.procs.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() in (b"", b"null"):
            raise SystemExit("the minimal agent claimed nothing")
        return proc

    def agent(self, command: str, name: str) -> subprocess.Popen[bytes]:
        """The real ``opstatus agent`` for the target, running ``command`` per execution."""
        argv = [str(BIN / "opstatus"), "agent", "--url", self.url, "--key", self.key,
                "--target", self.target, "--exec", command, "--poll", "5"]  # fmt: skip
        with (self.folder / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                pinned(self.opts.load_cpu, argv), stdout=log, stderr=subprocess.STDOUT,
                cwd=self.folder,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        """SIGTERM (then SIGKILL) every agent process this site started."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()

    def when(self, op_id: str, type_: str, attempt: int) -> float | None:
        """Unix time of the operation's first ``type_`` event of ``attempt`` (waits for it)."""
        deadline = time.monotonic() + WAIT_LIMIT
        while time.monotonic() < deadline:
            page = expect(*http("GET", f"{self.url}/v1/operations/{op_id}/events?limit=1000"), 200)
            for ev in page["items"]:
                if ev["type"] == type_ and ev["data"].get("attempt") == attempt:
                    return _unix(ev["created_at"])
            time.sleep(0.05)
        return None


def _unix(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _kill(proc: subprocess.Popen[bytes]) -> float:
    """SIGKILL ``proc``; the moment it was sent."""
    at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return at


def _pid(path: Path, wait: float) -> int | None:
    """The pid the agent's command wrote to ``path`` (waits up to ``wait`` seconds for it)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text())
        time.sleep(0.02)
    return None


def _gap(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 3)


def lease_case(site: Site) -> dict[str, Any]:
    """Claimed, killed before acknowledging; the lease runs out; a replacement finishes it."""
    op = site.create(lease=LEASE)
    claimer = site.claimer()
    claimed = site.when(op, "execution.dispatched", 1)
    killed = _kill(claimer)
    released = site.when(op, "execution.queued", 2)
    site.agent("echo PROGRESS 100", "lease-replacement")
    reclaimed = site.when(op, "execution.dispatched", 2)
    done = site.when(op, "execution.succeeded", 2)
    held = _gap(claimed, released)
    return {
        "claim to lease release s": held,
        "kill to re-claim s": _gap(killed, reclaimed),
        "ok": held is not None and LEASE <= held <= LEASE + SLACK and done is not None,
    }


def redelivery_case(site: Site) -> dict[str, Any]:
    """Claimed, killed before acknowledging; a replacement started at once gets it back."""
    op = site.create(lease=LONG_LEASE)
    claimer = site.claimer()
    killed = _kill(claimer)
    site.agent("echo PROGRESS 100", "redelivery-replacement")
    taken = site.when(op, "execution.acknowledged", 1)
    done = site.when(op, "execution.succeeded", 1)
    gap = _gap(killed, taken)
    return {
        "kill to redelivered s": gap,
        "ok": gap is not None and gap < LONG_LEASE / 2 and done is not None,
    }


def run_timeout_case(site: Site) -> dict[str, Any]:
    """The real agent killed mid-run: run timeout, retry backoff, a waiting agent takes it."""
    pidfile = site.folder / "command.pid"
    first = site.agent(f"echo $$ > {pidfile}; echo PROGRESS 10; exec sleep 120", "first")
    op = site.create(lease=LEASE, run=RUN_TIMEOUT)
    started = site.when(op, "execution.dispatched", 1)
    running = site.when(op, "execution.in_progress", 1)
    killed = _kill(first)
    command = _pid(pidfile, ORPHAN_WAIT)
    if command is not None:  # its command runs in its own session: it outlives the agent
        with contextlib.suppress(OSError):
            os.kill(command, signal.SIGKILL)
    site.agent("echo PROGRESS 100", "second")
    timed_out = site.when(op, "execution.timed_out", 1)
    requeued = site.when(op, "execution.queued", 2)
    reclaimed = site.when(op, "execution.dispatched", 2)
    done = site.when(op, "execution.succeeded", 2)
    ran = _gap(started, timed_out)
    backoff = _gap(timed_out, requeued)
    return {
        "start to run timeout s": ran,
        "timeout to re-queued s": backoff,
        "kill to re-claim s": _gap(killed, reclaimed),
        "ok": running is not None and ran is not None and backoff is not None
        and timed_out is not None and killed < timed_out
        and RUN_TIMEOUT <= ran <= RUN_TIMEOUT + SLACK and BACKOFF <= backoff <= BACKOFF + SLACK
        and _gap(started, reclaimed) is not None and done is not None,
    }  # fmt: skip


CASES: dict[str, Callable[[Site], dict[str, Any]]] = {
    "lease": lease_case,
    "redelivery": redelivery_case,
    "run timeout": run_timeout_case,
}
NOTES = (
    f"lease: a minimal agent claims (lease {LEASE:g} s) and is SIGKILLed before acknowledging; "
    "no one reads the inbox until the work is queued again (attempt 2), then a replacement "
    "`opstatus agent` starts, claims and finishes it (kill to re-claim includes its start-up)",
    f"redelivery: the same kill with a {LONG_LEASE:g} s lease, the replacement started at once: "
    "the held execution is redelivered to its first inbox read (attempt 1, no lease wait)",
    f"run timeout: `opstatus agent` acknowledges, reports progress and is SIGKILLed mid-command "
    f"(run timeout {RUN_TIMEOUT:g} s, retries 1); a second agent already long-polls the inbox",
)


def rounds(opts: Options, label: str) -> int:
    """Three rounds on SQLite; one on PostgreSQL, which shares the engine's code (quick: one)."""
    return 1 if opts.quick or label != "SQLite" else 3


def _rounds(
    url: str, opts: Options, label: str
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Every case ``rounds(opts, label)`` times on one server; results and agent log tails."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in CASES}
    tails: list[str] = []
    for n in range(rounds(opts, label)):
        for name, case in CASES.items():
            with tempfile.TemporaryDirectory(prefix="f3-") as folder:
                site = Site(url, f"f3-{name.replace(' ', '-')}-{n}", opts, Path(folder))
                try:
                    results[name].append(case(site))
                finally:
                    site.stop_all()
                if not results[name][-1]["ok"]:
                    for log in sorted(Path(folder).glob("*.log")):
                        tail = log.read_text(errors="replace").splitlines()[-5:]
                        tails.append(f"{label} {name} round {n + 1} {log.stem}: {' | '.join(tail)}")
    return results, tails


@contextlib.contextmanager
def _stores(opts: Options) -> Iterator[list[tuple[str, str]]]:
    with contextlib.ExitStack() as stack:
        found = [("SQLite", stack.enter_context(sqlite_database(opts, "f3.db")))]
        if opts.postgres:
            found.append(
                ("PostgreSQL", stack.enter_context(postgres_database(opts.postgres, "f3")))
            )
        yield found


def _median(values: list[Any]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 2) if known else None


def run(opts: Options) -> Outcome:
    """Every case on SQLite (and PostgreSQL when there is one)."""
    outcome = Outcome(scenario=SCENARIO, title=TITLE, goal=GOAL, passed=True)
    outcome.figures.update({"lease s": LEASE, "run timeout s": RUN_TIMEOUT})
    outcome.details += NOTES
    with _stores(opts) as stores:
        for label, database in stores:
            with opstatus(database, cpu=opts.server_cpu, name="f3") as server:
                results, tails = _rounds(server.url, opts, label)
            for name, rounds in results.items():
                outcome.passed = outcome.passed and all(r["ok"] for r in rounds)
                for figure in rounds[0]:
                    if figure != "ok":
                        values = [r[figure] for r in rounds]
                        outcome.figures[f"{label} {name}: {figure} (median)"] = _median(values)
                        outcome.details.append(f"{label} {name}: {figure}: {values}")
                held = sum(r["ok"] for r in rounds)
                outcome.details.append(f"{label} {name}: {held} of {len(rounds)} rounds held")
            outcome.details += tails
    return outcome
