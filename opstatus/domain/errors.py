"""One error hierarchy; the HTTP layer maps each class to a status in one table."""

from __future__ import annotations

import re
from typing import Any

#: where a snake_case name puts an underscore: before each inner capital
_SNAKE = re.compile(r"(?<=[a-z])(?=[A-Z])")


class DomainError(Exception):
    """Something went wrong."""

    #: the stable name clients match on (a problem's ``code``): the class name in
    #: snake_case, so a new class cannot get it wrong
    code = "error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:  # a class may still name its code itself
            cls.code = _SNAKE.sub("_", cls.__name__).lower()

    def __init__(self, detail: str | None = None, **context: Any) -> None:
        self.detail = detail or (type(self).__doc__ or "").strip()
        self.context = context
        super().__init__(self.detail)


class Invalid(DomainError):
    """The request is not valid."""


class NotFound(DomainError):
    """No such resource."""


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


class Conflict(DomainError):
    """The resource's current state does not allow this."""

    @property
    def state(self) -> str | None:
        """The current state the request collided with."""
        value = self.context.get("state")
        return None if value is None else str(value)


class VersionMismatch(Conflict):
    """The execution changed since you read it."""

    @property
    def current(self) -> Any:
        """The current record, so the caller needs no second read."""
        return self.context.get("current")


class IdempotencyMismatch(Conflict):
    """This Idempotency-Key was used with a different request."""


class Locked(DomainError):
    """A target already runs exclusive work of this kind."""


class Forbidden(DomainError):
    """You may not do this."""


class Unauthorized(DomainError):
    """Credentials are missing or invalid."""


class RateLimited(DomainError):
    """Too many requests; slow down."""


class Unavailable(DomainError):
    """The database cannot be reached right now; retry shortly."""


class QueryTimeout(DomainError):
    """The query ran past its time budget; narrow the filters or page with a cursor."""


class TooLarge(DomainError):
    """The request body is too large."""


class UnsupportedMediaType(DomainError):
    """The request body must be JSON."""


class PreconditionFailed(VersionMismatch):
    """The execution changed since the version named in If-Match."""
