"""Fault rules: which requests get which injected answer (pure; the middleware applies).

A rule matches on path (a glob), method, dialect, target and kind; every field left
out matches anything. A matching request gets, with ``probability``, the rule's
answer: a status in its dialect's error shape, a delay before the real answer, or a
dropped connection. ``count`` rules are used up; ``expires_in`` rules expire on the
service's clock (so advancing it expires them too).
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Annotated

import msgspec

from opstatus.domain import errors, ids

#: rules one tenant may hold at once (each is matched against every request)
MAX_RULES = 100

Status = Annotated[int, msgspec.Meta(ge=200, le=599)]
Seconds = Annotated[int, msgspec.Meta(ge=0, le=86400)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=60_000)]


class Match(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Which requests a rule applies to; a field left out matches every request."""

    path: str | None = None  #: a glob on the path, e.g. ``/v1/videoMesh/*``
    method: str | None = None
    dialect: str | None = None  #: webex, sbc, rsa, clanforge, commandstatus or canonical
    target: str | None = None  #: a path segment, query value or the body's targets
    kind: str | None = None  #: a glob on the body's ``kind``


class Respond(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What a matching request gets; nothing at all stands for a 503."""

    status: Status | None = None
    retry_after: Seconds | None = None
    latency_ms: Millis = 0  #: before the answer (the injected or the real one)
    drop: bool = False  #: close the connection without an answer


class FaultRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/testing/faults``."""

    match: Match = msgspec.field(default_factory=Match)
    respond: Respond = msgspec.field(default_factory=Respond)
    count: Annotated[int, msgspec.Meta(ge=1)] | None = None  #: uses; None: until deleted
    probability: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 1.0
    expires_in: Annotated[float, msgspec.Meta(gt=0)] | None = None  #: seconds


class Fault(msgspec.Struct):
    """A rule as stored and shown; ``count`` is what is left of it."""

    id: str
    match: Match
    respond: Respond
    count: int | None
    probability: float
    expires_at: datetime | None
    hits: int = 0


class Seen(msgspec.Struct, frozen=True):
    """What a rule can match a request on."""

    method: str
    path: str
    dialect: str
    segments: frozenset[str]  #: path segments, query values and the body's target ids
    kind: str | None


class Faults:
    """Every tenant's rules, in the order they were made (the first match wins)."""

    def __init__(self, clock: Callable[[], datetime], rng: random.Random | None = None) -> None:
        self.clock = clock
        self.rng = rng or random.Random()
        self._rules: dict[str, list[Fault]] = {}

    def add(self, tenant: str, request: FaultRequest) -> Fault:
        """Make a rule; Invalid when the tenant holds :data:`MAX_RULES` already."""
        rules = self._live(tenant)
        if len(rules) >= MAX_RULES:
            raise errors.Invalid(f"at most {MAX_RULES} fault rules at once; delete some")
        respond = request.respond
        if respond.status is None and not respond.drop and not respond.latency_ms:
            respond = msgspec.structs.replace(respond, status=503)
        expires = request.expires_in
        fault = Fault(
            id=ids.new_ids("fault", 1)[0], match=request.match, respond=respond,
            count=request.count, probability=request.probability,
            expires_at=None if expires is None else self.clock() + timedelta(seconds=expires),
        )  # fmt: skip
        rules.append(fault)
        return fault

    def live(self, tenant: str) -> list[Fault]:
        """The tenant's live rules."""
        return list(self._live(tenant))

    def delete(self, tenant: str, fault_id: str) -> None:
        """Remove one rule; NotFound when the tenant has none of that id."""
        rules = self._live(tenant)
        for i, fault in enumerate(rules):
            if fault.id == fault_id:
                del rules[i]
                return
        raise errors.NotFound(f"no fault rule {fault_id!r}")

    def clear(self, tenant: str) -> None:
        """Remove every rule of the tenant."""
        self._rules.pop(tenant, None)

    def wants_body(self, tenant: str) -> bool:
        """Whether a rule of the tenant looks into bodies (target or kind)."""
        return any(f.match.target or f.match.kind for f in self._live(tenant))

    def any(self, tenant: str) -> bool:
        """Whether the tenant has a live rule."""
        return bool(self._live(tenant))

    def take(self, tenant: str, seen: Seen) -> Fault | None:
        """The first rule that matches ``seen`` and fires (its probability), used once."""
        rules = self._live(tenant)
        for fault in rules:
            if not matches(fault.match, seen) or self.rng.random() >= fault.probability:
                continue
            fault.hits += 1
            if fault.count is not None:
                fault.count -= 1
                if fault.count == 0:
                    rules.remove(fault)
            return fault
        return None

    def _live(self, tenant: str) -> list[Fault]:
        now = self.clock()
        rules = self._rules.setdefault(tenant, [])
        rules[:] = [f for f in rules if f.expires_at is None or f.expires_at > now]
        return rules


def matches(match: Match, seen: Seen) -> bool:
    """Whether every field ``match`` names agrees with ``seen``."""
    checks = (
        match.method is None or match.method.upper() == seen.method,
        match.path is None or fnmatch.fnmatchcase(seen.path, match.path),
        match.dialect is None or match.dialect == seen.dialect,
        match.target is None or match.target in seen.segments,
        match.kind is None
        or (seen.kind is not None and fnmatch.fnmatchcase(seen.kind, match.kind)),
    )
    return all(checks)


def body_facts(body: object) -> tuple[Iterable[str], str | None]:
    """Target ids and kind named by a JSON body (canonical creates and reports)."""
    if not isinstance(body, dict):
        return (), None
    targets = body.get("targets")
    found = [t for t in targets if isinstance(t, str)] if isinstance(targets, list) else []
    if isinstance(body.get("target"), str):
        found.append(body["target"])
    kind = body.get("kind")
    return found, kind if isinstance(kind, str) else None
