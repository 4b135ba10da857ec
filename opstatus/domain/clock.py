"""The service's sense of time: a clock is a function that answers "now" (UTC).

Every use case takes one (default :func:`utcnow`), so tests and the testing mode can
move time without patching anything.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

#: a source of the current time, timezone-aware UTC
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The default clock: the wall clock, in UTC."""
    return datetime.now(UTC)


__all__ = ["Clock", "utcnow"]
