"""SIGTERM to a real ``opstatus serve`` holding long-polls and event streams: every one of
them is answered at once (never a 5xx), the streams end cleanly, and the process exits 0."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.server import BOOTSTRAP_SECRET, free_port, serve_process, wait_healthy

#: how long everything may take once the signal is sent (uvicorn's own cap is 10 s)
PROMPT = 5.0


def _in_background(
    outcomes: dict[str, Any], name: str, call: Callable[[], Any]
) -> threading.Thread:
    def run() -> None:
        try:
            outcomes[name] = call()
        except Exception as exc:  # the test asserts on it
            outcomes[name] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_sigterm_answers_open_long_polls_and_ends_streams_then_exits_0(tmp_path: Path) -> None:
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", tmp_path / "serve.log"
    args = ["--port", str(port), "--database", f"sqlite:///{tmp_path}/shutdown.db"]
    env = {"OPSTATUS_BOOTSTRAP_ADMIN_KEY": BOOTSTRAP_SECRET, "OPSTATUS_RATE_LIMIT": "off"}
    admin = {"X-API-Key": BOOTSTRAP_SECRET}
    with serve_process(args, tmp_path, log, env) as proc:
        wait_healthy(url, proc, log)
        with httpx.Client(base_url=url, headers=admin, timeout=30) as http:
            assert http.post("/v1/targets", json={"id": "lamp-1"}).status_code in (200, 201)
            key = http.post(
                "/v1/keys", json={"role": "agent", "name": "a", "targets": ["lamp-2"]}
            ).json()
            assert http.post("/v1/targets", json={"id": "lamp-2"}).status_code in (200, 201)
            op = http.post("/v1/operations", json={"kind": "k", "targets": ["lamp-1"]}).json()

        def long_poll() -> int:
            path = f"/v1/operations/{op['id']}?wait=60&version={op['version']}"
            return httpx.get(url + path, headers=admin, timeout=60).status_code

        def inbox() -> tuple[int, Any]:
            agent = {"X-API-Key": key["secret"]}
            answer = httpx.get(f"{url}/v1/targets/lamp-2/inbox?wait=60", headers=agent, timeout=60)
            return answer.status_code, answer.json()

        def stream(path: str) -> tuple[int, str]:
            headers = {**admin, "Accept": "text/event-stream"}
            with httpx.stream("GET", url + path, headers=headers, timeout=60) as answer:
                return answer.status_code, "".join(answer.iter_text())

        outcomes: dict[str, Any] = {}
        threads = [
            _in_background(outcomes, "long_poll", long_poll),
            _in_background(outcomes, "inbox", inbox),
            _in_background(
                outcomes, "op_stream", lambda: stream(f"/v1/operations/{op['id']}/events")
            ),
            _in_background(outcomes, "tenant_stream", lambda: stream("/v1/events")),
        ]
        time.sleep(1.0)  # every request is in and waiting
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(PROMPT)
        assert not any(t.is_alive() for t in threads), outcomes
        assert proc.wait(PROMPT) == 0
        assert time.monotonic() - signalled < PROMPT
    assert outcomes["long_poll"] == 200
    assert outcomes["inbox"] == (200, {"items": []})  # an empty page: nothing was leased
    for name in ("op_stream", "tenant_stream"):
        status, body = outcomes[name]
        assert status == 200, outcomes[name]
        assert "operation.created" in body  # the backlog went out before the end
    text = log.read_text()
    assert "Traceback" not in text and '"status":500' not in text.replace(" ", ""), text[-3000:]
