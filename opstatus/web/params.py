"""Query parameters: parsed strictly, and an error names the parameter."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypeVar

from starlette.requests import Request

from opstatus.domain import errors

_E = TypeVar("_E", bound=StrEnum)


#: what csv values are stripped of: ASCII white space, as the documented patterns say
SPACE = " \t\n\r\f\v"
_SPACE = r"[ \t\n\r\f\v]"
_VALUE_CHAR = r"[^, \t\n\r\f\v]"
_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[-+][0-9]{2}:[0-9]{2})"
)


def csv_pattern(choices: Sequence[str] = (), *, longest: int = 200) -> str:
    """The pattern (ECMA-262 and Python alike) of what :func:`csv` or :func:`enums` accept.

    Values are ``choices`` when given, else anything up to ``longest`` characters without
    a comma. The count (``most``) is left to the prose: generators choke on ``{0,999}``.
    """
    if choices:
        value = "(?:" + "|".join(re.escape(c) for c in choices) + ")"
    else:
        value = f"{_VALUE_CHAR}(?:[^,]{{0,{longest - 2}}}{_VALUE_CHAR})?"
    one = f"{_SPACE}*(?:{value})?{_SPACE}*"
    return f"^{one}(?:,{one})*$"


def _bad(name: str, what: str) -> errors.Invalid:
    return errors.Invalid(f"query parameter {name!r} {what}", parameter=name)


def _spelled(request: Request, name: str, pattern: re.Pattern[str], what: str) -> str | None:
    """The raw value of ``name`` (None when absent); Invalid unless ``pattern`` spells it."""
    raw = request.query_params.get(name)
    if raw is not None and not pattern.fullmatch(raw):
        raise _bad(name, f"must be {what}, got {raw!r}")
    return raw


def integer(
    request: Request, name: str, default: int | None, *, low: int = 0, high: int = 2**62
) -> int | None:
    """An integer within [low, high], or ``default`` when absent."""
    raw = _spelled(request, name, _INTEGER, "an integer")
    if raw is None:
        return default
    value = int(raw)
    if not low <= value <= high:
        raise _bad(name, f"must be between {low} and {high}, got {value}")
    return value


def number(request: Request, name: str, *, high: float) -> float | None:
    """A non-negative finite number up to ``high``."""
    raw = _spelled(request, name, _NUMBER, "a number")
    if raw is None:
        return None
    value = float(raw)
    if not math.isfinite(value) or not 0 <= value <= high:
        raise _bad(name, f"must be between 0 and {high:g}")
    return value


def boolean(request: Request, name: str) -> bool | None:
    """``true`` or ``false``."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw in ("true", "false"):
        return raw == "true"
    raise _bad(name, f"must be true or false, got {raw!r}")


def csv(request: Request, name: str, *, most: int = 1000) -> list[str]:
    """A comma-separated list (repeated parameters are joined)."""
    values = [
        part.strip(SPACE)
        for raw in request.query_params.getlist(name)
        for part in raw.split(",")
        if part.strip(SPACE)
    ]
    if len(values) > most:
        raise _bad(name, f"takes at most {most} values")
    if any(len(v) > 200 for v in values):
        raise _bad(name, "values must be at most 200 characters")
    return values


def enums(request: Request, name: str, enum: type[_E]) -> list[_E]:
    """A comma-separated list of enum values."""
    out = []
    for value in csv(request, name):
        try:
            out.append(enum(value))
        except ValueError:
            allowed = ", ".join(e.value for e in enum)
            raise _bad(name, f"has unknown value {value!r} (one of: {allowed})") from None
    return out


def timestamp(request: Request, name: str) -> datetime | None:
    """An RFC 3339 time with a zone."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    raw = raw.replace(" ", "+")  # an unencoded + in the offset arrives as a space
    if not _TIMESTAMP.fullmatch(raw):
        raise _bad(name, f"must be an RFC 3339 time, got {raw!r}")
    try:
        value = datetime.fromisoformat(raw.upper().replace("Z", "+00:00"))
    except ValueError:
        raise _bad(name, f"must be an RFC 3339 time, got {raw!r}") from None
    if value.tzinfo is None:
        raise _bad(name, "needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before any time stored
        return (
            datetime.min.replace(tzinfo=UTC)
            if value.year == 1
            else datetime.max.replace(tzinfo=UTC)
        )


def text(request: Request, name: str) -> str | None:
    """A short string."""
    raw = request.query_params.get(name)
    if raw is not None and len(raw) > 200:
        raise _bad(name, "must be at most 200 characters")
    return raw or None


def only(request: Request, allowed: Sequence[str]) -> None:
    """Refuse query parameters the route does not know (typos must not pass silently)."""
    unknown = sorted(set(request.query_params) - set(allowed) - {"format"})
    if unknown:
        raise errors.Invalid(
            f"unknown query parameter(s): {', '.join(unknown)}", parameter=unknown[0]
        )


def etag_version(header: str) -> int | None:
    """The resource version an ``If-None-Match`` of one ETag names:
    ``"7"`` or ``W/"7"``; None for anything else."""
    text = header.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    return int(text) if text.isascii() and text.isdigit() else None
