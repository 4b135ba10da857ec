"""``opstatus op …`` as a subprocess against the real ``opstatus serve``, on both stores."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import Key, Server, Tenant, clean_env, opstatus_command

#: seconds a command may take; watch commands wait for the test to finish the work
DEADLINE = 60.0
OPERATION_FIELDS = {
    "id", "number", "tenant", "kind", "parameters", "internal", "state", "progress", "eta",
    "error", "result", "counts", "targets", "created_at", "started_at", "updated_at",
    "completed_at", "schedule_at", "version",
}  # fmt: skip
EXECUTION_FIELDS = {
    "id", "operation_id", "target", "state", "progress", "eta", "details", "error", "result",
    "attempt", "version", "queued_at", "started_at", "updated_at", "finished_at",
}  # fmt: skip


@pytest.fixture
def tenant(server: Server) -> Tenant:
    """A tenant of this test's own."""
    return server.tenant("cli")


@pytest.fixture
def operator(server: Server, tenant: Tenant) -> Key:
    """An operator key of the test's tenant."""
    return server.key(tenant, "operator")


def env_for(server: Server, key: Key, tmp_path: Path, **extra: str) -> dict[str, str]:
    """OPSTATUS_URL/OPSTATUS_KEY for ``key``, and no config file of the caller's."""
    env = clean_env(OPSTATUS_URL=server.base_url, OPSTATUS_KEY=key.secret, COLUMNS="200")
    env["OPSTATUS_CONFIG"] = str(tmp_path / "absent.toml")
    env.update(extra)
    return env


def op(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``opstatus op ARGS`` to completion."""
    return subprocess.run(
        [*opstatus_command(), "op", *args],
        env=env, capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip


def op_json(env: dict[str, str], *args: str) -> Any:
    """Run ``opstatus op ARGS --output json``; exit 0 and one JSON document."""
    result = op(env, *args, "--output", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def start_watch(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``opstatus op watch ARGS`` running in the background."""
    return subprocess.Popen(
        [*opstatus_command(), "op", "watch", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_create_get_list_events_cancel(server: Server, operator: Key, tmp_path: Path) -> None:
    env = env_for(server, operator, tmp_path)
    made = op_json(
        env, "create", "image-update", "--target", "web-1", "--target", "web-2",
        "--param", "version=v1.2", "--param", "batch=3", "--param", 'opts={"dry": true}',
    )  # fmt: skip
    assert OPERATION_FIELDS <= set(made)
    assert made["kind"] == "image-update"
    assert made["targets"] == ["web-1", "web-2"]
    assert made["parameters"] == {"version": "v1.2", "batch": 3, "opts": {"dry": True}}
    assert made["state"] == "queued"

    found = op_json(env, "get", made["id"])
    assert found["id"] == made["id"]
    assert [e["target"] for e in found["executions"]] == ["web-1", "web-2"]
    assert all(EXECUTION_FIELDS <= set(e) for e in found["executions"])
    table = op(env, "get", made["id"])
    assert table.returncode == 0, table.stderr
    assert made["id"] in table.stdout and "queued" in table.stdout

    page = op_json(env, "list", "--kind", "image-update", "--state", "queued", "--limit", "5")
    assert [item["id"] for item in page["items"]] == [made["id"]]
    assert "next_cursor" in page
    assert op_json(env, "list", "--target", "elsewhere")["items"] == []
    listed = op(env, "list")
    assert listed.returncode == 0 and made["id"] in listed.stdout

    events = op_json(env, "events", made["id"])
    assert events["items"] and all(e["operation_id"] == made["id"] for e in events["items"])

    cancelled = op_json(env, "cancel", made["id"])
    assert cancelled["state"] == "cancelled"
    followed = op(env, "events", made["id"], "--follow", "--output", "json")
    assert followed.returncode == 0, followed.stderr
    lines = [json.loads(line) for line in followed.stdout.splitlines()]
    assert lines[-1]["state"] == "cancelled"


def test_watch_exits_0_when_the_agent_succeeds(
    server: Server, operator: Key, tmp_path: Path
) -> None:
    made = server.create(operator, ["node-1"])
    watch = start_watch(env_for(server, operator, tmp_path), made["id"], "--output", "json")
    [item] = server.pull(operator, "node-1")
    server.report(operator, item["id"], state="in_progress", progress=50)
    server.report(operator, item["id"], state="succeeded", progress=100)
    out, err = watch.communicate(timeout=DEADLINE)
    assert watch.returncode == 0, err
    final = json.loads(out)
    assert final["state"] == "succeeded" and final["executions"][0]["progress"] == 100


def test_watch_exits_1_when_cancelled(server: Server, operator: Key, tmp_path: Path) -> None:
    made = server.create(operator, ["node-2", "node-3"])
    watch = start_watch(env_for(server, operator, tmp_path), made["id"])
    [item] = server.pull(operator, "node-2")
    server.report(operator, item["id"], state="in_progress", progress=30)
    response = server.http.post(
        f"/v1/operations/{made['id']}/cancel", json={"force": True}, headers=operator.headers
    )
    assert response.status_code == 200, response.text
    out, err = watch.communicate(timeout=DEADLINE)
    assert watch.returncode == 1, err
    assert "node-2" in out and "node-3" in out and "cancelled" in out


def test_watch_of_an_unknown_operation_fails(server: Server, operator: Key, tmp_path: Path) -> None:
    result = op(env_for(server, operator, tmp_path), "watch", "op_nosuchthing")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")


def test_bad_key_prints_one_error_line(server: Server, tmp_path: Path) -> None:
    env = env_for(server, Key(id="x", secret="wrong", role="admin", tenant="x"), tmp_path)
    result = op(env, "list")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ")
    assert result.stdout == ""


def test_usage_errors_exit_2(server: Server, operator: Key, tmp_path: Path) -> None:
    env = env_for(server, operator, tmp_path)
    assert op(env, "create", "k").returncode == 2  # no target
    assert op(env, "create", "k", "--target", "a", "--param", "novalue").returncode == 2
    no_url = clean_env(OPSTATUS_CONFIG=str(tmp_path / "absent.toml"))
    result = op(no_url, "list")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no server URL")


def test_config_file_fallback(server: Server, operator: Key, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'url = "{server.base_url}"\nkey = "{operator.secret}"\n')
    made = server.create(operator, ["cfg-1"])
    env = clean_env(OPSTATUS_CONFIG=str(config))
    assert op_json(env, "get", made["id"])["id"] == made["id"]
    # the environment wins over the file
    env_wins = clean_env(OPSTATUS_CONFIG=str(config), OPSTATUS_KEY="wrong")
    assert op(env_wins, "get", made["id"]).returncode == 1
