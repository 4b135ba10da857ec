"""The MQTT bridge's pure parts: broker URLs, settings, and what counts as a resend."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from opstatus.bridges import dynsec
from opstatus.bridges.mqtt import Broker, UpdateIn, _reflects
from opstatus.domain.records import Execution
from opstatus.domain.states import State
from opstatus.settings import Settings, SettingsError


def test_broker_urls() -> None:
    assert Broker.from_url("mqtt://127.0.0.1") == Broker(host="127.0.0.1", port=1883)
    assert Broker.from_url("mqtts://u%40x:p%2Fw@broker:9000?client_id=b1") == Broker(
        host="broker", port=9000, tls=True, username="u@x", password="p/w", client_id="b1"
    )
    assert Broker.from_url("mqtts://broker").port == 8883
    for bad in ("http://broker", "mqtt://", "mqtt://broker?qos=2"):
        with pytest.raises(ValueError):
            Broker.from_url(bad)


def test_settings_read_the_broker_url() -> None:
    assert Settings.from_env({}).mqtt_url is None
    url = "mqtt://127.0.0.1:1883"
    assert Settings.from_env({"OPSTATUS_MQTT_URL": url}).mqtt_url == url
    with pytest.raises(SettingsError, match="OPSTATUS_MQTT_URL"):
        Settings.from_env({"OPSTATUS_MQTT_URL": "127.0.0.1:1883"})


def _execution(**fields: object) -> Execution:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    base: dict[str, object] = {
        "id": "ex_1", "tenant": "t", "operation_id": "op_1", "target": "node-1",
        "state": State.IN_PROGRESS, "progress": 30.0, "eta": None, "details": {"step": 2},
        "error": None, "result": None, "attempt": 1, "version": 4, "queued_at": now,
        "started_at": now, "updated_at": now, "finished_at": None, "lease_expires_at": None,
    }  # fmt: skip
    base.update(fields)
    return Execution(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("update", "resend"),
    [
        ({"state": "in_progress", "progress": 30}, True),
        ({"state": "in_progress", "progress": 30, "details": {"step": 2}}, True),
        ({"state": "in_progress", "progress": 31}, False),
        ({"state": "in_progress", "details": {"step": 3}}, False),
        ({"state": "succeeded"}, False),
        ({"progress": 30}, False),  # no state: nothing says the first copy got through
        ({"state": "in_progress", "error": "boom"}, False),
    ],
)
def test_a_resend_is_an_update_whose_effect_is_already_there(
    update: dict[str, object], resend: bool
) -> None:
    request = msgspec.convert(update, UpdateIn)
    assert _reflects(_execution(), request) is resend


def test_dispatched_is_never_a_resend() -> None:
    request = UpdateIn(state=State.DISPATCHED)
    assert _reflects(_execution(state=State.DISPATCHED), request) is False


def test_an_update_payload_carries_no_key() -> None:
    """Identity is the broker connection's: a payload naming a key is refused."""
    with pytest.raises(msgspec.ValidationError, match="key"):
        msgspec.convert({"key": "opk_x", "state": "acknowledged"}, UpdateIn)


def test_an_agent_acl_admits_only_its_own_topics_and_its_targets_notices() -> None:
    acls = dynsec.agent_acls("acme", "key_1", ["node-1", "bad/level", "node-2"])
    by_kind: dict[str, set[str]] = {}
    for acl in acls:
        assert acl["allow"] is True
        by_kind.setdefault(acl["acltype"], set()).add(acl["topic"])
    own = "opstatus/acme/agents/key_1/#"
    inboxes = {"opstatus/acme/targets/node-1/inbox", "opstatus/acme/targets/node-2/inbox"}
    assert by_kind["publishClientSend"] == {own}  # never a notice, never another's prefix
    assert by_kind["subscribePattern"] == {own}
    assert by_kind["subscribeLiteral"] == inboxes  # literal: no wildcard subscriptions
    assert by_kind["publishClientReceive"] == {own} | inboxes


def test_provisioning_remakes_the_client_with_its_tenant_and_role() -> None:
    commands = dynsec.provision_commands("acme", "key_1", ["node-1"], "pw")
    assert [c["command"] for c in commands] == [
        "deleteClient", "deleteRole", "createRole", "createClient",
    ]  # fmt: skip
    client = commands[-1]
    assert (client["username"], client["password"]) == ("key_1", "pw")
    assert client["roles"] == [{"rolename": "opstatus-agent-key_1", "priority": 0}]
    listing = {"data": {"clients": [
        {**client, "textname": dynsec.MANAGED}, {"username": "someone-else", "textname": "x"},
    ]}}  # fmt: skip
    assert dynsec.managed_clients(listing) == [("acme", "key_1")]
