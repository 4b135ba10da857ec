"""``opstatus agent``: pull a target's work and run a shell command per execution.

For each execution from the inbox (long-polled) the agent reports
``acknowledged`` then ``in_progress`` and runs the command through the shell. The
command gets the execution's parameters (JSON) three ways: on its standard input,
in the file named by ``OPSTATUS_PARAMETERS_FILE`` (removed when the command ends),
and — when they take at most :data:`ENV_LIMIT` bytes — in ``OPSTATUS_PARAMETERS``
(an environment holds little: a large document there makes the spawn fail). It also
gets ``OPSTATUS_EXECUTION_ID``, ``OPSTATUS_OPERATION_ID`` and ``OPSTATUS_TARGET``.
Each stdout line ``PROGRESS n`` becomes a progress report; the agent reports
``succeeded`` (exit 0) or ``failed`` with the output's tail. A command that cannot
be started at all is reported ``failed`` with the reason.

Liveness: every started execution has a heartbeat deadline that each report renews;
the agent re-reports ``in_progress`` every ``heartbeat`` seconds while the command
runs, so a long job stays alive and a dead agent's work is taken back by the engine.

Stopping (SIGTERM/SIGINT): the agent takes no new work and sends SIGTERM to the
running commands (their whole process group; SIGKILL after ``grace`` seconds), then
hands each execution back to the queue (``POST /v1/executions/{id}/release``: another
agent may take it, the attempt not spent) and exits 0.
Work delivered but not yet acknowledged returns to the queue when its lease lapses;
a killed agent's started work comes back when its heartbeat deadline passes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from opstatus.client import _exceptions as exc
from opstatus.client import _models as models
from opstatus.client._client import AsyncClient

log = logging.getLogger("opstatus.agent")
PROGRESS = re.compile(rb"^\s*PROGRESS\s+(\d+(?:\.\d+)?)\s*$")
TAIL_LINES = 20
TAIL_BYTES = 4096
STOPPED = "agent stopped (SIGTERM)"
#: largest parameters document (bytes of JSON) also passed in ``OPSTATUS_PARAMETERS``
ENV_LIMIT = 64 * 1024


def tail_text(lines: collections.deque[bytes]) -> str:
    """The last lines of output, at most TAIL_BYTES of them, as text."""
    data = b"\n".join(line.rstrip(b"\r\n") for line in lines)
    return data[-TAIL_BYTES:].decode("utf-8", "replace")


class Throttle:
    """Sends progress at most every ``interval`` seconds: the first at once, the last kept.

    A value arriving too soon after the previous send waits (replacing any value
    already waiting); :meth:`flush` sends what waits, so the last progress the
    command printed is always reported.
    """

    def __init__(self, send: Callable[[float], Awaitable[None]], interval: float) -> None:
        self._send, self.interval = send, interval
        self._pending: float | None = None
        self._last = -interval
        self._timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()  #: FIFO: reports go out in the order offered
        self._tasks: set[asyncio.Task[None]] = set()

    def offer(self, value: float) -> None:
        """Report ``value`` now, or as soon as the interval allows."""
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._pending = value  # a send is due: it will carry the newest value
            return
        delay = self._last + self.interval - time.monotonic()
        if delay <= 0:
            self._last = time.monotonic()
            self._tasks.add(task := loop.create_task(self._locked_send(value)))
            task.add_done_callback(self._tasks.discard)
        else:
            self._pending = value
            self._timer = loop.call_later(delay, self._due)

    def _due(self) -> None:
        self._tasks.add(task := asyncio.get_running_loop().create_task(self.flush()))
        task.add_done_callback(self._tasks.discard)

    async def _locked_send(self, value: float) -> None:
        async with self._lock:
            await self._send(value)

    async def flush(self) -> None:
        """Send the waiting value, if any, after the sends already under way."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        value, self._pending = self._pending, None
        if value is not None:
            self._last = time.monotonic()
            await self._locked_send(value)
        else:
            async with self._lock:  # let sends under way finish first
                pass

    async def drain(self) -> None:
        """Flush, and wait for every send under way (before the final report)."""
        await self.flush()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class Agent:
    """Runs ``command`` for each execution of ``target`` (see the module docstring)."""

    def __init__(
        self,
        client: AsyncClient,
        target: str,
        command: str,
        *,
        concurrency: int = 1,
        poll: float = 20.0,
        heartbeat: float = 20.0,
        progress_interval: float = 0.25,
        grace: float = 10.0,
    ) -> None:
        self.client, self.target, self.command = client, target, command
        self.concurrency, self.poll, self.heartbeat = concurrency, poll, heartbeat
        self.progress_interval, self.grace = progress_interval, grace
        self.stopping = asyncio.Event()
        self._jobs: dict[str, asyncio.Task[None]] = {}

    def stop(self) -> None:
        """Take no new work and end the running commands (the SIGTERM handler)."""
        self.stopping.set()

    async def run(self) -> None:
        """Pull and run work until :meth:`stop`; then wait for the jobs to be reported."""
        stop = asyncio.ensure_future(self.stopping.wait())
        backoff = 0.5
        try:
            while not self.stopping.is_set():
                free = self.concurrency - len(self._jobs)
                if free <= 0:
                    await asyncio.wait(
                        [stop, *self._jobs.values()], return_when=asyncio.FIRST_COMPLETED
                    )
                    continue
                pull = asyncio.ensure_future(
                    self.client.inbox(self.target, wait=self.poll, limit=free)
                )
                await asyncio.wait([stop, pull], return_when=asyncio.FIRST_COMPLETED)
                if not pull.done():
                    pull.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pull
                    break
                try:
                    items = pull.result()
                except exc.OpstatusError as error:
                    log.warning("inbox of %s: %s; retrying in %.1f s", self.target, error, backoff)
                    await asyncio.wait([stop], timeout=backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                backoff = 0.5
                for item in items:
                    if item.id not in self._jobs and len(self._jobs) < self.concurrency:
                        task = asyncio.create_task(self._job(item))
                        self._jobs[item.id] = task
                        task.add_done_callback(self._forget)
        finally:
            stop.cancel()
            if self._jobs:
                await asyncio.gather(*self._jobs.values(), return_exceptions=True)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._jobs = {k: t for k, t in self._jobs.items() if t is not task}

    async def _report(self, item: models.InboxItem, **fields: Any) -> bool:
        """Report; False when the server refuses (e.g. the execution was cancelled)."""
        try:
            await self.client.report(item.id, **fields)
        except exc.OpstatusError as error:
            log.warning("report on %s refused: %s", item.id, error)
            return False
        return True

    async def _job(self, item: models.InboxItem) -> None:
        try:
            await self._execute(item)
        except Exception:
            log.exception("execution %s", item.id)

    async def _execute(self, item: models.InboxItem) -> None:
        log.info("execution %s of operation %s: %s", item.id, item.operation_id, item.kind)
        if not await self._report(item, state="acknowledged", expected_version=item.version):
            return
        if not await self._report(item, state="in_progress"):
            return
        with parameters_file(item) as path:
            try:
                proc = await asyncio.create_subprocess_shell(
                    self.command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env={**os.environ, **environment(item, path)},
                    start_new_session=True,  # its own process group: SIGTERM reaches children
                )
            except OSError as error:  # nothing ran: say so, never leave the work hanging
                log.warning("execution %s: the command could not start: %s", item.id, error)
                await self._report(item, state="failed", error=f"could not start: {error}")
                return
            feeding = asyncio.create_task(_feed(proc, item))
            ending = await _Run(self, item, proc).finish()
            feeding.cancel()
        fields = final_report(ending)
        if ending.interrupted and not ending.lost:
            await self._give_back(item, ending)
        elif fields is None:
            log.info("execution %s ended on the server; command stopped", item.id)
        else:
            await self._report(item, **fields)
        log.info("execution %s finished: exit code %s", item.id, ending.code)

    async def _give_back(self, item: models.InboxItem, ending: Ending) -> None:
        """The agent is stopping: hand the unfinished work back to the queue (another
        agent may take it, the attempt not spent); if the server refuses, report it
        failed so it does not wait for its heartbeat to lapse."""
        try:
            await self.client.release(item.id)
            log.info("execution %s handed back to the queue (agent stopping)", item.id)
        except exc.OpstatusError as error:
            log.warning("execution %s could not be handed back: %s", item.id, error)
            result = {"exit_code": ending.code, "output_tail": ending.tail}
            await self._report(item, state="failed", error=STOPPED, result=result)

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM the command's process group; SIGKILL after ``grace`` seconds."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), self.grace)
                return
            except TimeoutError:
                continue


def environment(item: models.InboxItem, parameters_path: str) -> dict[str, str]:
    """What the command learns of its execution, as environment variables."""
    env = {
        "OPSTATUS_PARAMETERS_FILE": parameters_path,
        "OPSTATUS_EXECUTION_ID": item.id,
        "OPSTATUS_OPERATION_ID": item.operation_id,
        "OPSTATUS_TARGET": item.target,
    }
    document = json.dumps(item.parameters)
    if len(document.encode()) <= ENV_LIMIT:
        env["OPSTATUS_PARAMETERS"] = document
    return env


@contextlib.contextmanager
def parameters_file(item: models.InboxItem) -> Iterator[str]:
    """A private file holding the execution's parameters, removed afterwards."""
    fd, path = tempfile.mkstemp(prefix="opstatus-parameters-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(item.parameters, out)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


async def _feed(proc: asyncio.subprocess.Process, item: models.InboxItem) -> None:
    """The parameters on the command's stdin; a command that never reads them is fine."""
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(json.dumps(item.parameters).encode())
        await proc.stdin.drain()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
        proc.stdin.close()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ending:
    """How a command's run ended."""

    code: int  #: its exit code (negative: the signal that ended it)
    interrupted: bool  #: the agent stopped it (SIGTERM to the agent)
    lost: bool  #: the server stopped taking reports on the execution (cancelled, timed out)
    tail: str  #: the end of its output


def final_report(ending: Ending) -> dict[str, Any] | None:
    """The report that closes the execution after its command ended; None: send none.

    Lost work is over on the server already, so nothing is left to say about it.
    """
    if ending.lost:
        return None
    result = {"exit_code": ending.code, "output_tail": ending.tail}
    if ending.interrupted:
        return None  # the agent stopped it: the work goes back to the queue (_give_back)
    if ending.code == 0:
        return {"state": "succeeded", "progress": 100.0, "result": result}
    return {"state": "failed", "error": ending.tail or f"exit code {ending.code}", "result": result}


class _Run:
    """One command run for one execution: its output, its progress and its heartbeat."""

    def __init__(
        self, agent: Agent, item: models.InboxItem, proc: asyncio.subprocess.Process
    ) -> None:
        self.agent, self.item, self.proc = agent, item, proc
        self.output: collections.deque[bytes] = collections.deque(maxlen=TAIL_LINES)
        self.lost = asyncio.Event()  #: the server no longer takes reports
        self.throttle = Throttle(self._progress, agent.progress_interval)

    async def _still_in_progress(self, **fields: Any) -> None:
        if not await self.agent._report(self.item, state="in_progress", **fields):
            self.lost.set()

    async def _progress(self, value: float) -> None:
        await self._still_in_progress(progress=value)

    async def _read(self, stream: asyncio.StreamReader | None, progress: bool) -> None:
        """Keep the output's tail; ``PROGRESS n`` lines of stdout become progress reports."""
        assert stream is not None
        async for line in stream:
            self.output.append(line)
            match = PROGRESS.match(line) if progress else None
            if match:
                self.throttle.offer(min(100.0, float(match.group(1))))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.agent.heartbeat)
            await self._still_in_progress()

    async def finish(self) -> Ending:
        """Wait for the command to exit, or end it when the agent stops or the work is lost."""
        proc = self.proc
        readers = asyncio.gather(self._read(proc.stdout, True), self._read(proc.stderr, False))
        heart = asyncio.create_task(self._beat())
        stop = asyncio.ensure_future(self.agent.stopping.wait())
        gone = asyncio.ensure_future(self.lost.wait())
        exited = asyncio.ensure_future(proc.wait())
        try:
            await asyncio.wait([exited, stop, gone], return_when=asyncio.FIRST_COMPLETED)
            interrupted = not exited.done()
            if interrupted:
                await self.agent._terminate(proc)
            code = await exited
            await readers
        finally:
            for task in (heart, stop, gone):
                task.cancel()
        await self.throttle.drain()
        return Ending(
            code=code, interrupted=interrupted, lost=self.lost.is_set(), tail=tail_text(self.output)
        )


async def serve_agent(
    url: str | None,
    key: str | None,
    target: str,
    command: str,
    *,
    concurrency: int = 1,
    heartbeat: float = 20.0,
    poll: float = 20.0,
) -> None:
    """Run an agent until SIGTERM or SIGINT (the ``opstatus agent`` command)."""
    async with AsyncClient(url, key) as client:
        agent = Agent(
            client, target, command, concurrency=concurrency, heartbeat=heartbeat, poll=poll
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        log.info("agent for target %s on %s", target, client.url)
        await agent.run()
