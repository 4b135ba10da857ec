"""Webhook rules without I/O: filters, backoff, what an attempt decides, signatures,
headers, refused addresses, and the destination check with a stand-in resolver (DNS
rebinding cannot swap the address)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opstatus.domain import errors
from opstatus.domain import webhooks as hooks
from opstatus.domain.records import Event
from opstatus.domain.webhooks import DeliveryStatus, Progress, Webhook
from opstatus.service.delivery import Resolve, answered, destination, headers

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_patterns_match_everything_a_family_or_one_type() -> None:
    assert hooks.matches(["*"], "execution.queued")
    assert hooks.matches(["operation.*"], "operation.succeeded")
    assert not hooks.matches(["operation.*"], "execution.succeeded")
    assert hooks.matches(["execution.failed", "operation.created"], "execution.failed")
    assert not hooks.matches(["execution.failed"], "execution.failed.extra")
    assert set(hooks.EVENT_TYPES) >= {"operation.created", "execution.in_progress"}


def test_backoff_doubles_up_to_an_hour() -> None:
    assert [hooks.backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert hooks.backoff(40) == hooks.MAX_BACKOFF


@given(st.integers(min_value=1, max_value=200))
def test_backoff_never_shrinks_and_stays_within_an_hour(attempt: int) -> None:
    assert 1.0 <= hooks.backoff(attempt) <= hooks.backoff(attempt + 1) <= hooks.MAX_BACKOFF


@pytest.mark.parametrize(
    ("ok", "attempts", "status", "after"),
    [
        (True, 0, DeliveryStatus.DELIVERED, Progress(cursor=7)),
        (True, 4, DeliveryStatus.DELIVERED, Progress(cursor=7)),
        (False, 0, DeliveryStatus.FAILED, Progress(3, 1, NOW + timedelta(seconds=1))),
        (False, 2, DeliveryStatus.FAILED, Progress(3, 3, NOW + timedelta(seconds=4))),
        (False, 3, DeliveryStatus.DEAD, Progress(cursor=7)),
    ],
)
def test_an_attempt_delivers_retries_or_dead_letters(
    ok: bool, attempts: int, status: DeliveryStatus, after: Progress
) -> None:
    before = Progress(3, attempts, NOW if attempts else None)
    assert hooks.attempted(before, 7, ok, max_attempts=4, now=NOW) == (status, after)


@given(
    ok=st.booleans(),
    attempts=st.integers(min_value=0, max_value=50),
    max_attempts=st.integers(min_value=1, max_value=50),
)
def test_only_a_retried_event_holds_the_cursor(ok: bool, attempts: int, max_attempts: int) -> None:
    status, after = hooks.attempted(
        Progress(3, attempts), 9, ok, max_attempts=max_attempts, now=NOW
    )
    if status is DeliveryStatus.FAILED:
        assert not ok and attempts + 1 < max_attempts
        assert after == Progress(
            3, attempts + 1, NOW + timedelta(seconds=hooks.backoff(attempts + 1))
        )
    else:
        assert status is (DeliveryStatus.DELIVERED if ok else DeliveryStatus.DEAD)
        assert after == Progress(cursor=9)


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"seq":1}'
    header = hooks.signature("s3cret", 1700000000, body)
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "10.0.0.1", "172.16.3.4", "192.168.1.1", "169.254.169.254",
     "fe80::1", "fc00::1", "224.0.0.1", "ff02::1", "0.0.0.0", "::", "100.64.0.1",
     "240.0.0.1", "::ffff:127.0.0.1", "2002:7f00:1::1", "255.255.255.255"],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    assert hooks.refused_address(address) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert hooks.refused_address(address) is None


def resolver(*addresses: str) -> Resolve:
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


async def test_every_resolved_address_must_be_public() -> None:
    with pytest.raises(errors.Invalid, match="loopback"):
        await destination(
            "https://rebind.example/x",
            allow_private=False,
            resolve=resolver("93.184.215.14", "127.0.0.1"),
        )


async def test_the_request_goes_to_the_checked_address() -> None:
    found = await destination(
        "https://hooks.example:8443/x?y=1", allow_private=False, resolve=resolver("1.1.1.1")
    )
    assert str(found.url) == "https://1.1.1.1:8443/x?y=1"
    assert (found.host, found.sni) == ("hooks.example:8443", "hooks.example")


async def test_allow_private_skips_the_address_check() -> None:
    found = await destination(
        "http://127.0.0.1:9/x", allow_private=True, resolve=resolver("203.0.113.1")
    )
    assert str(found.url) == "http://127.0.0.1:9/x" and found.host is None


@pytest.mark.parametrize("url", ["ftp://example.com/", "http:///nohost", "not a url", "x" * 3000])
async def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(errors.Invalid):
        await destination(url, allow_private=True, resolve=resolver("1.1.1.1"))


def test_a_delivery_names_the_event_and_is_signed_over_its_body() -> None:
    webhook = Webhook(
        id="wh_1", tenant="t", url="https://hooks.example/", events=["*"], secret="s3cret",
        created_at=NOW,
    )  # fmt: skip
    event = Event(
        seq=42, tenant="t", type="operation.created", operation_id="op_1", execution_id=None,
        target=None, state="scheduled", progress=0.0, data={}, created_at=NOW,
    )  # fmt: skip
    sent = headers(webhook, event, b"{}", 1700000000)
    assert sent == {
        "Content-Type": "application/json",
        "User-Agent": "opstatus-webhooks",
        "Opstatus-Signature": hooks.signature("s3cret", 1700000000, b"{}"),
        "Opstatus-Event-Id": "42",
        "Opstatus-Event-Type": "operation.created",
        "Opstatus-Webhook-Id": "wh_1",
    }
    assert "s3cret" not in repr(sent)


@pytest.mark.parametrize(("code", "ok"), [(200, True), (204, True), (299, True), (199, False),
                                          (301, False), (404, False), (500, False)])  # fmt: skip
def test_only_a_2xx_delivers(code: int, ok: bool) -> None:
    outcome = answered(code)
    assert (outcome.ok, outcome.status_code) == (ok, code)
    assert (outcome.error is None) == ok
