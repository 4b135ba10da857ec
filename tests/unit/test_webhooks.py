"""Webhook rules without I/O: filters, backoff, signatures, refused addresses, and the
destination check with a stand-in resolver (DNS rebinding cannot swap the address)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from opstatus.domain import errors
from opstatus.domain import webhooks as hooks
from opstatus.service.webhooks import Resolve, destination


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
