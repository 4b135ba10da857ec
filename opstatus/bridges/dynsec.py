"""Broker identities for MQTT agents, kept in Mosquitto's dynamic-security plugin.

Every agent key that speaks MQTT has a broker client of its own: username = the key id,
a password opstatus generates (``POST /v1/mqtt/credentials`` hands it to the agent),
and one role whose ACL admits only that key's topics:

- publish and receive under ``opstatus/{tenant}/agents/{key id}/#`` (its requests and
  the bridge's replies to it);
- subscribe to and receive ``opstatus/{tenant}/targets/{target}/inbox`` for each target
  the key is bound to (the "work may be waiting" notices; they carry no work).

So the broker, not a payload, says who sent a request, no agent reads another's
replies (where dispatched work and its parameters travel), and nobody but the bridge
publishes notices. Revoking the key deletes the client, which makes the broker drop
its connection at once.

The plugin is driven through its topic API (``$CONTROL/dynamic-security/v1``): a
publish of ``{"commands": [...]}``, answered on ``…/v1/response``. The functions here
build those commands (pure, unit-tested); :class:`Dynsec` sends them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterable, Sequence
from typing import Any

import aiomqtt
import msgspec

CONTROL = "$CONTROL/dynamic-security/v1"
RESPONSE = f"{CONTROL}/response"
ROOT = "opstatus"
#: the role the bridge gives itself: everything under ``opstatus/``
BRIDGE_ROLE = "opstatus-bridge"
#: ``textname`` of every client opstatus made (so reconciling never touches others)
MANAGED = "opstatus agent key"
#: longest wait for the plugin's answer
TIMEOUT = 10.0
_NOT_A_LEVEL = ("/", "+", "#", "\0")


class DynsecError(RuntimeError):
    """The dynamic-security plugin refused a command or did not answer."""


def is_level(value: str) -> bool:
    """Whether ``value`` can stand as one MQTT topic level."""
    return bool(value) and not any(c in value for c in _NOT_A_LEVEL)


def topic(*levels: str) -> str:
    """The topic that ``levels`` name below :data:`ROOT`."""
    return "/".join((ROOT, *levels))


def agent_prefix(tenant: str, key_id: str) -> str:
    """The topics an agent key publishes its requests under and receives replies on."""
    return topic(tenant, "agents", key_id)


def inbox_topic(tenant: str, target: str) -> str:
    """Where the bridge announces that work may be waiting for ``target``."""
    return topic(tenant, "targets", target, "inbox")


def role_name(key_id: str) -> str:
    """The role of one agent key."""
    return f"opstatus-agent-{key_id}"


def _acl(kind: str, name: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": name, "allow": True, "priority": 0}


def agent_acls(tenant: str, key_id: str, targets: Iterable[str]) -> list[dict[str, Any]]:
    """The ACL of one agent key (see the module); targets that are no topic level are left out."""
    own = f"{agent_prefix(tenant, key_id)}/#"
    acls = [
        _acl("publishClientSend", own),
        _acl("publishClientReceive", own),
        _acl("subscribePattern", own),
        _acl("unsubscribePattern", own),
    ]
    for target in targets:
        if is_level(target):
            notices = inbox_topic(tenant, target)
            acls += [_acl("subscribeLiteral", notices), _acl("publishClientReceive", notices)]
    return acls


def bridge_acls() -> list[dict[str, Any]]:
    """The bridge's own role: publish, subscribe and receive everything under ``opstatus/``."""
    everything = topic("#")
    return [
        _acl("publishClientSend", everything),
        _acl("publishClientReceive", everything),
        _acl("subscribePattern", everything),
        _acl("unsubscribePattern", everything),
    ]


def provision_commands(
    tenant: str, key_id: str, targets: Sequence[str], password: str
) -> list[dict[str, Any]]:
    """Commands that (re)make the key's role and client with ``password``.

    Deleting first makes the commands idempotent (a second issue rotates the password)
    and drops a connection that used the old one; "not found" answers to the deletes
    are expected and ignored by :meth:`Dynsec.provision`.
    """
    role = role_name(key_id)
    return [
        {"command": "deleteClient", "username": key_id},
        {"command": "deleteRole", "rolename": role},
        {"command": "createRole", "rolename": role, "acls": agent_acls(tenant, key_id, targets)},
        {
            "command": "createClient",
            "username": key_id,
            "password": password,
            "textname": MANAGED,
            "textdescription": tenant,
            "roles": [{"rolename": role, "priority": 0}],
        },
    ]


def removal_commands(key_id: str) -> list[dict[str, Any]]:
    """Commands that delete the key's client (disconnecting it) and role."""
    return [
        {"command": "deleteClient", "username": key_id},
        {"command": "deleteRole", "rolename": role_name(key_id)},
    ]


def managed_clients(listing: dict[str, Any]) -> list[tuple[str, str]]:
    """``(tenant, key id)`` of the clients opstatus made, from a verbose ``listClients``."""
    clients = (listing.get("data") or {}).get("clients") or []
    return [
        (str(c.get("textdescription") or ""), str(c["username"]))
        for c in clients
        if isinstance(c, dict) and c.get("textname") == MANAGED and c.get("username")
    ]


class Dynsec:
    """Sends commands to the plugin over the bridge's own connection and awaits answers.

    The bridge subscribes to :data:`RESPONSE` and hands every message on it to
    :meth:`answer`; answers are matched to commands by ``correlationData``.
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self._ids = itertools.count()
        self._prefix = f"{os.getpid()}-{id(self)}-"
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def run(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``commands`` in one publish; their answers, in order."""
        futures = []
        tagged = []
        for command in commands:
            tag = f"{self._prefix}{next(self._ids)}"
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._waiting[tag] = future
            futures.append(future)
            tagged.append({**command, "correlationData": tag})
        try:
            await self.client.publish(CONTROL, msgspec.json.encode({"commands": tagged}), qos=1)
            async with asyncio.timeout(TIMEOUT):
                return list(await asyncio.gather(*futures))
        except (TimeoutError, aiomqtt.MqttError) as exc:
            raise DynsecError(f"the dynamic-security plugin did not answer: {exc}") from exc
        finally:
            for item in tagged:
                self._waiting.pop(item["correlationData"], None)

    def answer(self, payload: bytes) -> None:
        """Hand the plugin's answers to the commands waiting for them."""
        try:
            responses = msgspec.json.decode(payload).get("responses") or []
        except (msgspec.DecodeError, AttributeError):
            return
        for response in responses:
            future = self._waiting.get(str(response.get("correlationData")))
            if future is not None and not future.done():
                future.set_result(response)

    async def checked(self, commands: Sequence[dict[str, Any]], *, tolerate: int = 0) -> None:
        """Run ``commands``; DynsecError when any but the first ``tolerate`` failed."""
        for i, response in enumerate(await self.run(commands)):
            if response.get("error") and i >= tolerate:
                raise DynsecError(f"{response.get('command')}: {response['error']}")

    async def claim_bridge_role(self, username: str) -> bool:
        """Give the bridge's own broker user the role it needs under ``opstatus/``.

        True when the role had to be added: the plugin then drops the bridge's
        connection (a client whose roles change is disconnected), and the bridge
        connects again, now with the role.
        """
        [found] = await self.run([{"command": "getClient", "username": username}])
        roles = ((found.get("data") or {}).get("client") or {}).get("roles") or []
        if any(r.get("rolename") == BRIDGE_ROLE for r in roles if isinstance(r, dict)):
            return False
        await self.checked(
            [
                {"command": "createRole", "rolename": BRIDGE_ROLE, "acls": bridge_acls()},
                {"command": "addClientRole", "username": username, "rolename": BRIDGE_ROLE},
            ],
            tolerate=1,  # the role may exist already, made by another replica
        )
        return True

    async def provision(
        self, tenant: str, key_id: str, targets: Sequence[str], password: str
    ) -> None:
        """Make (or remake) the key's broker client and role."""
        await self.checked(provision_commands(tenant, key_id, targets, password), tolerate=2)

    async def remove(self, key_id: str) -> None:
        """Delete the key's broker client and role; absent ones are fine."""
        await self.run(removal_commands(key_id))

    async def managed(self) -> list[tuple[str, str]]:
        """``(tenant, key id)`` of every broker client opstatus made."""
        [listing] = await self.run([{"command": "listClients", "verbose": True, "count": -1}])
        if listing.get("error"):
            raise DynsecError(f"listClients: {listing['error']}")
        return managed_clients(listing)
