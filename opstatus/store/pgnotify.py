"""Cross-replica wake-ups over PostgreSQL LISTEN/NOTIFY.

Every process LISTENs on one channel on a dedicated connection; keys a process
publishes are coalesced and sent with ``pg_notify`` right after the commit that
caused them. A lost notification costs latency, never data: waiters re-read the
database when they wake or time out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec

CHANNEL = "opstatus"
#: prefix of the keys sent when API keys change (a revoke sends ``keys:{tenant}``)
KEYS_PREFIX = "keys:"
#: origin of messages sent by SQL inside a transaction rather than by a process
DATABASE_ORIGIN = "db"
#: longest a write's answer waits for its change notices to leave (``sent``), seconds
SENT_WAIT = 2.0
#: prefix of the keys a process sends itself to catch up (``caught_up``)
SYNC_PREFIX = "sync:"
#: longest ``caught_up`` waits for its own notice to come back, seconds
SYNC_WAIT = 1.0
MAX_PAYLOAD = 7000  #: bytes; PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
log = logging.getLogger("opstatus.notify")


class _Message(msgspec.Struct):
    o: str  #: origin: the sending process
    k: list[str]  #: keys


class PostgresChannel:
    """Relay notifier keys between the processes that share one database."""

    def __init__(self, dsn: str, on_keys: Callable[[list[str]], None]) -> None:
        self.dsn = dsn
        self.on_keys = on_keys
        self.origin = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._pending: dict[str, None] = {}
        self._flush = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = asyncio.Event()
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(_Message)
        #: whether the LISTEN connection is up right now
        self.listening = False
        #: moves on every (re)connect, loss and key change: a value that holds only
        #: while no revoke can have been missed (Store.auth_epoch on PostgreSQL)
        self.generation = 0
        #: batches queued by ``send`` and batches the sender has finished with
        self._queued = 0
        self._done = 0
        self._progress = asyncio.Event()
        #: the catch-up round in flight (its key and future), and the one after it
        self._round: tuple[str, asyncio.Future[bool]] | None = None
        self._next: asyncio.Future[bool] | None = None
        self._rounds = 0

    def send(self, keys: list[str]) -> None:
        """Queue keys for the other processes (sent on the next loop iteration)."""
        self._pending.update(dict.fromkeys(keys))
        self._queued += 1
        self._flush.set()

    async def sent(self) -> None:
        """Return once every key queued so far has been notified (or its NOTIFY failed,
        which is logged), or after :data:`SENT_WAIT` seconds.

        A write's answer waits for this, so by the time its client hears back, the other
        replicas' listeners have been sent the change: a read there after the write
        finds their cached body of it gone (web/reads.py).
        """
        wanted = self._queued
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SENT_WAIT
        while self._done < wanted and self._tasks and not self._tasks[-1].done():
            left = deadline - loop.time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), left)

    async def start(self) -> None:
        """Connect the listener (waits until it listens) and start the sender."""
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="opstatus-listen"),
            asyncio.create_task(self._send_forever(), name="opstatus-notify"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 10)

    async def stop(self) -> None:
        """Stop both tasks and close their connections."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def caught_up(self) -> bool:
        """True once every notification committed before this call has been received
        and handled here; False when that cannot be known within :data:`SYNC_WAIT`
        (the channel is down or slow).

        The process notifies itself and waits for that notice to come back: PostgreSQL
        delivers notifications in commit order, so by then every earlier one has been
        handled (their callbacks run first, in order). Callers share rounds: one that
        comes while a round is in flight joins the next, which starts when it ends —
        one round trip serves every read waiting meanwhile.
        """
        if not self.listening:
            return False
        if self._round is None:
            future = self._start_round()
        else:
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            future = self._next
        try:
            return await future  # shared: no shield, no timer per caller (the round has one)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this caller was cancelled
            return False  # another caller's cancellation reached the shared future

    def _start_round(self, future: asyncio.Future[bool] | None = None) -> asyncio.Future[bool]:
        loop = asyncio.get_running_loop()
        future = future if future is not None else loop.create_future()
        self._rounds += 1
        key = f"{SYNC_PREFIX}{self._rounds}"
        self._round = (key, future)
        loop.call_later(SYNC_WAIT, self._expire_round, key)
        self.send([key])
        return future

    def _expire_round(self, key: str) -> None:
        """A round's notice did not come back in time: it and the next fail."""
        if self._round is not None and self._round[0] == key:
            self._end_rounds(False)

    def _end_rounds(self, caught_up: bool) -> None:
        """The round in flight came back (or the channel went down: every round fails)."""
        current, self._round = self._round, None
        if current is not None and not current[1].done():
            current[1].set_result(caught_up)
        following, self._next = self._next, None
        if following is None:
            return
        if caught_up:
            self._start_round(following)
        elif not following.done():
            following.set_result(False)

    def _received(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        try:
            message = self._decoder.decode(str(payload))
        except msgspec.DecodeError:
            log.warning("ignored a malformed notification on %s", channel)
            return
        if any(key.startswith(KEYS_PREFIX) for key in message.k):
            self.generation += 1
        if message.o != self.origin:
            self.on_keys([key for key in message.k if not key.startswith(SYNC_PREFIX)])
        elif self._round is not None and self._round[0] in message.k:
            self._end_rounds(True)

    async def _listen_forever(self) -> None:
        backoff = 0.1
        while True:
            conn: asyncpg.Connection[Any] | None = None
            try:
                conn = await asyncpg.connect(self.dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._received)
                self.generation += 1  # what was missed while not listening is forgotten
                self.listening = True
                self._listening.set()
                backoff = 0.1
                await lost.wait()
                log.warning("LISTEN connection lost; reconnecting")
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("LISTEN failed (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)
            finally:
                self.listening = False
                self.generation += 1
                self._end_rounds(False)
                if conn is not None and not conn.is_closed():
                    await conn.close(timeout=2)

    async def _send_forever(self) -> None:
        conn: asyncpg.Connection[Any] | None = None
        try:
            while True:
                await self._flush.wait()
                self._flush.clear()
                keys, self._pending, batch = list(self._pending), {}, self._queued
                try:
                    if conn is None or conn.is_closed():
                        conn = await asyncpg.connect(self.dsn)
                    for payload in self._payloads(keys):
                        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("NOTIFY failed (%s); other replicas wake on timeout", exc)
                    conn = None
                finally:
                    self._done = batch
                    progress, self._progress = self._progress, asyncio.Event()
                    progress.set()
        finally:
            if conn is not None and not conn.is_closed():
                await conn.close(timeout=2)

    @staticmethod
    def keys_changed(tenant: str) -> str:
        """The payload SQL sends (``pg_notify``) in the transaction that revokes a key."""
        return msgspec.json.encode(_Message(o=DATABASE_ORIGIN, k=[KEYS_PREFIX + tenant])).decode()

    def _payloads(self, keys: list[str]) -> list[str]:
        """Split keys into messages under PostgreSQL's payload limit."""
        out: list[str] = []
        batch: list[str] = []
        size = 0
        for key in keys:
            if batch and size + len(key) + 4 > MAX_PAYLOAD - 64:
                out.append(self._encoder.encode(_Message(o=self.origin, k=batch)).decode())
                batch, size = [], 0
            batch.append(key)
            size += len(key) + 4
        if batch:
            out.append(self._encoder.encode(_Message(o=self.origin, k=batch)).decode())
        return out
