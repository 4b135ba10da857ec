"""Open connections outlive the request that authenticated them: an SSE stream for
hours, a long-poll for up to a minute. :class:`Watch` ends them when their
credential stops authenticating — a key revoked, a token expired — instead of
letting them deliver what the caller may no longer read.

A revoke wakes the tenant's watches at once (``keys:{tenant}`` through the
notifier; on PostgreSQL from the revoking transaction, so every replica). A watch
also re-checks every ``Api.keepalive`` seconds, which covers token expiry and a
revoke the notifier cannot see (another process on the same SQLite file).
"""

from __future__ import annotations

import asyncio

from opstatus.domain import errors
from opstatus.service import notifier
from opstatus.service.credentials import Credentials, Principal
from opstatus.service.notifier import Notifier, Wake


class Watch:
    """The credential of one open connection, re-checked on revokes and every ``interval``."""

    def __init__(
        self, credentials: Credentials, notes: Notifier, principal: Principal, interval: float
    ) -> None:
        self.credentials = credentials
        self.notes = notes
        self.principal = principal
        self.interval = interval
        #: the auth epoch of the last check that passed (None: none yet, or no epoch)
        self._epoch: object | None = None
        self._checked = asyncio.get_running_loop().time()

    async def wait(self, waiter: asyncio.Future[Wake], seconds: float) -> Wake | None:
        """Like ``Notifier.wait``: the Wake, or None after ``seconds``; but re-checking
        the credential on every revoke of the tenant and every ``interval`` meanwhile,
        raising Unauthorized as soon as it no longer holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    return None
                revoked = self.notes.subscribe(notifier.keys_key(self.principal.tenant))
                try:
                    await asyncio.wait(
                        (waiter, revoked),
                        timeout=min(left, self.interval),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    revoked.cancel()
                if waiter.done() and self.notes.closing:
                    return waiter.result()  # shutting down: answer now, read nothing more
                if (revoked.done() and not revoked.cancelled()) or not waiter.done():
                    await self.check()
                if waiter.done():
                    return waiter.result()
        finally:
            waiter.cancel()

    async def due(self) -> None:
        """Check the credential if the last check is ``interval`` old (a busy stream,
        which never waits long enough to time out, still notices)."""
        if asyncio.get_running_loop().time() - self._checked >= self.interval:
            await self.check()

    async def check(self) -> None:
        """Raise Unauthorized unless the credential still authenticates.

        A key whose check passed under the store's current auth epoch needs no read:
        the epoch moves with every revoke. A token is read each time (it expires).
        """
        epoch = self.credentials.store.auth_epoch()
        self._checked = asyncio.get_running_loop().time()
        if self.principal.token is None and epoch is not None and epoch == self._epoch:
            return
        if not await self.credentials.still_valid(self.principal):
            raise errors.Unauthorized("the credential was revoked or has expired")
        self._epoch = epoch
