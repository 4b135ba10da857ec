"""The MQTT bridge's pure parts: broker URLs, settings, and what counts as a resend."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

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
    request = msgspec.convert({"key": "k", **update}, UpdateIn)
    assert _reflects(_execution(), request) is resend


def test_dispatched_is_never_a_resend() -> None:
    request = UpdateIn(key="k", state=State.DISPATCHED)
    assert _reflects(_execution(state=State.DISPATCHED), request) is False
