"""The service's sense of time: a clock is a function that answers "now" (UTC).

Every use case takes one (default :func:`utcnow`), so tests and the testing mode can
move time without patching anything.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

#: a source of the current time, timezone-aware UTC
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The default clock: the wall clock, in UTC."""
    return datetime.now(UTC)


class Controllable:
    """A clock the testing mode moves: the wall clock plus an offset that only grows.

    One per app, handed to every use case, so "now" is the same everywhere; whoever
    must act at once when time jumps (the engine's sweep) registers with
    :meth:`on_advance`.
    """

    def __init__(self, source: Clock = utcnow) -> None:
        self.source = source
        self.offset = timedelta()
        self._listeners: list[Callable[[], None]] = []

    def __call__(self) -> datetime:
        """Now, as the service sees it."""
        return self.source() + self.offset

    def advance(self, seconds: float) -> datetime:
        """Move time forward by ``seconds`` (never back: deadlines must not un-pass)."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.offset += timedelta(seconds=seconds)
        for listener in self._listeners:
            listener()
        return self()

    def on_advance(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every :meth:`advance`."""
        self._listeners.append(listener)


__all__ = ["Clock", "Controllable", "utcnow"]
