"""A cap on the long-polls and event streams one process holds at once.

Each waiting request holds a connection, a notifier future and (for a stream) a
task for as long as it waits; past ``OPSTATUS_MAX_WAITS`` of them a process
answers 503 with Retry-After instead of running out of descriptors or memory,
and a load balancer or client tries again (perhaps on another replica).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, Iterator, Mapping

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from opstatus.domain import errors

#: seconds a refused waiter is told to wait before it tries again
RETRY_AFTER = 1


class WaitSlots:
    """Counts the waits in progress and refuses one beyond ``most``."""

    def __init__(self, most: int) -> None:
        if most < 1:
            raise ValueError("most must be at least 1")
        self.most = most
        self.held = 0  #: waits in progress now

    def take(self) -> None:
        """Hold one slot; Unavailable (503, Retry-After) when all are held."""
        if self.held >= self.most:
            raise errors.Unavailable(
                f"this server already holds {self.most} long-polls and streams; retry shortly",
                retry_after=RETRY_AFTER,
            )
        self.held += 1

    def give(self) -> None:
        """Free a slot taken with :meth:`take`."""
        self.held -= 1

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the duration of the ``with``."""
        self.take()
        try:
            yield
        finally:
            self.give()


class HeldStream(StreamingResponse):
    """A streaming response that frees its wait slot when the stream ends.

    The slot is taken before the response is made (so a refusal is an ordinary 503)
    and given back however the stream ends: finished, failed or disconnected.
    """

    def __init__(
        self,
        slots: WaitSlots,
        content: AsyncIterable[bytes],
        *,
        media_type: str,
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self._slots: WaitSlots | None = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream, then free the slot."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()

    def release(self) -> None:
        """Give the slot back (once)."""
        if self._slots is not None:
            slots, self._slots = self._slots, None
            slots.give()
