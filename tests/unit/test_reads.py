"""The read cache's rules (web/reads.py) and the in-process limiters (web/ratelimit.py)."""

from __future__ import annotations

import time

import pytest

from opstatus.domain import errors
from opstatus.web import reads
from opstatus.web.ratelimit import FailureLimiter, RateLimiter
from opstatus.web.reads import ReadCache


class Epoch:
    """A store epoch a test moves by hand."""

    def __init__(self) -> None:
        self.value: object | None = 1

    def __call__(self) -> object | None:
        return self.value


async def _caught_up() -> bool:
    return True


def _cache(size: int = 10_000) -> tuple[ReadCache, Epoch]:
    epoch = Epoch()
    return ReadCache(epoch, _caught_up, size=size), epoch


def _fill(cache: ReadCache, key: str, version: int = 1, body: bytes = b"{}") -> None:
    """Take a ticket and put ``body`` at once (no change in between)."""
    ticket = cache.ticket()
    assert ticket is not None
    cache.put(ticket, key, version, f'"{version}"', body)


def test_a_fill_under_the_current_epoch_is_served() -> None:
    cache, epoch = _cache()
    _fill(cache, "op:t:op_1", 3)
    entry = cache.get("op:t:op_1", epoch())
    assert entry is not None and (entry.version, entry.etag, entry.body) == (3, b'"3"', b"{}")
    assert cache.get("op:other:op_1", epoch()) is None  # another tenant's key: nothing


def test_a_change_drops_the_entry_and_voids_fills_in_flight() -> None:
    cache, epoch = _cache()
    _fill(cache, "op:t:op_1")
    in_flight = cache.ticket()  # a read that started before the next change
    assert in_flight is not None
    cache.changed("op:t:op_1")
    assert cache.get("op:t:op_1", epoch()) is None
    cache.put(in_flight, "op:t:op_1", 1, '"1"', b"{}")  # read before the change: dropped
    assert cache.get("op:t:op_1", epoch()) is None
    cache.changed("inbox:t:n1")  # not an operation's key: fills go on
    _fill(cache, "op:t:op_1", 2)
    assert cache.get("op:t:op_1", epoch()) is not None


def test_another_epoch_or_no_epoch_serves_nothing() -> None:
    cache, epoch = _cache()
    _fill(cache, "op:t:op_1")
    epoch.value = 2  # a commit elsewhere (SQLite), a reconnect (PostgreSQL)
    assert cache.get("op:t:op_1", epoch()) is None
    epoch.value = None
    assert cache.ticket() is None


def test_entries_expire_are_bounded_and_large_bodies_are_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache, epoch = _cache(size=2)
    for n in range(3):
        _fill(cache, f"op:t:op_{n}")
    assert len(cache) == 2 and cache.get("op:t:op_0", epoch()) is None
    _fill(cache, "op:t:big", body=b"x" * (reads.MAX_BODY + 1))
    assert cache.get("op:t:big", epoch()) is None
    assert cache.get("op:t:op_2", epoch()) is not None  # fresh until MAX_AGE has passed
    later = time.monotonic() + reads.MAX_AGE + 0.1
    monkeypatch.setattr("opstatus.web.reads.time.monotonic", lambda: later)
    assert cache.get("op:t:op_2", epoch()) is None


def test_the_token_bucket_admits_a_burst_then_refuses_without_taking() -> None:
    limiter = RateLimiter("3/minute")
    assert [limiter.take("k")[0] for _ in range(4)] == [True, True, True, False]
    assert limiter.take("other")[0] is True  # buckets are per key
    with pytest.raises(errors.RateLimited) as refused:
        limiter.hit("k")
    assert refused.value.context["retry_after"] >= 1
    headers = refused.value.context["headers"]
    assert headers["RateLimit-Remaining"] == "0" and headers["RateLimit-Limit"] == "3"
    assert headers["RateLimit-Policy"] == "3;w=60"


def test_the_token_bucket_refills_at_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("opstatus.web.ratelimit.time.monotonic", lambda: now[0])
    limiter = RateLimiter("2/second")
    assert [limiter.take("k")[0] for _ in range(3)] == [True, True, False]
    now[0] += 0.5  # one token back
    assert [limiter.take("k")[0] for _ in range(2)] == [True, False]
    assert RateLimiter(None).hit("k") == {}


def test_failures_refuse_an_address_once_over_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("opstatus.web.ratelimit.time.monotonic", lambda: now[0])
    failures = FailureLimiter("2/minute")
    failures.check("10.0.0.1")
    failures.failed("10.0.0.1")
    assert not failures.refuses("10.0.0.1")
    failures.failed("10.0.0.1")
    assert failures.refuses("10.0.0.1") and not failures.refuses("10.0.0.2")
    with pytest.raises(errors.RateLimited):
        failures.check("10.0.0.1")
    now[0] += 61  # the failures left the window
    assert not failures.refuses("10.0.0.1")
    failures.check("10.0.0.1")
