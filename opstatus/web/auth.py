"""Who is calling: X-API-Key, Bearer (key secret or token), or Basic (key id : secret)."""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request

from opstatus.domain import errors
from opstatus.service.credentials import Credentials, Principal


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
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return await credentials.by_secret(value)
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise errors.Unauthorized("Basic credentials are not valid base64") from None
        key_id, sep, secret = decoded.partition(":")
        if not sep or not key_id or not secret:
            raise errors.Unauthorized("Basic credentials must be key id:secret")
        return await credentials.by_basic(key_id, secret)
    raise errors.Unauthorized("the Authorization scheme must be Bearer or Basic")
