"""The MQTT bridge (DESIGN.md §7): agents that speak MQTT instead of HTTP.

Topics, all under ``opstatus/{tenant}/`` and all QoS 1, payloads JSON:

``targets/{target}/inbox`` (bridge → agents)
    ``{"type": "available", "tenant", "target"}`` whenever work may be waiting for
    the target (the notifier's inbox wake-ups, local or relayed from other replicas),
    and ``{"type": "dispatched", "tenant", "target", "items": [inbox items]}`` in
    answer to a claim: the executions now dispatched to the target, lease running,
    each shaped as ``GET /v1/targets/{id}/inbox`` renders it.
``targets/{target}/claim`` (agent → bridge)
    ``{"key": agent secret, "limit": n}``: read the inbox, as the HTTP GET does.
``executions/{id}/update`` (agent → bridge)
    ``{"key": agent secret, …the PATCH /v1/executions/{id} body}``.
``executions/{id}/accepted`` and ``…/rejected``, ``targets/{target}/rejected`` (bridge → agents)
    the execution as it now is, or ``{"code", "detail", "state"?, "parameter"?, "current"?}``.

Why the bridge dispatches only when asked: a notice is pushed to targets that may
have no MQTT agent at all (HTTP agents, devices that call in once an hour). Claiming
for them would start leases nobody renews, and a spent lease times the work out.
So an ``available`` notice says "claim now", and the claim — like the HTTP inbox
read — is what dispatches. An agent claims on start-up and on every ``available``.

Delivery: the broker may restart or the connection drop at any moment, so the
reply is the agent's acknowledgement: an agent resends an update until it sees
``accepted`` or ``rejected`` for it (MQTT v5 agents may put Correlation Data on a
request; the reply carries it back). Resends are safe: an update whose effect is
already there (the execution is in the requested state with the requested
progress, error, result and details — a duplicate ``succeeded``, or a resend whose
``expected_version`` has since moved on because the first copy was applied) is
answered ``accepted`` with the current execution rather than rejected.

The bridge itself reconnects forever with capped backoff, on a persistent session
(MQTT v5, clean start off, a fixed client id per process, session expiry) so
requests published during a short disconnection reach it afterwards. It
subscribes through the shared subscription ``$share/opstatus-bridge/…``, so with
several replicas each request is handled once. Keys are never logged.

Target ids holding ``/``, ``+``, ``#`` or NUL cannot be MQTT topic levels; such
targets are served over HTTP only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, TypeVar

import aiomqtt
import msgspec
from msgspec import Meta, Struct
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from opstatus import wire
from opstatus.api import convert
from opstatus.domain import errors
from opstatus.domain.records import Execution, ExecutionUpdate
from opstatus.domain.roles import Action
from opstatus.domain.states import State
from opstatus.service.credentials import Credentials, Principal
from opstatus.service.operations import Operations

log = logging.getLogger("opstatus.mqtt")

ROOT = "opstatus"
SHARE_GROUP = "opstatus-bridge"
#: what the bridge subscribes to (under ``$share/{SHARE_GROUP}/``)
SUBSCRIPTIONS = (f"{ROOT}/+/executions/+/update", f"{ROOT}/+/targets/+/claim")
#: how long the broker keeps the bridge's session (and its queued requests) while away
SESSION_EXPIRY = 3600
BACKOFF_FIRST = 0.2
BACKOFF_CAP = 10.0
_NOT_A_LEVEL = ("/", "+", "#", "\0")

_T = TypeVar("_T")

Secret = Annotated[str, Meta(min_length=1, max_length=500)]


class UpdateIn(wire.ExecutionUpdateIn, kw_only=True):
    """An update as an MQTT agent publishes it: the PATCH body plus the agent's key."""

    key: Secret


class ClaimIn(Struct, forbid_unknown_fields=True, kw_only=True):
    """A claim: read the target's inbox, dispatching queued work to it."""

    key: Secret
    limit: Annotated[int, Meta(ge=1, le=100)] = 10


class Available(Struct, kw_only=True, tag_field="type", tag="available"):
    """Work may be waiting for the target: claim it."""

    tenant: str
    target: str


class Dispatched(Struct, kw_only=True, tag_field="type", tag="dispatched"):
    """The answer to a claim: the work the target now holds."""

    tenant: str
    target: str
    items: list[wire.InboxItemOut]


class Rejected(Struct, kw_only=True, omit_defaults=True):
    """Why a request was refused; ``current`` is the execution when that helps."""

    code: str
    detail: str
    state: str | None = None
    parameter: str | None = None
    current: wire.ExecutionOut | None = None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Broker:
    """Where the broker is, from ``mqtt://[user[:password]@]host[:port][?client_id=ID]``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    client_id: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Broker:
        """Parse a broker URL (``mqtts://`` for TLS); ValueError when it is not one."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"an MQTT URL looks like mqtt://host:1883, not {url!r}")
        query = urllib.parse.parse_qs(parts.query)
        unknown = set(query) - {"client_id"}
        if unknown:
            raise ValueError(f"unknown MQTT URL parameters: {', '.join(sorted(unknown))}")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password else None,
            client_id=query["client_id"][-1] if "client_id" in query else None,
        )


def inbox_topic(tenant: str, target: str) -> str:
    """Where the target's notices and dispatched work are published."""
    return f"{ROOT}/{tenant}/targets/{target}/inbox"


class MqttBridge:
    """Carries notices out to MQTT agents and their claims and updates in."""

    def __init__(
        self,
        url: str,
        operations: Operations,
        credentials: Credentials,
        *,
        session_expiry: int = SESSION_EXPIRY,
    ) -> None:
        self.broker = Broker.from_url(url)
        self.operations = operations
        self.credentials = credentials
        self.session_expiry = session_expiry
        self.client_id = self.broker.client_id or (
            f"opstatus-bridge-{socket.gethostname()}-{os.getpid()}"
        )
        # (tenant, target) pairs with work that may be waiting, until announced; kept
        # across disconnections so a notice raised while the broker is away goes out later.
        self._pending: dict[tuple[str, str], None] = {}
        self._wake = asyncio.Event()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Bridge in the background for the duration of the ``async with``."""
        stop_listening = self.operations.notifier.listen(self._on_key)
        task = asyncio.create_task(self.run(), name="opstatus-mqtt")
        try:
            yield
        finally:
            stop_listening()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """Connect, serve, and after any loss of the broker reconnect, forever."""
        delay = BACKOFF_FIRST
        while True:
            try:
                async with self._client() as client:
                    log.info("MQTT bridge connected to %s:%d", self.broker.host, self.broker.port)
                    delay = BACKOFF_FIRST
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                log.warning(
                    "MQTT broker %s:%d unreachable or lost (%s); reconnecting in %.1f s",
                    self.broker.host, self.broker.port, exc, delay,
                )  # fmt: skip
            except Exception:  # a bug must not end the bridge for the process's life
                log.exception("MQTT bridge failed; reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP)

    def _client(self) -> aiomqtt.Client:
        # A fresh client per connection: aiomqtt's state after an unexpected disconnect
        # is not meant for reuse. The session lives on in the broker (clean start off).
        properties = _properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry
        b = self.broker
        return aiomqtt.Client(
            b.host, b.port, username=b.username, password=b.password,
            identifier=self.client_id, protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False, properties=properties,
            tls_context=ssl.create_default_context() if b.tls else None,
            logger=logging.getLogger("opstatus.mqtt.client"),
        )  # fmt: skip

    async def _serve(self, client: aiomqtt.Client) -> None:
        for topic in SUBSCRIPTIONS:
            await client.subscribe(f"$share/{SHARE_GROUP}/{topic}", qos=1)
        announcer = asyncio.create_task(self._announce(client), name="opstatus-mqtt-notices")
        try:
            async for message in client.messages:
                await self._handle(client, message)
        except asyncio.CancelledError:
            # Leaving for good: requests must not queue up in a session nobody resumes.
            with contextlib.suppress(aiomqtt.MqttError):
                await client.unsubscribe(
                    [f"$share/{SHARE_GROUP}/{topic}" for topic in SUBSCRIPTIONS], timeout=2
                )
            raise
        finally:
            announcer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await announcer

    # notices -------------------------------------------------------------------
    def _on_key(self, key: str) -> None:
        # Keys look like notifier.inbox_key(tenant, target): "inbox:{tenant}:{target}".
        kind, _, rest = key.partition(":")
        if kind != "inbox":
            return
        tenant, _, target = rest.partition(":")
        if not tenant or not target or any(c in target for c in _NOT_A_LEVEL):
            return
        self._pending[tenant, target] = None
        self._wake.set()

    async def _announce(self, client: aiomqtt.Client) -> None:
        while True:
            while not self._pending:  # what a lost connection left pending goes out first
                self._wake.clear()
                await self._wake.wait()
            tenant, target = next(iter(self._pending))
            payload = msgspec.json.encode(Available(tenant=tenant, target=target))
            await client.publish(inbox_topic(tenant, target), payload, qos=1)
            # Forget it only once the broker has it: a lost broker keeps it pending.
            self._pending.pop((tenant, target), None)

    # requests ------------------------------------------------------------------
    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        parts = message.topic.value.split("/")
        if len(parts) != 5 or parts[0] != ROOT:
            return
        _, tenant, collection, name, verb = parts
        payload = message.payload
        body = payload.encode() if isinstance(payload, str) else bytes(payload or b"")
        correlation = getattr(message.properties, "CorrelationData", None)
        try:
            if collection == "executions" and verb == "update":
                topic, reply = await self._update(tenant, name, body)
            elif collection == "targets" and verb == "claim":
                topic, reply = await self._claim(tenant, name, body)
            else:
                return
        except Exception:
            # The store failed, say: no answer, so the agent sends the request again.
            log.exception("MQTT %s on %s/%s failed; left unanswered", verb, collection, name)
            return
        properties = None
        if correlation is not None:
            properties = _properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation
        await client.publish(topic, reply, qos=1, properties=properties)

    async def _update(self, tenant: str, execution_id: str, body: bytes) -> tuple[str, bytes]:
        base = f"{ROOT}/{tenant}/executions/{execution_id}"
        try:
            request = _decode(body, UpdateIn)
            principal = await self._principal(request.key, tenant)
            execution = await self.operations.get_execution(tenant, execution_id)
            principal.require(Action.REPORT, execution.target)
            execution = await self._apply(tenant, execution_id, request)
        except errors.DomainError as exc:
            log.info(
                "MQTT update rejected",
                extra={"fields": {"tenant": tenant, "execution": execution_id, "code": exc.code}},
            )
            return f"{base}/rejected", _rejected(exc)
        return f"{base}/accepted", msgspec.json.encode(convert.execution(execution))

    async def _apply(self, tenant: str, execution_id: str, request: UpdateIn) -> Execution:
        update = ExecutionUpdate(
            state=request.state, progress=request.progress, eta=request.eta,
            details=request.details, error=request.error, result=request.result,
            reason=request.reason,
            expected_version=(
                None if request.expected_version is None else int(request.expected_version)
            ),
        )  # fmt: skip
        try:
            return await self.operations.update_execution(tenant, execution_id, update)
        except errors.Conflict as exc:
            current = exc.current if isinstance(exc, errors.VersionMismatch) else None
            if current is None:
                current = await self.operations.get_execution(tenant, execution_id)
            if isinstance(current, Execution) and _reflects(current, request):
                return current  # a resent update whose effect is already there
            raise

    async def _claim(self, tenant: str, target: str, body: bytes) -> tuple[str, bytes]:
        try:
            request = _decode(body, ClaimIn)
            principal = await self._principal(request.key, tenant)
            principal.require(Action.PULL, target)
            items = await self.operations.claim_inbox(tenant, target, request.limit)
        except errors.DomainError as exc:
            log.info(
                "MQTT claim rejected",
                extra={"fields": {"tenant": tenant, "target": target, "code": exc.code}},
            )
            return f"{ROOT}/{tenant}/targets/{target}/rejected", _rejected(exc)
        answer = Dispatched(
            tenant=tenant, target=target, items=[convert.inbox_item(i) for i in items]
        )
        return inbox_topic(tenant, target), msgspec.json.encode(answer)

    async def _principal(self, key: str, tenant: str) -> Principal:
        principal = await self.credentials.by_secret(key)
        if principal.tenant != tenant:
            # The topic names another tenant: a hard wall, whatever the key may do.
            raise errors.Forbidden(f"this key does not belong to tenant {tenant!r}")
        return principal


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]  # paho leaves it unannotated


def _decode(body: bytes, kind: type[_T]) -> _T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise errors.Invalid(f"the payload is not valid: {exc}") from None
    except msgspec.DecodeError:
        raise errors.Invalid("the payload is not JSON") from None


def _reflects(current: Execution, request: UpdateIn) -> bool:
    """Whether ``current`` already shows everything ``request`` asks for."""
    if request.state in (None, State.DISPATCHED) or current.state is not request.state:
        return False  # only the inbox dispatches, so no update of that can be a resend
    wanted: Mapping[str, object] = {
        "progress": request.progress, "error": request.error, "result": request.result,
    }  # fmt: skip
    if any(v is not None and getattr(current, k) != v for k, v in wanted.items()):
        return False
    details = request.details or {}
    return all(current.details.get(k) == v for k, v in details.items())


def _rejected(exc: errors.DomainError) -> bytes:
    current = exc.current if isinstance(exc, errors.VersionMismatch) else None
    state = exc.state if isinstance(exc, errors.Conflict) else None
    parameter = exc.context.get("parameter")
    return msgspec.json.encode(
        Rejected(
            code=exc.code,
            detail=exc.detail,
            state=state,
            parameter=None if parameter is None else str(parameter),
            current=convert.execution(current) if isinstance(current, Execution) else None,
        )
    )
