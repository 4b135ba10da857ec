"""Errors as ``application/problem+json`` (RFC 9457): one table from class to status."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from opstatus import wire
from opstatus.domain import errors
from opstatus.domain.records import Execution

MEDIA = "application/problem+json"
log = logging.getLogger("opstatus.api")

#: error class -> HTTP status; the most specific class listed wins
STATUS: dict[type[errors.DomainError], int] = {
    errors.Invalid: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.VersionMismatch: 409,
    errors.PreconditionFailed: 412,
    errors.IdempotencyMismatch: 422,
    errors.UnknownTargets: 422,
    errors.Gone: 410,
    errors.TooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.Locked: 423,
    errors.RateLimited: 429,
    errors.Unavailable: 503,
    errors.QueryTimeout: 504,
}
TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict", 410: "Gone",
    412: "Precondition Failed", 413: "Content Too Large", 415: "Unsupported Media Type",
    422: "Unprocessable Content", 423: "Locked", 429: "Too Many Requests",
    500: "Internal Server Error", 503: "Service Unavailable", 504: "Gateway Timeout",
}  # fmt: skip
_encoder = msgspec.json.Encoder()


def status_of(exc: errors.DomainError) -> int:
    """The status the table gives ``exc``'s class (or its nearest listed base)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def problem(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """A problem response."""
    body = wire.Problem(
        type=f"urn:opstatus:problem:{code}",
        title=TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        code=code,
        **extra,
    )
    return Response(_encoder.encode(body), status_code=status, headers=headers, media_type=MEDIA)


#: renders the current execution a VersionMismatch carries (the canonical API's shape)
CurrentRenderer = Callable[[Execution], Any]


def from_error(exc: errors.DomainError, current: CurrentRenderer | None = None) -> Response:
    """The problem response for a domain error, with its context (the current execution
    rendered by ``current`` when it is given and the error carries one)."""
    status = status_of(exc)
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    ctx = exc.context
    if isinstance(exc, errors.Conflict) and exc.state is not None:
        extra["state"] = exc.state
    if current is not None and isinstance(ctx.get("current"), Execution):
        extra["current"] = current(ctx["current"])
        headers["ETag"] = f'"{ctx["current"].version}"'
    if ctx.get("parameter"):
        extra["parameter"] = str(ctx["parameter"])
    if isinstance(exc, errors.UnknownTargets):
        extra["unknown_targets"] = exc.targets
    if ctx.get("retry_after") is not None:
        headers["Retry-After"] = str(ctx["retry_after"])
    headers.update(ctx.get("headers") or {})
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="opstatus", Basic realm="opstatus"'
    return problem(status, exc.code, exc.detail, headers, **extra)


def from_validation(exc: msgspec.ValidationError | msgspec.DecodeError) -> Response:
    """A body that is not valid JSON (400) or not a valid document (422)."""
    if isinstance(exc, msgspec.ValidationError):
        message = str(exc)
        parameter = message.rpartition("at `$.")[2].rstrip("`") if "at `$." in message else None
        return problem(422, "invalid_body", message, parameter=parameter)
    return problem(400, "malformed_body", f"the body is not valid JSON: {exc}")


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as problems."""
    status = int(getattr(exc, "status_code", 500))
    detail = str(getattr(exc, "detail", "")) or TITLES.get(status, "Error")
    headers = dict(getattr(exc, "headers", None) or {})
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    return problem(status, code, detail, headers)


async def unexpected(request: Request, exc: Exception) -> Response:
    """Anything unforeseen: logged with its traceback, answered without details."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "internal", "an unexpected error occurred; it has been logged")
