"""A first run as a newcomer meets it: the real ``opstatus serve`` and ``make run``."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.server import clean_env, free_port, opstatus_command, run_cli, wait_healthy

ROOT = Path(__file__).resolve().parents[2]


def _start(
    tmp_path: Path, database: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], httpx.Client, Path]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*opstatus_command(), "serve", "--port", str(port), "--database", database],
            cwd=tmp_path, env=clean_env(**(env or {})), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, log)
    http = httpx.Client(base_url=url, timeout=10)
    return proc, http, log


def _stop(proc: subprocess.Popen[bytes], http: httpx.Client) -> None:
    http.close()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)


def test_an_empty_database_logs_the_commands_that_make_the_first_admin_key(
    tmp_path: Path,
) -> None:
    database = f"sqlite:///{tmp_path / 'first.db'}"
    proc, http, log = _start(tmp_path, database)
    try:
        assert http.get("/readyz").status_code == 200
        found = re.search(r"make the first admin key with: (.*?) \(or restart", log.read_text())
        assert found, log.read_text()
        tenant_cmd, key_cmd = found.group(1).split(" && ")
        # the logged commands, run as printed, give a key the server accepts
        assert run_cli(*shlex.split(tenant_cmd)[1:], cwd=tmp_path).returncode == 0
        made = run_cli(*shlex.split(key_cmd)[1:], "--output", "json", cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        secret = re.search(r'"secret":"([^"]+)"', made.stdout)
        assert secret, made.stdout
        answer = http.get("/v1/keys", headers={"X-API-Key": secret.group(1)})
        assert answer.status_code == 200, answer.text
    finally:
        _stop(proc, http)


def test_the_root_redirects_to_the_dashboard(tmp_path: Path) -> None:
    proc, http, _ = _start(tmp_path, f"sqlite:///{tmp_path / 'root.db'}")
    try:
        answer = http.get("/")
        assert answer.status_code == 307
        assert answer.headers["location"] == "/ui/"
        assert http.get("/", follow_redirects=True).status_code == 200
    finally:
        _stop(proc, http)


def test_an_ignored_bootstrap_key_is_logged(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'used.db'}"
    assert run_cli("admin", "tenant", "create", "acme", "--database", database,
                   cwd=tmp_path).returncode == 0  # fmt: skip
    env = {"OPSTATUS_BOOTSTRAP_ADMIN_KEY": "a-bootstrap-secret-of-at-least-32-characters"}
    proc, http, log = _start(tmp_path, database, env)
    try:
        assert "OPSTATUS_BOOTSTRAP_ADMIN_KEY is ignored" in log.read_text()
        assert env["OPSTATUS_BOOTSTRAP_ADMIN_KEY"] not in log.read_text()
    finally:
        _stop(proc, http)


def test_a_bootstrapped_database_logs_no_first_run_hint(tmp_path: Path) -> None:
    env = {"OPSTATUS_BOOTSTRAP_ADMIN_KEY": "a-bootstrap-secret-of-at-least-32-characters"}
    proc, http, log = _start(tmp_path, f"sqlite:///{tmp_path / 'boot.db'}", env)
    try:
        assert http.get("/v1/keys", headers={"X-API-Key": env["OPSTATUS_BOOTSTRAP_ADMIN_KEY"]}
                        ).status_code == 200  # fmt: skip
    finally:
        _stop(proc, http)
    text = log.read_text()
    assert "first admin key" not in text
    assert "is ignored" not in text


def test_serve_mqtt_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    # an aiomqtt that cannot be imported stands in for an install without the extra
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "aiomqtt.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'aiomqtt'\", name='aiomqtt')\n"
    )
    env = {"PYTHONPATH": str(shadow)}
    result = subprocess.run(
        [*opstatus_command(), "serve", "--port", str(free_port()), "--mqtt",
         "mqtt://127.0.0.1:1", "--database", f"sqlite:///{tmp_path / 'm.db'}"],
        cwd=tmp_path, env={**_plain_env(), **env}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: the MQTT bridge needs the mqtt extra: pip install 'opstatus[mqtt]'"]


def _plain_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("OPSTATUS_")}


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_takes_the_port() -> None:
    # Under ``make test`` the environment carries the outer make's flags, which would
    # make this one print "Entering/Leaving directory" lines: start it clean.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    planned = subprocess.run(
        ["make", "--no-print-directory", "-n", "run", "PORT=9137"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert planned.strip().splitlines()[-1].endswith("opstatus serve --port 9137")
