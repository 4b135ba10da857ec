"""Per-credential rate limits (an in-process token bucket), with RateLimit headers, and
the failed-authentication limit per client address.

Limits are written in the ``limits`` library's notation (``"100/second"``,
``"600/minute"``), which parses them; the counting is done here, in memory, per
process. A limit is therefore **per replica**: N processes behind a load balancer
admit up to N times it in total (docs/architecture.md, Limits).

The token bucket holds ``amount`` tokens and refills at ``amount`` per window: a
credential may burst ``amount`` requests at once, then ``amount`` per window. A
refused request takes no token, so a client that keeps knocking is let in as soon
as a token is back.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque

from limits import parse

from opstatus.domain import errors

#: credentials (or addresses) tracked at once; the least recently seen go first
TRACKED = 100_000


class RateLimiter:
    """A token bucket per key, e.g. ``"100/second"``; ``None`` disables it."""

    __slots__ = ("_buckets", "_limit", "_policy", "_rate", "amount", "window")

    def __init__(self, limit: str | None) -> None:
        item = parse(limit) if limit else None
        self.amount = item.amount if item is not None else 0
        self.window = item.get_expiry() if item is not None else 0
        self._rate = self.amount / self.window if item is not None else 0.0  #: tokens/s
        #: key -> [tokens, at (monotonic seconds)]
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._policy = f"{self.amount};w={self.window}"
        self._limit = str(self.amount)

    @property
    def enabled(self) -> bool:
        """Whether a limit is set."""
        return self.amount > 0

    def take(self, key: str) -> tuple[bool, float]:
        """Take one token from ``key``'s bucket: (admitted, tokens left after)."""
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [float(self.amount), now]
            if len(self._buckets) > TRACKED:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(self.amount, bucket[0] + (now - bucket[1]) * self._rate)
            bucket[1] = now
        if bucket[0] < 1.0:
            return False, bucket[0]
        bucket[0] -= 1.0
        return True, bucket[0]

    def hit(self, key: str) -> dict[str, str]:
        """Count one request; return RateLimit headers, or raise RateLimited (429)."""
        return {_NAMES[name]: value.decode() for name, value in self.hit_raw(key)}

    def hit_raw(self, key: str) -> list[tuple[bytes, bytes]]:
        """:meth:`hit` with the headers as ASGI pairs (:meth:`raw_headers`)."""
        if not self.amount:
            return []
        admitted, tokens = self.take(key)
        if not admitted:
            retry = max(1, math.ceil((1.0 - tokens) / self._rate))
            raise errors.RateLimited(
                f"more than {self.amount} requests in {self.window} s; retry in {retry} s",
                retry_after=retry,
                headers=self.headers(tokens),
            )
        return self.raw_headers(tokens)

    def raw_headers(self, tokens: float) -> list[tuple[bytes, bytes]]:
        """The RateLimit headers as ASGI pairs for a bucket holding ``tokens``; ``reset``
        is the seconds until it is full again."""
        remaining = b"%d" % int(tokens)
        reset = b"%d" % max(1, math.ceil((self.amount - tokens) / self._rate))
        limit = self._limit.encode()
        return [
            (b"ratelimit-policy", self._policy.encode()),
            (b"ratelimit", b"limit=%s, remaining=%s, reset=%s" % (limit, remaining, reset)),
            (b"ratelimit-limit", limit),
            (b"ratelimit-remaining", remaining),
            (b"ratelimit-reset", reset),
        ]

    def headers(self, tokens: float) -> dict[str, str]:
        """:meth:`raw_headers` as a dict, with the names as the RFC writes them."""
        return {_NAMES[name]: value.decode() for name, value in self.raw_headers(tokens)}


_NAMES = {
    b"ratelimit-policy": "RateLimit-Policy",
    b"ratelimit": "RateLimit",
    b"ratelimit-limit": "RateLimit-Limit",
    b"ratelimit-remaining": "RateLimit-Remaining",
    b"ratelimit-reset": "RateLimit-Reset",
}


class FailureLimiter:
    """Failed authentications per client address, e.g. ``"20/minute"``; ``None``: no limit.

    Checked before any key lookup (in memory, no hashing, no database), so a client
    guessing secrets is refused with 429 once it has failed ``limit`` times within the
    window, whatever it presents next; successful requests do not count. An address
    that never failed costs one dictionary lookup.
    """

    __slots__ = ("_failures", "amount", "window")

    def __init__(self, limit: str | None) -> None:
        item = parse(limit) if limit else None
        self.amount = item.amount if item is not None else 0
        self.window = float(item.get_expiry()) if item is not None else 0.0
        #: address -> monotonic times of its failures within the window (oldest first)
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, address: str) -> None:
        """Raise RateLimited (429 with Retry-After) while ``address`` is over its limit."""
        reset = self._reset(address)
        if reset is not None:
            raise errors.RateLimited(
                f"too many failed authentications from this address; retry in {reset} s",
                retry_after=reset,
            )

    def refuses(self, address: str) -> bool:
        """Whether :meth:`check` would refuse ``address`` now."""
        return address in self._failures and self._reset(address) is not None

    def _reset(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or None when it is not over the limit."""
        times = self._failures.get(address)
        if times is None:
            return None
        now = time.monotonic()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        if len(times) < self.amount:
            return None
        return max(1, math.ceil(times[0] + self.window - now))

    def failed(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        if not self.amount:
            return
        times = self._failures.get(address)
        if times is None:
            times = self._failures[address] = deque(maxlen=self.amount)
            if len(self._failures) > TRACKED:
                self._failures.popitem(last=False)
        times.append(time.monotonic())
