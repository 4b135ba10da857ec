"""Scenarios: targets labelled ``scenario`` run their work without an agent.

The :class:`Driver` runs in the server (testing mode only). It hears every inbox
wake-up through the notifier, and for a target whose ``scenario`` label names a
profile it claims the work and reports on it through the service layer, as the
simulated agents of ``opstatus simulate`` do over HTTP: acknowledged, in progress in
steps, then succeeded or failed. Every API and dialect shows those states as it
shows an agent's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import msgspec

from opstatus.domain import errors
from opstatus.domain.records import ExecutionUpdate
from opstatus.domain.states import State
from opstatus.service.operations import InboxItem, Operations

log = logging.getLogger("opstatus.testing")

#: the target label that names a target's profile
LABEL = "scenario"
#: seconds between looks at the known scenario targets, besides every wake-up
RESCAN = 1.0
#: custom profiles one tenant may hold
MAX_PROFILES = 100

Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class Profile(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """How a scenario target runs each execution it is given.

    ``succeed`` and ``fail`` report acknowledged, ``steps`` progress reports
    ``step_seconds`` apart, then their outcome; ``flaky`` fails ``failure_rate`` of its
    attempts; ``never`` claims the work and goes silent (its lease runs out).
    """

    outcome: Literal["succeed", "fail", "flaky", "never"] = "succeed"
    steps: Annotated[int, msgspec.Meta(ge=1, le=100)] = 4
    step_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.5
    failure_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    error: str = "scenario failure"
    result: dict[str, Any] = msgspec.field(default_factory=lambda: {"scenario": True})


class ScenarioIn(Profile, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/testing/scenarios``: a named profile of the caller's tenant."""

    name: Name


#: the profiles every tenant has
BUILT_IN: dict[str, Profile] = {
    "succeed": Profile(),
    "fail": Profile(outcome="fail", steps=2),
    "flaky": Profile(outcome="flaky"),
    "never": Profile(outcome="never"),
}


class Scenarios:
    """The built-in profiles and each tenant's own."""

    def __init__(self) -> None:
        self._custom: dict[str, dict[str, Profile]] = {}

    def put(self, tenant: str, name: str, profile: Profile) -> None:
        """Make or replace a custom profile (a built-in name cannot be taken)."""
        if name in BUILT_IN:
            raise errors.Conflict(f"{name!r} is a built-in profile; pick another name")
        mine = self._custom.setdefault(tenant, {})
        if name not in mine and len(mine) >= MAX_PROFILES:
            raise errors.Invalid(f"at most {MAX_PROFILES} custom profiles")
        mine[name] = profile

    def get(self, tenant: str, name: str) -> Profile | None:
        """The profile ``name`` means in ``tenant``."""
        return BUILT_IN.get(name) or self._custom.get(tenant, {}).get(name)

    def all(self, tenant: str) -> dict[str, Profile]:
        """Every profile the tenant can use, built-in ones first."""
        return {**BUILT_IN, **self._custom.get(tenant, {})}

    def clear(self, tenant: str) -> None:
        """Forget the tenant's custom profiles."""
        self._custom.pop(tenant, None)


class Driver:
    """Runs every scenario target's work in this process."""

    def __init__(
        self, operations: Operations, scenarios: Scenarios, rng: random.Random | None = None
    ) -> None:
        self.operations = operations
        self.scenarios = scenarios
        self.rng = rng or random.Random()
        self._pending: set[tuple[str, str]] = set()
        self._known: set[tuple[str, str]] = set()
        self._playing: set[tuple[str, int]] = set()  #: (execution id, attempt)
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    def heard(self, key: str) -> None:
        """A notifier key: an inbox wake-up puts its target on the list to look at."""
        kind, _, rest = key.partition(":")
        if kind == "inbox":
            tenant, _, target = rest.partition(":")
            self._pending.add((tenant, target))
            self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Listen and drive for the duration of the ``async with``."""
        with self.operations.notifier.listening(self.heard):
            loop = asyncio.create_task(self._loop(), name="opstatus-scenarios")
            try:
                yield
            finally:
                for task in (loop, *self._tasks):
                    task.cancel()
                await asyncio.gather(loop, *self._tasks, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RESCAN)
            self._wake.clear()
            todo, self._pending = self._pending | self._known, set()
            for tenant, target in sorted(todo):
                try:
                    await self.visit(tenant, target)
                except Exception:  # one target's trouble must not stop the others
                    log.exception("scenario target %s failed", target)

    async def visit(self, tenant: str, target: str) -> None:
        """Claim and start the work of one target, if it is a scenario target."""
        ops = self.operations
        try:
            found = await ops.store.get_target(tenant, target)
        except errors.NotFound:
            self._known.discard((tenant, target))
            return
        name = found.labels.get(LABEL)
        profile = self.scenarios.get(tenant, name) if name else None
        if profile is None:
            self._known.discard((tenant, target))
            return
        self._known.add((tenant, target))
        for item in await ops.claim_inbox(tenant, target, limit=ops.limits.max_claim):
            handle = (item.execution.id, item.execution.attempt)
            if handle in self._playing:
                continue
            self._playing.add(handle)
            task = asyncio.create_task(self._play(tenant, item, profile, handle))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _play(
        self, tenant: str, item: InboxItem, profile: Profile, handle: tuple[str, int]
    ) -> None:
        if profile.outcome == "never":
            return  # claimed, never reported: the lease and heartbeat deadlines take over
        try:
            await self._report(
                tenant, item, state=State.ACKNOWLEDGED, expected_version=item.execution.version
            )
            for step in range(1, profile.steps + 1):
                await asyncio.sleep(profile.step_seconds)
                progress = 100.0 * step / (profile.steps + 1)
                await self._report(tenant, item, state=State.IN_PROGRESS, progress=progress)
            if self._fails(profile):
                await self._report(tenant, item, state=State.FAILED, error=profile.error)
            else:
                await self._report(
                    tenant, item, state=State.SUCCEEDED, progress=100.0, result=profile.result
                )
        except errors.DomainError as exc:
            # cancelled, reset or timed out meanwhile: the work is no longer ours
            log.info("scenario %s stopped: %s", item.execution.id, exc.detail)
        finally:
            self._playing.discard(handle)

    def _fails(self, profile: Profile) -> bool:
        if profile.outcome == "flaky":
            return self.rng.random() < profile.failure_rate
        return profile.outcome == "fail"

    async def _report(self, tenant: str, item: InboxItem, **update: Any) -> None:
        await self.operations.update_execution(tenant, item.execution.id, ExecutionUpdate(**update))
