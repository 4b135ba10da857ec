"""The observability middleware in-process: request ids, metrics, the access log."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from opstatus.domain.roles import Role
from opstatus.logs import JsonFormatter
from opstatus.server import create_app
from opstatus.settings import Settings
from tests.server import ADMIN_SECRET


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Starlette]:
    """A started app on a SQLite file, bootstrapped with an admin key."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/opstatus.db",
        bootstrap_admin_key=ADMIN_SECRET,
        rate_limit=None,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name`` in an exposition, keyed by its sorted labels."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_a_request_id_is_generated_and_returned(client: httpx.AsyncClient) -> None:
    first = (await client.get("/healthz")).headers["x-request-id"]
    second = (await client.get("/healthz")).headers["x-request-id"]
    assert len(first) == 32 and first.isalnum()
    assert first != second


async def test_a_sane_incoming_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    sent = "req-2024.abc_DEF:42"
    response = await client.get("/healthz", headers={"X-Request-ID": sent})
    assert response.headers["x-request-id"] == sent
    assert response.headers.get_list("x-request-id") == [sent]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("x" * 129, id="too-long"),
        pytest.param("has space", id="space"),
        pytest.param("<script>", id="markup"),
        pytest.param("", id="empty"),
    ],
)
async def test_an_insane_incoming_request_id_is_replaced(
    client: httpx.AsyncClient, bad: str
) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": bad})
    assert response.headers["x-request-id"] != bad
    assert len(response.headers["x-request-id"]) == 32


async def test_128_characters_is_still_sane(client: httpx.AsyncClient) -> None:
    sent = "a" * 128
    response = await client.get("/healthz", headers={"X-Request-ID": sent})
    assert response.headers["x-request-id"] == sent


async def test_error_answers_carry_the_request_id_too(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/operations/op_missing", headers={"X-Request-ID": "r-401"})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "r-401"
    unmatched = await client.get("/nowhere", headers={"X-Request-ID": "r-404"})
    assert unmatched.status_code == 404
    assert unmatched.headers["x-request-id"] == "r-404"


async def test_metrics_label_the_route_template_never_the_raw_path(
    client: httpx.AsyncClient,
) -> None:
    headers = {"X-API-Key": ADMIN_SECRET}
    for op_id in ("op_one", "op_two", "op_three"):
        response = await client.get(f"/v1/operations/{op_id}", headers=headers)
        assert response.status_code == 404
    await client.get("/healthz")
    await client.get("/no/such/path/12345")

    text = await scrape(client)
    counts = samples(text, "opstatus_http_requests_total")
    template = (("method", "GET"), ("route", "/v1/operations/{id}"), ("status", "404"))
    assert counts[template] == 3
    assert counts[(("method", "GET"), ("route", "/healthz"), ("status", "200"))] == 1
    assert counts[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1
    assert "op_one" not in text
    assert "/no/such/path" not in text

    durations = samples(text, "opstatus_http_request_duration_seconds_count")
    assert durations[(("method", "GET"), ("route", "/v1/operations/{id}"))] == 3

    again = samples(await scrape(client), "opstatus_http_requests_total")
    assert again[template] == 3
    # the first scrape was counted once it had answered
    assert again[(("method", "GET"), ("route", "/metrics"), ("status", "200"))] == 1


async def test_unknown_methods_share_one_label(client: httpx.AsyncClient) -> None:
    await client.request("BREW", "/healthz")
    counts = samples(await scrape(client), "opstatus_http_requests_total")
    assert counts[(("method", "OTHER"), ("route", "/healthz"), ("status", "405"))] == 1


async def test_gauges_are_read_at_scrape_time(app: Starlette, client: httpx.AsyncClient) -> None:
    text = await scrape(client)
    assert samples(text, "opstatus_notifier_waiters") == {(): 0.0}
    # the scrape itself is being answered while the gauge is read
    assert samples(text, "opstatus_http_requests_in_flight") == {(): 1.0}
    future = app.state.api.notifier.subscribe("op:acme:op_x")
    try:
        assert samples(await scrape(client), "opstatus_notifier_waiters") == {(): 1.0}
    finally:
        future.cancel()
    await asyncio.sleep(0)  # the done-callback that unregisters runs on the next loop turn
    assert samples(await scrape(client), "opstatus_notifier_waiters") == {(): 0.0}


async def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    first = create_app(Settings(database_url=f"sqlite:///{tmp_path}/a.db"))
    second = create_app(Settings(database_url=f"sqlite:///{tmp_path}/b.db"))
    assert first.state.metrics.registry is not second.state.metrics.registry
    first.state.metrics.observe("GET", "/healthz", 200, 0.001)
    assert b'route="/healthz"' in first.state.metrics.exposition()
    assert b'route="/healthz"' not in second.state.metrics.exposition()


async def test_one_access_log_line_per_request_with_the_key_id(
    app: Starlette, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    created = await client.post(
        "/v1/keys",
        json={"role": Role.VIEWER, "name": "reader"},
        headers={"X-API-Key": ADMIN_SECRET},
    )
    assert created.status_code == 201, created.text
    key_id, secret = created.json()["id"], created.json()["secret"]

    caplog.set_level(logging.INFO, logger="opstatus.access")
    response = await client.get(
        "/v1/operations/op_nope", headers={"X-API-Key": secret, "X-Request-ID": "trace-1"}
    )
    assert response.status_code == 404
    records = [r for r in caplog.records if r.name == "opstatus.access"]
    assert len(records) == 1
    fields = records[0].fields  # type: ignore[attr-defined]
    assert fields["request_id"] == "trace-1"
    assert fields["method"] == "GET"
    assert fields["route"] == "/v1/operations/{id}"
    assert fields["path"] == "/v1/operations/op_nope"
    assert fields["status"] == 404
    assert fields["duration_ms"] >= 0
    assert fields["client"] == "127.0.0.1"
    assert fields["key_id"] == key_id

    line = json.loads(JsonFormatter().format(records[0]))
    assert line["logger"] == "opstatus.access"
    assert line["level"] == "info"
    assert line["ts"].endswith("Z") or line["ts"].endswith("+00:00")
    assert {k: line[k] for k in fields} == fields
    assert secret not in json.dumps(line)


async def test_anonymous_requests_log_no_key_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="opstatus.access")
    await client.get("/healthz")
    (record,) = [r for r in caplog.records if r.name == "opstatus.access"]
    assert record.fields["key_id"] is None  # type: ignore[attr-defined]
    assert record.fields["route"] == "/healthz"  # type: ignore[attr-defined]
    assert record.getMessage() == "GET /healthz 200"


async def test_a_failing_handler_is_counted_and_logged_as_500(
    app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(tenant: str) -> None:
        raise RuntimeError("boom")

    app.state.api.credentials.list_keys = explode
    caplog.set_level(logging.INFO, logger="opstatus.access")
    # Starlette answers 500 and re-raises for the server to log; the client sees the 500.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/v1/keys", headers={"X-API-Key": ADMIN_SECRET})
        assert response.status_code == 500
        counts = samples(await scrape(client), "opstatus_http_requests_total")
    assert counts[(("method", "GET"), ("route", "/v1/keys"), ("status", "500"))] == 1
    logged = [r.fields for r in caplog.records if r.name == "opstatus.access"]  # type: ignore[attr-defined]
    assert logged[0]["status"] == 500
    assert logged[0]["route"] == "/v1/keys"


async def test_routes_under_a_mount_keep_the_mount_prefix(tmp_path: Path) -> None:
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    from opstatus.service.notifier import Notifier
    from opstatus.web.metrics import Metrics
    from opstatus.web.middleware import Observe

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["id"])

    metrics = Metrics(notifier=Notifier())
    inner = Starlette(routes=[Mount("/vendor", routes=[Route("/jobs/{id}", hello)])])
    transport = httpx.ASGITransport(app=Observe(inner, metrics=metrics))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/vendor/jobs/j1")).text == "j1"
        assert (await client.get("/vendor/jobs/j2")).text == "j2"
    counts = samples(metrics.exposition().decode(), "opstatus_http_requests_total")
    assert counts == {(("method", "GET"), ("route", "/vendor/jobs/{id}"), ("status", "200")): 2}


@pytest.mark.parametrize(
    "failure", [RuntimeError("boom"), HTTPException(418, "short and stout")], ids=repr
)
async def test_the_direct_path_answers_failures_as_the_full_path_does(
    app: Starlette, failure: Exception
) -> None:
    """web/direct.py answers endpoint requests past the router: an HTTPException gets
    the app's handler, anything else the 500 problem, with the request id and the
    metrics of the full path."""

    async def fail(tenant: str) -> None:
        raise failure

    app.state.api.credentials.list_keys = fail
    direct = app.direct  # type: ignore[attr-defined]
    assert direct is not None
    answers = []
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for way in (direct, None):
            app.direct = way  # type: ignore[attr-defined]
            response = await client.get(
                "/v1/keys", headers={"X-API-Key": ADMIN_SECRET, "X-Request-ID": "same-id"}
            )
            answers.append(
                (response.status_code, response.json(), sorted(response.headers.items()))
            )
        counts = samples(await scrape(client), "opstatus_http_requests_total")
    assert answers[0] == answers[1]
    status = answers[0][0]
    assert status == (500 if isinstance(failure, RuntimeError) else 418)
    assert counts[(("method", "GET"), ("route", "/v1/keys"), ("status", str(status)))] == 2
