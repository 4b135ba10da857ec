"""The real ``opstatus`` command in a subprocess: serve over real HTTP, db upgrade, admin."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.server import free_port, run_cli, serve_process, stop, wait_healthy


def test_serve_answers_health_and_readiness_then_stops_cleanly(
    store_url: str, tmp_path: Path
) -> None:
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", tmp_path / "serve.log"
    args = ["--host", "127.0.0.1", "--port", str(port), "--database", store_url]
    with serve_process(args, tmp_path, log) as proc:
        wait_healthy(url, proc, log)
        with httpx.Client(base_url=url, timeout=5) as client:
            health = client.get("/healthz")
            assert health.json() == {"status": "ok"}
            assert health.headers["content-type"] == "application/json"
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json() == {"status": "ready"}
        stop(proc, log)
    assert "Application shutdown complete" in log.read_text()


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read the backlog")
def test_serve_listens_with_the_backlog_asked_for(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    url = f"sqlite:///{tmp_path}/opstatus.db"
    args = ["--host", "127.0.0.1", "--port", str(port), "--database", url, "--backlog", "777"]
    with serve_process(args, tmp_path, log) as proc:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        # For a listening socket, ss reports the accept-queue limit as Send-Q.
        listing = subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert listing[0] == "LISTEN" and listing[2] == "777", listing


def test_serve_refuses_a_backlog_below_one(tmp_path: Path) -> None:
    result = run_cli("serve", "--backlog", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "--backlog" in result.stderr


def test_db_upgrade_migrates_and_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/opstatus.db"
    first = run_cli("db", "upgrade", "--database", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("schema version ")
    assert int(first.stdout.split()[-1]) >= 1
    again = run_cli("db", "upgrade", "--database", url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert (tmp_path / "opstatus.db").exists()


def test_db_upgrade_defaults_to_opstatus_db_in_the_working_directory(tmp_path: Path) -> None:
    result = run_cli("db", "upgrade", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "opstatus.db").exists()


def test_admin_tenant_create_prints_one_json_object(store_url: str, tmp_path: Path) -> None:
    result = run_cli(
        "admin", "tenant", "create", "acme", "--name", "Acme Corp",
        "--database", store_url, "--output", "json",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    assert made["id"] == "acme"
    assert made["name"] == "Acme Corp"
    assert made["created_at"].endswith("Z")
    assert set(made) == {"id", "name", "created_at"}

    again = run_cli("admin", "tenant", "create", "acme", "--database", store_url, cwd=tmp_path)
    assert again.returncode == 1
    assert "acme" in again.stderr


def test_admin_tenant_create_text_output(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/opstatus.db"
    result = run_cli("admin", "tenant", "create", "beta-2", "--database", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("created tenant beta-2 (beta-2) at ")


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("Acme", id="uppercase"),
        pytest.param("a b", id="space"),
        pytest.param("acme!", id="punctuation"),
        pytest.param("", id="empty"),
        pytest.param("x" * 64, id="64-chars"),
    ],
)
def test_admin_tenant_create_rejects_a_non_slug_with_exit_2(bad: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/opstatus.db"
    result = run_cli("admin", "tenant", "create", bad, "--database", url, cwd=tmp_path)
    assert result.returncode == 2
    assert "slug" in result.stderr
    assert not (tmp_path / "opstatus.db").exists()


def test_every_command_has_help_with_an_example(tmp_path: Path) -> None:
    commands = (
        ["serve"], ["db", "upgrade"], ["admin", "tenant", "create"],
        ["admin", "key", "create"], ["admin", "key", "list"], ["admin", "key", "revoke"],
    )  # fmt: skip
    for command in commands:
        result = run_cli(*command, "--help", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"Example: opstatus {' '.join(command)}" in result.stdout


def access_lines(log: Path) -> list[dict[str, object]]:
    """The JSON access-log lines the server wrote."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]
    return [line for line in lines if line.get("logger") == "opstatus.access"]


def test_serve_with_workers_bootstraps_and_logs_json_in_every_worker(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    args = ["--port", str(port), "--workers", "2", "--database", f"sqlite:///{tmp_path}/o.db"]
    url, env = f"http://127.0.0.1:{port}", {"OPSTATUS_BOOTSTRAP_ADMIN_KEY": "boot-secret"}
    with serve_process(args, tmp_path, log, env) as proc:
        wait_healthy(url, proc, log)
        with httpx.Client(base_url=url, timeout=5) as client:
            for _ in range(10):
                keys = client.get("/v1/keys", headers={"X-API-Key": "boot-secret"})
                assert keys.status_code == 200, keys.text
                assert keys.json()["items"][0]["role"] == "admin"
            assert client.get("/v1/keys").status_code == 401
        stop(proc, log)
    lines = access_lines(log)
    keys_lines = [line for line in lines if line["route"] == "/v1/keys"]
    assert [line["status"] for line in keys_lines] == [200] * 10 + [401]
    assert {"ts", "request_id", "method", "path", "duration_ms", "client", "key_id"} <= set(
        keys_lines[0]
    )
    assert "boot-secret" not in log.read_text()
    assert '"GET /v1/keys HTTP/1.1" 200' not in log.read_text()  # uvicorn's access log is off


def test_serve_log_level_warning_silences_the_access_log(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    args = [
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--database",
        f"sqlite:///{tmp_path}/o.db",
    ]
    with serve_process(args, tmp_path, log) as proc:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        stop(proc, log)
    assert access_lines(log) == []
