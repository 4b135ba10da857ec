"""Cross-replica wake-ups over PostgreSQL LISTEN/NOTIFY, and knowing that every change
made elsewhere has been heard (``caught_up``, for the read cache).

Every process LISTENs on one channel on a dedicated connection; keys a process
publishes are coalesced and sent with ``pg_notify`` right after the commit that
caused them. A lost notification costs latency, never data: waiters re-read the
database when they wake or time out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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
#: a process starting next to others says so (``hello:``); each answers ``ack:{origin}``
HELLO_PREFIX = "hello:"
ACK_PREFIX = "ack:"
#: keys between channels, never relayed to the notifier
INTERNAL = (SYNC_PREFIX, HELLO_PREFIX, ACK_PREFIX)
#: longest a starting process waits for the others' acks, seconds
HELLO_WAIT = 2.0
#: the advisory lock every listening connection holds (shared), so a starting process
#: can list the others: ``pg_advisory_lock_shared(LOCK_KEY)``
LOCK_KEY = 0x6F707374
_OTHERS = """
SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND classid = 0 AND objid = $1::bigint::oid AND objsubid = 1
  AND granted AND pid <> pg_backend_pid()
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
MAX_PAYLOAD = 7000  #: bytes; PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
log = logging.getLogger("opstatus.notify")


class _Message(msgspec.Struct):
    o: str  #: origin: the sending process
    k: list[str]  #: keys


@dataclasses.dataclass(slots=True)
class _Round:
    """One catch-up round: the key it notifies, the future its callers wait on."""

    key: str
    future: asyncio.Future[bool]
    sent: bool = False  #: its notice has left: a caller from now on needs the next round


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
        self._round: _Round | None = None
        #: whether another process shares the channel (or did since this one started):
        #: only then must a cached read catch up first (``caught_up``); once true it stays
        self.shared = True
        self._acks: set[int] = set()  #: backends that answered this process's hello
        self._acked = asyncio.Event()
        self._conn: asyncpg.Connection[Any] | None = None  #: the LISTEN connection
        self._meetings = 0
        self._acking: set[asyncio.Future[None]] = set()
        self._conn_lock = asyncio.Lock()  #: one query at a time on the LISTEN connection
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
        finds their cached body of it gone (web/reads.py). A process alone on its
        database does not wait: a newcomer serves only after this process has acked
        its hello (and shares from then on), and reads what is committed.
        """
        if not self.shared:
            return  # alone: no other process holds a cached read to be told about
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
        for ack in list(self._acking):
            ack.cancel()
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
        if not self.shared:
            return True  # alone: every change was made here, and heard at once
        current = self._round
        if current is None:
            future = self._start_round()
        elif not current.sent:
            future = current.future  # its notice is not sent yet: it comes after this call
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
        self._round = _Round(key, future)
        loop.call_later(SYNC_WAIT, self._expire_round, key)
        self.send([key])
        return future

    def _expire_round(self, key: str) -> None:
        """A round's notice did not come back in time: it and the next fail."""
        if self._round is not None and self._round.key == key:
            self._end_rounds(False)

    def _end_rounds(self, caught_up: bool) -> None:
        """The round in flight came back (or the channel went down: every round fails)."""
        current, self._round = self._round, None
        if current is not None and not current.future.done():
            current.future.set_result(caught_up)
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
        if message.o == self.origin:
            if self._round is not None and self._round.key in message.k:
                self._end_rounds(True)
            return
        if any(key.startswith(INTERNAL) for key in message.k):
            self._between_channels(pid, message)
        self.on_keys([key for key in message.k if not key.startswith(INTERNAL)])

    def _between_channels(self, pid: int, message: _Message) -> None:
        """A hello from a process starting (share from now on, then say so), or an ack
        of this process's hello."""
        for key in message.k:
            if key.startswith(HELLO_PREFIX):
                self.shared = True  # before the ack: the newcomer serves only after it
                ack = asyncio.ensure_future(self._notify_self_conn([f"{ACK_PREFIX}{message.o}"]))
                self._acking.add(ack)
                ack.add_done_callback(self._acking.discard)
            elif key == f"{ACK_PREFIX}{self.origin}":
                self._acks.add(pid)
                self._acked.set()

    async def _notify_self_conn(self, keys: list[str]) -> None:
        """Notify from the LISTEN connection (its backend pid is the one in pg_locks)."""
        conn = self._conn
        if conn is None or conn.is_closed():
            return
        payload = self._encoder.encode(_Message(o=self.origin, k=keys)).decode()
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            async with self._conn_lock:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    async def _meet(self, conn: asyncpg.Connection[Any]) -> None:
        """Hold the shared lock, list the other listening processes and, if there are
        any, say hello and wait (at most HELLO_WAIT) until each has acked: from then on
        they catch up before their cached reads, so this process may serve writes."""
        async with self._conn_lock:
            await conn.execute("SELECT pg_advisory_lock_shared($1)", LOCK_KEY)
            others = {row["pid"] for row in await conn.fetch(_OTHERS, LOCK_KEY)}
        if not others:
            return  # alone (shared stays as it was: once shared, always shared)
        self.shared = True
        self._acks.clear()
        await self._notify_self_conn([f"{HELLO_PREFIX}{self.origin}"])
        deadline = asyncio.get_running_loop().time() + HELLO_WAIT
        while not others <= self._acks:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.warning("%d other process(es) did not answer hello", len(others - self._acks))
                return
            self._acked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), left)

    async def _listen_forever(self) -> None:
        backoff = 0.1
        while True:
            conn: asyncpg.Connection[Any] | None = None
            try:
                conn = await asyncpg.connect(self.dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._received)
                self._conn = conn
                if self._meetings == 0:
                    self.shared = False  # until _meet finds another process
                self._meetings += 1
                await self._meet(conn)
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
                if self._round is not None and self._round.key in keys:
                    self._round.sent = True  # later callers wait for the next round
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
