"""``opstatus admin key …`` in a subprocess, against a running ``opstatus serve``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Server, run_cli, running

KEY_FIELDS = {"id", "secret", "tenant", "role", "targets", "name", "created_at"}


def make_tenant(url: str, cwd: Path, tenant: str = "acme") -> None:
    result = run_cli("admin", "tenant", "create", tenant, "--database", url, cwd=cwd)
    assert result.returncode == 0, result.stderr


def make_key(url: str, cwd: Path, *args: str) -> dict[str, object]:
    result = run_cli(
        "admin", "key", "create", "--tenant", "acme", *args,
        "--database", url, "--output", "json",
        cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    made: dict[str, object] = json.loads(result.stdout)
    return made


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/opstatus.db"
    make_tenant(url, tmp_path)
    return url


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """``opstatus serve`` on the parametrized database, which has tenant ``acme``."""
    make_tenant(store_url, tmp_path)
    with running(store_url, tmp_path) as srv:
        yield srv


def test_a_cli_key_authenticates_and_revoke_refuses_it_at_once(
    server: Server, store_url: str, tmp_path: Path
) -> None:
    made = make_key(store_url, tmp_path, "--role", "viewer", "--name", "dashboard")
    assert set(made) == KEY_FIELDS
    assert made["tenant"] == "acme"
    assert made["role"] == "viewer"
    assert made["targets"] == []
    assert made["name"] == "dashboard"
    assert str(made["created_at"]).endswith("Z")
    secret = str(made["secret"])
    headers = {"X-API-Key": secret, "X-Request-ID": "cli-keys-1"}

    listed = server.http.get("/v1/operations", headers=headers)
    assert listed.status_code == 200, listed.text
    assert listed.headers["x-request-id"] == "cli-keys-1"
    # a viewer may read but not manage keys: the role is the one asked for
    assert server.http.get("/v1/keys", headers=headers).status_code == 403

    revoked = run_cli(
        "admin", "key", "revoke", str(made["id"]), "--tenant", "acme", "--database", store_url,
        cwd=tmp_path,
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.startswith(f"revoked key {made['id']} ")
    assert server.http.get("/v1/operations", headers=headers).status_code == 401

    # the access log: one JSON line per request on stderr, with the key that asked
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line[:1] == "{"]
    access = [line for line in lines if line.get("logger") == "opstatus.access"]
    first = next(line for line in access if line["request_id"] == "cli-keys-1")
    assert first["route"] == "/v1/operations"
    assert first["status"] == 200
    assert first["key_id"] == made["id"]
    assert secret not in server.log.read_text()
    metrics = server.http.get("/metrics").text
    assert 'opstatus_http_requests_total{method="GET",route="/v1/operations",status="401"}' in (
        metrics
    )


def test_an_agent_key_is_bound_to_its_targets(sqlite_url: str, tmp_path: Path) -> None:
    made = make_key(
        sqlite_url, tmp_path, "--role", "agent", "--target", "web-1", "--target", "web-2"
    )
    assert made["role"] == "agent"
    assert made["targets"] == ["web-1", "web-2"]


def test_text_output_shows_the_secret_once_and_list_never(sqlite_url: str, tmp_path: Path) -> None:
    created = run_cli(
        "admin", "key", "create", "--tenant", "acme", "--role", "operator",
        "--database", sqlite_url,
        cwd=tmp_path,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    first, second = created.stdout.splitlines()
    assert first.startswith("created key key_")
    assert "role operator" in first
    secret = second.removeprefix("secret ")
    assert secret.startswith("opk_")

    shown: dict[str, str] = {}
    # -o like every command; "text" is the older name of "table", kept for scripts
    for flag, output in (("--output", "text"), ("-o", "table"), ("-o", "json")):
        listed = run_cli(
            "admin", "key", "list", "--tenant", "acme", "--database", sqlite_url,
            flag, output,
            cwd=tmp_path,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert secret not in listed.stdout
        assert "secret" not in listed.stdout
        shown[output] = listed.stdout
    assert shown["text"] == shown["table"] != shown["json"]
    items = json.loads(listed.stdout)["items"]
    assert [item["role"] for item in items] == ["operator"]
    assert items[0]["revoked_at"] is None


def test_list_shows_revoked_keys_and_revoke_twice_fails(sqlite_url: str, tmp_path: Path) -> None:
    made = make_key(sqlite_url, tmp_path, "--role", "admin")
    args = ("--tenant", "acme", "--database", sqlite_url)
    first = run_cli(
        "admin", "key", "revoke", str(made["id"]), *args, "--output", "json", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["revoked_at"].endswith("Z")
    listed = run_cli("admin", "key", "list", *args, "--output", "json", cwd=tmp_path)
    assert json.loads(listed.stdout)["items"][0]["revoked_at"] is not None
    again = run_cli("admin", "key", "revoke", str(made["id"]), *args, cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.splitlines() == [f"error: no active key {made['id']!r}"]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        pytest.param(["--tenant", "nope", "--role", "viewer"], 1, "nope", id="unknown-tenant"),
        pytest.param(["--tenant", "acme", "--role", "agent"], 2, "--target", id="agent-no-target"),
        pytest.param(["--tenant", "acme", "--role", "boss"], 2, "--role", id="bad-role"),
        pytest.param(
            ["--tenant", "acme", "--role", "viewer", "--target", "web-1"], 2, "agent",
            id="target-on-viewer",
        ),
        pytest.param(["--tenant", "No Slug", "--role", "viewer"], 2, "slug", id="bad-tenant"),
    ],
)  # fmt: skip
def test_key_create_errors_are_one_line(
    sqlite_url: str, tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    result = run_cli("admin", "key", "create", *args, "--database", sqlite_url, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    assert says in line
    assert result.stdout == ""


def test_list_of_an_unknown_tenant_fails(sqlite_url: str, tmp_path: Path) -> None:
    result = run_cli(
        "admin", "key", "list", "--tenant", "nope", "--database", sqlite_url, cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["error: no tenant 'nope'"]


def test_key_commands_have_help_with_an_example(tmp_path: Path) -> None:
    for command in ("create", "list", "revoke"):
        result = run_cli("admin", "key", command, "--help", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"Example: opstatus admin key {command}" in result.stdout
