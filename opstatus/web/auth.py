"""Who is calling: X-API-Key, Bearer (key secret or token), or Basic (key id : secret)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable

from starlette.requests import Request

from opstatus.domain import errors
from opstatus.service.credentials import Credentials, Principal
from opstatus.web.ratelimit import FailureLimiter


def client_address(request: Request) -> str:
    """The caller's address as the server sees it (behind a proxy: what the proxy
    forwards, when uvicorn trusts it with ``--forwarded-allow-ips``)."""
    client = request.scope.get("client")  # what request.client wraps, without the tuple
    return str(client[0]) if client else "unknown"


async def identify(
    request: Request,
    credentials: Credentials,
    failures: FailureLimiter,
    via: Callable[[], Awaitable[Principal]] | None = None,
) -> Principal:
    """:func:`authenticate`, behind the failed-authentication limit of the caller's
    address: an address over it is refused (RateLimited, 429) before any lookup, and
    each credential refused (Unauthorized) counts against it.

    Every API — canonical and dialects — authenticates through this, so a guesser
    cannot move to another API's door for more tries; ``via`` is a dialect's own rule
    (the SBC takes only its Bearer token), counted alike.
    """
    address = client_address(request)
    failures.check(address)
    try:
        return await (via() if via is not None else authenticate(request, credentials))
    except errors.Unauthorized:
        if presented(request):  # a missing credential is a mistake, not a guess
            failures.failed(address)
        raise


def presented(request: Request) -> bool:
    """Whether the request carries any credential header."""
    return "x-api-key" in request.headers or "authorization" in request.headers


async def authenticate(request: Request, credentials: Credentials) -> Principal:
    """The principal behind the request's credential; Unauthorized (401) without one."""
    key = request.headers.get("x-api-key")
    if key:
        return await credentials.by_secret(key)
    header = request.headers.get("authorization")
    if not header:
        raise errors.Unauthorized(
            "send an API key (X-API-Key or Authorization: Bearer) or Basic key id:secret"
        )
    scheme, value = scheme_and_value(header)
    if scheme == "bearer" and value:
        return await credentials.by_secret(value)
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise errors.Unauthorized("Basic credentials are not valid base64") from None
        key_id, sep, secret = decoded.partition(":")
        if not sep or not key_id or not secret:
            raise errors.Unauthorized("Basic credentials must be key id:secret")
        return await credentials.by_basic(key_id, secret)
    raise errors.Unauthorized("the Authorization scheme must be Bearer or Basic")


def scheme_and_value(header: str) -> tuple[str, str]:
    """An ``Authorization`` header as (its scheme in lower case, its credential)."""
    scheme, _, value = header.partition(" ")
    return scheme.lower(), value.strip()
