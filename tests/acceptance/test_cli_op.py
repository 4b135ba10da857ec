"""``opstatus op …`` as a subprocess against the real ``opstatus serve``, on both stores."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import Key, Server, Tenant, clean_env, opstatus_command

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
    env = clean_env(OPSTATUS_URL=server.url, OPSTATUS_KEY=key.secret, COLUMNS="200")
    env["OPSTATUS_CONFIG"] = str(tmp_path / "absent.toml")
    env.update(extra)
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``opstatus ARGS`` to completion."""
    return subprocess.run(
        [*opstatus_command(), *args],
        env=env, capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip


def op(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``opstatus op ARGS`` to completion."""
    return run(env, "op", *args)


def run_json(env: dict[str, str], *args: str) -> Any:
    """Run ``opstatus ARGS -o json``; exit 0 and one JSON document."""
    result = run(env, *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def op_json(env: dict[str, str], *args: str) -> Any:
    """Run ``opstatus op ARGS --output json``; exit 0 and one JSON document."""
    return run_json(env, "op", *args)


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
        "--param", "version=2.10", "--param", "batch=3", "--param-json", 'opts={"dry": true}',
        "--param-json", "n=3",
    )  # fmt: skip
    assert OPERATION_FIELDS <= set(made)
    assert made["kind"] == "image-update"
    assert made["targets"] == ["web-1", "web-2"]
    # --param sends text as typed; --param-json the JSON value
    assert made["parameters"] == {
        "version": "2.10", "batch": "3", "opts": {"dry": True}, "n": 3,
    }  # fmt: skip
    assert made["state"] == "queued"

    found = op_json(env, "get", made["id"])
    assert found["id"] == made["id"]
    for number in (str(made["number"]), f"#{made['number']}"):  # as lists show it
        assert op_json(env, "get", number)["id"] == made["id"]
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
    assert out.endswith("\n")  # the shell prompt starts on a line of its own


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
    assert op(env, "create", "k", "--target", "a", "--param-json", "n=not json").returncode == 2
    no_url = clean_env(OPSTATUS_CONFIG=str(tmp_path / "absent.toml"))
    for args in (("op", "list"), ("target", "list"), ("agent", "--target", "a", "--exec", "true"),
                 ("simulate", "--targets", "1")):  # fmt: skip
        result = run(no_url, *args)  # one resolver: the same answer everywhere
        assert result.returncode == 2, args
        assert result.stderr.startswith("error: no server URL"), args


def test_config_file_fallback(server: Server, operator: Key, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'url = "{server.url}"\nkey = "{operator.secret}"\n')
    made = server.create(operator, ["cfg-1"])
    env = clean_env(OPSTATUS_CONFIG=str(config))
    assert op_json(env, "get", made["id"])["id"] == made["id"]
    # the environment wins over the file
    env_wins = clean_env(OPSTATUS_CONFIG=str(config), OPSTATUS_KEY="wrong")
    assert op(env_wins, "get", made["id"]).returncode == 1


@pytest.mark.parametrize("columns", ["80", "120"])
def test_list_shows_ids_in_full_at_any_width(
    server: Server, operator: Key, tmp_path: Path, columns: str
) -> None:
    made = server.create(operator, ["a-target-with-a-rather-long-name", "and-another-one"])
    listed = op(env_for(server, operator, tmp_path, COLUMNS=columns), "list")
    assert listed.returncode == 0, listed.stderr
    assert made["id"] in listed.stdout
    assert max(len(line) for line in listed.stdout.splitlines()) <= int(columns)


def test_cancel_names_what_it_left_running_then_retry_and_delete(
    server: Server, operator: Key, tmp_path: Path
) -> None:
    env = env_for(server, operator, tmp_path)
    made = server.create(operator, ["run-1", "run-2"])
    number = f"#{made['number']}"
    [first] = server.pull(operator, "run-1")
    server.report(operator, first["id"], state="failed", error="boom")
    retried = op_json(env, "retry", number)["executions"]
    assert {e["target"]: (e["state"], e["attempt"]) for e in retried} == {
        "run-1": ("queued", 2), "run-2": ("queued", 1),
    }  # fmt: skip
    [again] = server.pull(operator, "run-1")
    assert again["attempt"] == 2
    server.report(operator, again["id"], state="in_progress", progress=10)
    nothing = op(env, "retry", number)
    assert nothing.returncode == 1 and "no failed or timed-out execution" in nothing.stderr

    cancelled = op(env, "cancel", number, "-o", "json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["state"] == "running"  # run-1 still works
    assert "left running: run-1 (in_progress)" in cancelled.stderr
    assert "--force" in cancelled.stderr
    forced = op(env, "cancel", number, "--force")
    assert forced.returncode == 0 and forced.stderr == ""

    assert op(env, "delete", str(made["number"])).returncode == 0
    gone = op(env, "get", made["id"])
    assert gone.returncode == 1 and gone.stderr.startswith("error: ")


def test_targets_groups_keys_and_events(server: Server, tenant: Tenant, tmp_path: Path) -> None:
    env = env_for(server, tenant.admin, tmp_path)
    target = run_json(env, "target", "put", "lamp-9", "--name", "Lamp 9", "--label", "room=a")
    assert target["labels"] == {"room": "a"} and target["name"] == "Lamp 9"
    assert run_json(env, "target", "get", "lamp-9") == target
    assert target in run_json(env, "target", "list")
    group = run_json(env, "group", "put", "lamps", "--target", "lamp-9")
    assert run_json(env, "group", "get", "lamps") == group and group["targets"] == ["lamp-9"]

    key = run_json(env, "key", "create", "--role", "viewer", "--name", "ro")
    assert key["secret"] and key["role"] == "viewer"
    assert key["id"] in [k["id"] for k in run_json(env, "key", "list")]
    viewer = env_for(server, Key(id=key["id"], secret=key["secret"], role="viewer",
                                 tenant=tenant.id), tmp_path)  # fmt: skip
    assert run_json(viewer, "target", "get", "lamp-9")["id"] == "lamp-9"
    assert run_json(env, "key", "revoke", key["id"])["revoked_at"]
    assert run(viewer, "target", "get", "lamp-9").returncode == 1

    made = server.create(tenant.admin, ["lamp-9"])
    page = run_json(env, "events")
    assert made["id"] in [e["operation_id"] for e in page["items"]]
    later = run_json(env, "events", "--after", str(page["last_seq"]))
    assert later["items"] == [] and later["last_seq"] == page["last_seq"]
    tables = {
        ("target", "list"): "lamp-9", ("group", "get", "lamps"): "lamp-9",
        ("key", "list"): key["id"], ("events",): "operation.created",
    }  # fmt: skip
    for args, shown in tables.items():
        table = run(env, *args)
        assert table.returncode == 0 and shown in table.stdout, (args, table.stderr)


def test_the_config_file_serves_agent_and_resource_commands(
    server: Server, tenant: Tenant, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'url = "{server.url}"\nkey = "{tenant.admin.secret}"\n')
    env = clean_env(OPSTATUS_CONFIG=str(config))
    assert run_json(env, "target", "put", "cfg-agent")["id"] == "cfg-agent"
    made = server.create(tenant.admin, ["cfg-agent"])
    agent = subprocess.Popen(
        [*opstatus_command(), "agent", "--target", "cfg-agent", "--exec", "true", "--poll", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        watched = op(env, "watch", made["id"], "-o", "json")  # returns when the agent is done
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=DEADLINE)
    assert watched.returncode == 0, watched.stderr
    assert json.loads(watched.stdout)["state"] == "succeeded"
    assert agent.returncode == 0, err


def test_every_output_option_is_o_table_or_json_and_version() -> None:
    import typer.main

    from opstatus.cli import app

    def commands(group: Any, path: str) -> Iterator[tuple[str, Any]]:
        yield path, group
        for name, sub in getattr(group, "commands", {}).items():
            yield from commands(sub, f"{path} {name}")

    found = 0
    for path, command in commands(typer.main.get_command(app), "opstatus"):
        for param in command.params:
            if param.name == "output":
                found += 1
                assert param.opts == ["--output", "-o"], path
                choices = {c.value for c in param.type_descriptor.annotation}
                assert choices in ({"table", "json"}, {"table", "text", "json"}), path
                assert param.default == "table", path
    assert found > 20
    version = subprocess.run(
        [*opstatus_command(), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("opstatus ") and version.stdout.strip()[-1].isdigit()
