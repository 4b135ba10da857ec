"""The port through which the HTTP API hands MQTT agents their broker identity.

The MQTT bridge (``opstatus.bridges.mqtt``) implements it; the app factory passes it
to the API when a broker is configured. The API never imports the bridge.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from opstatus.service.credentials import Principal


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class BrokerCredentials:
    """What an agent needs to connect to the broker as itself."""

    host: str
    port: int
    tls: bool
    username: str  #: the key id
    password: str  #: generated now, shown once; the previous one stops working
    prefix: str  #: ``opstatus/{tenant}/agents/{key id}``: its requests and replies
    inboxes: list[str]  #: the notice topics of its targets


class BrokerIdentities(Protocol):
    """Makes and removes the broker identities of agent keys."""

    async def issue(self, principal: Principal) -> BrokerCredentials:
        """(Re)make the broker client of ``principal``'s agent key with a new password.

        Forbidden for keys that are not agent keys; Unavailable while the broker
        cannot be reached.
        """
        ...
