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
