"""The client side's one exception hierarchy: one base class, one subclass per answer.

Every SDK method raises these, and the client-side commands (``opstatus op``, the
agents) catch them; the server's own errors (``DomainError`` and its kin) never reach
a client, only the problem bodies they are rendered to::

    OpstatusError            any refusal, or no answer; .status .code .detail .problem
    ├── TransportError       no answer: the server could not be reached, or the connection broke
    ├── BadRequest           400
    ├── Unauthorized         401
    ├── Forbidden            403
    ├── NotFound             404
    ├── Conflict             409
    ├── Gone                 410
    ├── PreconditionFailed   412
    ├── Unprocessable        422
    ├── Locked               423
    ├── RateLimited          429, after the retries the client allows
    ├── ServerError          5xx
    └── WaitTimeout          wait() ran out of time (also a TimeoutError)

Any other status raises :class:`OpstatusError` itself.
"""

from __future__ import annotations

from typing import Any


class OpstatusError(Exception):
    """The opstatus server refused the request or could not be reached."""

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        self.detail = detail or (type(self).__doc__ or "").strip()
        self.status = status  #: the HTTP status, None when no answer came
        self.code = code  #: the problem's stable ``code``, e.g. ``not_found``
        self.problem: dict[str, Any] = problem or {}  #: the RFC 9457 body as sent
        super().__init__(self.detail)

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status is not None else ""
        code = f"{self.code}: " if self.code else ""
        return f"{prefix}{code}{self.detail}"


class TransportError(OpstatusError):
    """The server could not be reached or the connection broke."""


class BadRequest(OpstatusError):
    """The request is malformed (400)."""


class Unauthorized(OpstatusError):
    """The key is missing, wrong or revoked (401)."""


class Forbidden(OpstatusError):
    """The key may not do this (403)."""


class NotFound(OpstatusError):
    """No such resource (404)."""


class Conflict(OpstatusError):
    """The resource is in a state that forbids this (409)."""


class Gone(OpstatusError):
    """The operation was purged or deleted (410)."""


class PreconditionFailed(OpstatusError):
    """The resource changed since you read it (412)."""


class Unprocessable(OpstatusError):
    """The body is well-formed but not acceptable (422)."""


class Locked(OpstatusError):
    """An exclusive operation holds the targets (423)."""


class RateLimited(OpstatusError):
    """Too many requests, and retrying within the budget did not help (429)."""


class ServerError(OpstatusError):
    """The server failed (5xx)."""


class WaitTimeout(OpstatusError, TimeoutError):
    """The operation did not finish before the timeout."""


#: status -> exception class; anything else maps to OpstatusError (or ServerError for 5xx)
BY_STATUS: dict[int, type[OpstatusError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    412: PreconditionFailed,
    422: Unprocessable,
    423: Locked,
    429: RateLimited,
}
