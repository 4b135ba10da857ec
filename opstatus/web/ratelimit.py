"""Per-credential rate limits (the ``limits`` library), with RateLimit headers."""

from __future__ import annotations

import math
import time

from limits import parse, storage, strategies

from opstatus.domain import errors


class RateLimiter:
    """A moving-window limit per key, e.g. ``"100/second"``; ``None`` disables it."""

    def __init__(self, limit: str | None) -> None:
        self.item = parse(limit) if limit else None
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())

    def hit(self, key: str) -> dict[str, str]:
        """Count one request; return RateLimit headers, or raise RateLimited (429)."""
        if self.item is None:
            return {}
        allowed = self._limiter.hit(self.item, key)
        stats = self._limiter.get_window_stats(self.item, key)
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        amount, window = self.item.amount, self.item.get_expiry()
        headers = {
            "RateLimit-Policy": f"{amount};w={window}",
            "RateLimit": f"limit={amount}, remaining={stats.remaining}, reset={reset}",
            "RateLimit-Limit": str(amount),
            "RateLimit-Remaining": str(stats.remaining),
            "RateLimit-Reset": str(reset),
        }
        if not allowed:
            raise errors.RateLimited(
                f"more than {amount} requests in {window} s; retry in {reset} s",
                retry_after=reset,
                headers=headers,
            )
        return headers


class FailureLimiter:
    """Failed authentications per client address, e.g. ``"20/minute"``; ``None``: no limit.

    Checked before any key lookup (an in-memory window, no hashing, no database), so a
    client guessing secrets is refused with 429 once it has failed ``limit`` times,
    whatever it presents next; successful requests do not count.
    """

    def __init__(self, limit: str | None) -> None:
        self.item = parse(limit) if limit else None
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())

    def check(self, address: str) -> None:
        """Raise RateLimited (429 with Retry-After) while ``address`` is over its limit."""
        if self.item is None or self._limiter.test(self.item, address):
            return
        stats = self._limiter.get_window_stats(self.item, address)
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        raise errors.RateLimited(
            f"too many failed authentications from this address; retry in {reset} s",
            retry_after=reset,
        )

    def failed(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        if self.item is not None:
            self._limiter.hit(self.item, address)
