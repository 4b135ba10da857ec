"""What every dialect shares: the composed services and the caller's identity."""

from __future__ import annotations

from starlette.requests import Request

from opstatus.domain import errors
from opstatus.service.credentials import Principal
from opstatus.web import auth
from opstatus.web.endpoint import Api


def api(request: Request) -> Api:
    """The services the app factory composed."""
    result: Api = request.app.state.api
    return result


async def principal(request: Request) -> tuple[Principal, dict[str, str]]:
    """Authenticate (X-API-Key, Bearer key or token, Basic key id:secret) and count the
    request against the caller's rate limit; returns the principal and RateLimit headers.

    Failed authentications count against the caller's address (``auth.identify``).
    Raises the domain errors Unauthorized / RateLimited; each dialect renders them
    in its own error shape.
    """
    services = api(request)
    who = await auth.identify(request, services.credentials, services.auth_failures)
    return who, services.limiter.hit(who.key_id)


def error_headers(exc: errors.DomainError) -> dict[str, str]:
    """The headers a domain error carries into any dialect's error answer: the
    RateLimit-* headers of a refused request and Retry-After where it applies."""
    headers: dict[str, str] = dict(exc.context.get("headers") or {})
    if exc.context.get("retry_after") is not None:
        headers["Retry-After"] = str(exc.context["retry_after"])
    return headers
