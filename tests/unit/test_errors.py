"""Error codes are wire contract (problem ``code``, dialect bodies, MQTT replies): each
class's code is its name in snake_case, and renaming a class must fail here."""

from __future__ import annotations

from opstatus.domain import errors

CODES = {
    errors.DomainError: "error",
    errors.Invalid: "invalid",
    errors.UnknownTargets: "unknown_targets",
    errors.NotFound: "not_found",
    errors.Gone: "gone",
    errors.Conflict: "conflict",
    errors.VersionMismatch: "version_mismatch",
    errors.IdempotencyMismatch: "idempotency_mismatch",
    errors.Locked: "locked",
    errors.Forbidden: "forbidden",
    errors.Unauthorized: "unauthorized",
    errors.RateLimited: "rate_limited",
    errors.Unavailable: "unavailable",
    errors.QueryTimeout: "query_timeout",
    errors.TooLarge: "too_large",
    errors.UnsupportedMediaType: "unsupported_media_type",
    errors.PreconditionFailed: "precondition_failed",
}


def _every(cls: type[errors.DomainError]) -> list[type[errors.DomainError]]:
    """The class and its subclasses in the domain module (not other layers' own)."""
    below = [c for sub in cls.__subclasses__() for c in _every(sub)]
    return [c for c in [cls, *below] if c.__module__ == errors.__name__]


def test_every_error_has_the_code_clients_match_on() -> None:
    assert {cls: cls.code for cls in _every(errors.DomainError)} == CODES


def test_an_instance_says_its_code_and_defaults_to_its_docstring() -> None:
    exc = errors.PreconditionFailed()
    assert (exc.code, exc.detail) == (
        "precondition_failed",
        "The execution changed since the version named in If-Match.",
    )


def test_a_class_may_name_its_own_code() -> None:
    from opstatus.dialects import base

    assert base.Unexpected.code == "internal"
    assert base.InvalidBody.code == "invalid_body"
