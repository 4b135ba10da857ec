"""A 100,000-target operation on a real server: its reads embed a bounded page, the rest
pages through the executions list, and reading it in every format never stalls the loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import Server, running

TARGETS = 100_000
EMBEDDED = 1000
#: the longest a health check may wait while the big operation is read (the issue's bound)
HEALTHY_WITHIN = 0.100


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """A server holding one operation on TARGETS targets (module-wide: it takes a while)."""
    workdir = tmp_path_factory.mktemp("large")
    with running(f"sqlite:///{workdir}/large.db", workdir) as server:
        body = {
            "kind": "big",
            "targets": [f"t{i}" for i in range(TARGETS)],
            "register_targets": True,
        }
        made = server.http.post(
            "/v1/operations", json=body, headers={"X-API-Key": server.admin_key}, timeout=120
        )
        assert made.status_code == 202, made.text
        yield server, made.json()["id"]


def test_a_read_embeds_the_first_executions_and_says_so(big: tuple[Server, str]) -> None:
    server, op_id = big
    read = server.http.get(f"/v1/operations/{op_id}", headers={"X-API-Key": server.admin_key})
    assert read.status_code == 200
    doc = read.json()
    assert doc["executions_truncated"] is True
    assert len(doc["executions"]) == EMBEDDED
    assert doc["targets"] == sorted(doc["targets"]) == [e["target"] for e in doc["executions"]]
    assert sum(doc["counts"].values()) == TARGETS  # the counts stay whole


def test_the_executions_list_pages_through_all_of_them(big: tuple[Server, str]) -> None:
    server, op_id = big
    seen: list[str] = []
    cursor = None
    for _ in range(3):
        query = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = server.http.get(
            f"/v1/operations/{op_id}/executions",
            params=query,
            headers={"X-API-Key": server.admin_key},
        ).json()
        seen += [e["target"] for e in page["items"]]
        cursor = page["next_cursor"]
        assert cursor
    assert len(seen) == len(set(seen)) == 3000
    assert seen == sorted(seen)


def test_health_answers_promptly_while_the_operation_is_read_in_every_format(
    big: tuple[Server, str],
) -> None:
    server, op_id = big
    worst: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            while not done.is_set():
                started = time.perf_counter()
                assert http.get("/healthz").status_code == 200
                worst.append(time.perf_counter() - started)
                time.sleep(0.01)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        for fmt in ("json", "xml", "properties") * 2:
            answer = server.http.get(
                f"/v1/operations/{op_id}",
                params={"format": fmt},
                headers={"X-API-Key": server.admin_key},
            )
            assert answer.status_code == 200, (fmt, answer.text[:200])
            page = server.http.get(
                f"/v1/operations/{op_id}/executions",
                params={"format": fmt, "limit": 1000},
                headers={"X-API-Key": server.admin_key},
            )
            assert page.status_code == 200
    finally:
        done.set()
        prober.join(10)
    # The second worst: one probe may meet a hiccup of the shared machine (seen in CI
    # at 105 ms); a render that held the event loop would delay a probe in each of the
    # twelve reads.
    assert len(worst) >= 2 and sorted(worst)[-2] < HEALTHY_WITHIN, sorted(worst)[-5:]


def test_more_targets_than_the_setting_allows_are_refused(tmp_path: Path) -> None:
    env = {"OPSTATUS_MAX_TARGETS": "3"}
    with running(f"sqlite:///{tmp_path}/cap.db", tmp_path, env) as server:
        body = {"kind": "k", "targets": ["a", "b", "c", "d"], "register_targets": True}
        refused = server.http.post(
            "/v1/operations", json=body, headers={"X-API-Key": server.admin_key}
        )
        assert refused.status_code == 422, refused.text
        assert "at most 3 targets" in refused.json()["detail"]
