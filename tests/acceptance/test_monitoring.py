"""Monitoring on a real ``opstatus serve``: the metrics docs/monitoring.md, the Grafana
dashboard and the alert rules name are served, the queue figures count real work, and
``as_of`` answers the past over HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opstatus.web.metrics import SCRAPE_CACHE
from tests.server import Server, running

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    ROOT / "docs" / "monitoring.md",
    ROOT / "docs" / "grafana-dashboard.json",
    ROOT / "docs" / "prometheus-alerts.yml",
]
#: what Prometheus adds to a histogram's or counter's name in its series
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("monitoring")
    with running(f"sqlite:///{workdir / 'monitoring.db'}", workdir) as found:
        yield found


def served_names(exposition: str) -> set[str]:
    """Every family (``# TYPE``) and series name of a text exposition."""
    names = set(re.findall(r"^# TYPE (\S+)", exposition, re.MULTILINE))
    names |= set(re.findall(r"^([a-z_:][a-z0-9_:]*)(?:\{| )", exposition, re.MULTILINE))
    return names


def sample(exposition: str, name: str, **labels: str) -> float | None:
    """The value of the series ``name{labels}`` (labels in any order), or None."""
    for line in exposition.splitlines():
        found = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if found is None:
            continue
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1) or ""))
        if pairs == labels:
            return float(found.group(2))
    return None


def test_every_metric_the_documents_name_is_served(server: Server) -> None:
    with server.client(server.admin_key) as http:
        made = http.post("/v1/operations", json={"kind": "docs.check", "targets": ["d-1"]})
        assert made.status_code == 202, made.text
        assert http.get("/v1/targets/d-1/inbox").status_code == 200  # a state change
        exposition = http.get("/metrics").text
    served = served_names(exposition)
    for document in DOCUMENTS:
        named = set(re.findall(r"\bopstatus_[a-z_]+[a-z]", document.read_text()))
        assert named, f"{document.name} names no metric"
        missing = sorted(n for n in named if n not in served and _family(n) not in served)
        assert missing == [], f"{document.name} names metrics the server does not serve"


def _family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_queue_figures_count_the_work_waiting(server: Server) -> None:
    kind = f"queue.{datetime.now(UTC).timestamp():.0f}"
    with server.client(server.admin_key) as http:
        made = http.post("/v1/operations", json={"kind": kind, "targets": ["q-1", "q-2"]})
        assert made.status_code == 202, made.text
        # a scrape within the cache period (SCRAPE_CACHE, 5 s) shows the figures of the
        # previous one; the first scrape after it shows these
        deadline = time.monotonic() + 4 * SCRAPE_CACHE
        while True:
            exposition = http.get("/metrics").text
            found = sample(exposition, "opstatus_queue_depth", kind=kind)
            if found is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sample(exposition, "opstatus_queue_depth", kind=kind) == 2.0
        assert sample(exposition, "opstatus_executions", kind=kind, state="queued") == 2.0
        age = sample(exposition, "opstatus_queue_oldest_age_seconds", kind=kind)
        assert age is not None and age >= 0.0
        assert sample(exposition, "opstatus_webhook_delivery_lag_seconds") == 0.0


def test_as_of_answers_the_operation_as_it_was(server: Server) -> None:
    with server.client(server.admin_key) as http:
        made = http.post("/v1/operations", json={"kind": "past", "targets": ["p-1"]})
        assert made.status_code == 202, made.text
        op = made.json()
        [item] = http.get("/v1/targets/p-1/inbox", params={"peek": "false"}).json()["items"]
        done = http.patch(f"/v1/executions/{item['id']}", json={"state": "succeeded"})
        assert done.status_code == 200, done.text
        now = http.get(f"/v1/operations/{op['id']}").json()
        assert now["state"] == "succeeded"
        then = http.get(f"/v1/operations/{op['id']}", params={"as_of": op["created_at"]})
        assert then.status_code == 200, then.text
        assert then.json()["state"] == "queued"
        assert [e["state"] for e in then.json()["executions"]] == ["queued"]
        assert then.headers["etag"] == '"1"'
        created = datetime.fromisoformat(op["created_at"].replace("Z", "+00:00"))
        for moment, wanted in [
            (created - timedelta(seconds=1), "before the operation was created"),
            (datetime.now(UTC) + timedelta(hours=1), "future"),
        ]:
            refused = http.get(f"/v1/operations/{op['id']}", params={"as_of": moment.isoformat()})
            assert refused.status_code == 400, refused.text
            assert wanted in refused.json()["detail"]
        both = http.get(f"/v1/operations/{op['id']}", params={"as_of": op["created_at"], "wait": 1})
        assert both.status_code == 400
