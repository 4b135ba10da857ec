"""One error hierarchy; the HTTP layer maps each class to a status in one table."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Something went wrong."""

    code = "error"

    def __init__(self, detail: str | None = None, **context: Any) -> None:
        self.detail = detail or (type(self).__doc__ or "").strip()
        self.context = context
        super().__init__(self.detail)


class Invalid(DomainError):
    """The request is not valid."""

    code = "invalid"


class NotFound(DomainError):
    """No such resource."""

    code = "not_found"


class UnknownTargets(Invalid):
    """The request names targets this tenant never registered."""

    code = "unknown_targets"

    #: ids named in the detail at most; the ``targets`` context holds every one
    SHOWN = 10

    def __init__(self, targets: list[str]) -> None:
        shown = ", ".join(targets[: self.SHOWN])
        more = len(targets) - self.SHOWN
        suffix = f" and {more} more" if more > 0 else ""
        super().__init__(
            f"{len(targets)} unknown target(s): {shown}{suffix}; register them first "
            '(POST /v1/targets) or create with "register_targets": true',
            parameter="targets",
            targets=targets,
        )

    @property
    def targets(self) -> list[str]:
        """Every unknown target id, sorted."""
        return list(self.context["targets"])


class Gone(DomainError):
    """The resource existed but was deleted or purged."""

    code = "gone"


class Conflict(DomainError):
    """The resource's current state does not allow this."""

    code = "conflict"

    @property
    def state(self) -> str | None:
        """The current state the request collided with."""
        value = self.context.get("state")
        return None if value is None else str(value)


class VersionMismatch(Conflict):
    """The execution changed since you read it."""

    code = "version_mismatch"

    @property
    def current(self) -> Any:
        """The current record, so the caller needs no second read."""
        return self.context.get("current")


class IdempotencyMismatch(Conflict):
    """This Idempotency-Key was used with a different request."""

    code = "idempotency_mismatch"


class Locked(DomainError):
    """A target already runs exclusive work of this kind."""

    code = "locked"


class Forbidden(DomainError):
    """You may not do this."""

    code = "forbidden"


class Unauthorized(DomainError):
    """Credentials are missing or invalid."""

    code = "unauthorized"


class RateLimited(DomainError):
    """Too many requests; slow down."""

    code = "rate_limited"


class Unavailable(DomainError):
    """The database cannot be reached right now; retry shortly."""

    code = "unavailable"


class TooLarge(DomainError):
    """The request body is too large."""

    code = "too_large"


class UnsupportedMediaType(DomainError):
    """The request body must be JSON."""

    code = "unsupported_media_type"


class PreconditionFailed(VersionMismatch):
    """The execution changed since the version named in If-Match."""

    code = "precondition_failed"
