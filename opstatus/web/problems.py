"""Errors as ``application/problem+json`` (RFC 9457): one table from class to status."""

from __future__ import annotations

import functools
import logging
import re
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
    return answer(describe(status, code, detail, **extra), headers)


def describe(status: int, code: str, detail: str, **extra: Any) -> wire.Problem:
    """A problem body."""
    return wire.Problem(
        type=f"urn:opstatus:problem:{code}",
        title=TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        code=code,
        **extra,
    )


def answer(body: wire.Problem, headers: dict[str, str] | None = None) -> Response:
    """``body`` as the response."""
    return Response(
        _encoder.encode(body), status_code=body.status, headers=headers, media_type=MEDIA
    )


#: renders the current execution a VersionMismatch carries (the canonical API's shape)
CurrentRenderer = Callable[[Execution], Any]


def from_error(exc: errors.DomainError, current: CurrentRenderer | None = None) -> Response:
    """The problem response for a domain error, with its context (the current execution
    rendered by ``current`` when it is given and the error carries one)."""
    return answer(*of_error(exc, current))


def of_error(
    exc: errors.DomainError, current: CurrentRenderer | None = None
) -> tuple[wire.Problem, dict[str, str]]:
    """The problem body and headers of :func:`from_error`."""
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
    return describe(status, exc.code, exc.detail, **extra), headers


def from_validation(
    exc: msgspec.ValidationError | msgspec.DecodeError, body: type | None = None, raw: bytes = b""
) -> Response:
    """A body that is not valid JSON (400) or not a valid document (422).

    Where the field at fault takes one of a set of values (an enum, or a pattern that is
    a choice of literals), the detail names the value sent and lists the valid ones,
    read from ``body``'s JSON Schema, instead of msgspec's message (which shows the
    pattern as an escaped regex).
    """
    if isinstance(exc, msgspec.ValidationError):
        message = str(exc)
        at = _AT.search(message)
        parameter = at.group("path").lstrip(".") if at else None
        missing = _MISSING_FIELD.match(message)
        if missing is not None:  # the field that is missing, not the object it is missing in
            parameter = ".".join(filter(None, (parameter, missing["field"])))
        if at is not None and body is not None:
            message = _with_choices(message, at, body, raw)
        return problem(422, "invalid_body", message, parameter=parameter)
    return problem(400, "malformed_body", f"the body is not valid JSON: {exc}")


#: where msgspec says a validation error is: `` - at `$.events[0]` ``
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
#: msgspec's words for a required field that is absent
_MISSING_FIELD = re.compile(r"Object missing required field `(?P<field>[^`]+)`")
#: one step of such a path: a field name or a list index
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[([0-9]+)\]")
#: a pattern that is a choice of literal strings, as wire types spell them
_LITERALS = re.compile(r"\^\(\?:(.*)\)\$")


def _with_choices(message: str, at: re.Match[str], body: type, raw: bytes) -> str:
    steps = [(name, int(index) if index else None) for name, index in _STEP.findall(at["path"])]
    choices = _choices(_schema_at(body, steps))
    if choices is None:
        return message
    place = f"`${at['path']}`"
    sent = _value_at(raw, steps)
    got = "" if sent is _MISSING else f", got {msgspec.json.encode(sent).decode()[:100]}"
    return f"{place} must be one of: {', '.join(choices)}{got}"


_MISSING = object()


def _value_at(raw: bytes, steps: list[tuple[str, int | None]]) -> Any:
    try:
        node: Any = msgspec.json.decode(raw)
        for name, index in steps:
            node = node[name] if index is None else node[index]
    except (msgspec.DecodeError, LookupError, TypeError):
        return _MISSING
    return node


@functools.cache
def _json_schema(body: type) -> dict[str, Any]:
    return msgspec.json.schema(body)


def _schema_at(body: type, steps: list[tuple[str, int | None]]) -> dict[str, Any]:
    root = _json_schema(body)
    defs: dict[str, Any] = root.get("$defs", {})
    node = _resolve(root, defs)
    for name, index in steps:
        node = node.get("items", {}) if index is not None else node.get("properties", {})
        node = _resolve(node if index is not None else node.get(name, {}), defs)
    return node


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``node`` with its ``$ref`` followed and an optional's null branch dropped."""
    for _ in range(8):  # refs and optionals nest a few levels at most
        if "$ref" in node:
            node = defs.get(node["$ref"].rpartition("/")[2], {})
        elif "anyOf" in node:
            branches = [b for b in node["anyOf"] if b.get("type") != "null"]
            node = branches[0] if len(branches) == 1 else {}
        else:
            break
    return node


def _choices(schema: dict[str, Any]) -> list[str] | None:
    """The values ``schema`` admits when it is a closed set of strings."""
    if "enum" in schema:
        return [str(v) for v in schema["enum"]]
    literals = _LITERALS.fullmatch(schema.get("pattern", ""))
    if literals is None:
        return None
    parts = re.split(r"(?<!\\)\|", literals.group(1))
    values = [re.sub(r"\\(.)", r"\1", part) for part in parts]
    if any(re.escape(v) != part for v, part in zip(values, parts, strict=True)):
        return None  # a real regex, not a list of values
    return values


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
