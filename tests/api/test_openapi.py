"""``/openapi.json`` describes every endpoint, resolves, validates as OpenAPI 3.1; ``/docs``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette

from opstatus import dialects
from opstatus.api import ENDPOINTS, openapi
from opstatus.domain.states import OperationState
from opstatus.server import create_app
from opstatus.settings import Settings
from opstatus.web import params

DOCUMENT = openapi.document(ENDPOINTS)
#: what /openapi.json serves: the canonical API and every dialect
SERVED = openapi.document(ENDPOINTS, dialects.openapi())
#: one tag per vendor
DIALECT_TAGS = ("Webex Video Mesh", "Oracle SBC", "RSA G&L", "Unity Clanforge", "Command Status")


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app: Starlette = create_app(Settings(database_url=f"sqlite:///{tmp_path}/opstatus.db"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    validate(DOCUMENT)


def test_every_endpoint_is_documented_with_its_method_and_handler_name() -> None:
    for ep in ENDPOINTS:
        operation = DOCUMENT["paths"][ep.path][ep.method.lower()]
        assert operation["operationId"] == ep.handler.__name__
        assert operation["summary"] == ep.summary
        assert str(ep.status) in operation["responses"]
        documented = {p["name"] for p in operation["parameters"]}
        assert set(re.findall(r"\{(\w+)\}", ep.path)) <= documented
        assert {p.name for p in ep.params} | {"format"} <= documented
        assert ("requestBody" in operation) == (ep.body is not None)
    ids = [op["operationId"] for item in DOCUMENT["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)) == len(ENDPOINTS) + 2  # and /healthz, /readyz


def test_the_served_document_with_the_dialects_is_valid_openapi_3_1() -> None:
    validate(SERVED)
    ids = [op["operationId"] for item in SERVED["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert {path: item for path, item in SERVED["paths"].items() if path in DOCUMENT["paths"]} == (
        DOCUMENT["paths"]
    )  # the dialects add paths; they change none of the canonical ones


@pytest.mark.parametrize("document", [DOCUMENT, SERVED], ids=["canonical", "served"])
def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = set(_refs(document))
    assert "#/components/schemas/Problem" in refs
    for ref in refs:
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref


def test_errors_are_problems_and_protected_routes_say_401_403_429() -> None:
    problem = {"$ref": "#/components/schemas/Problem"}
    for ep in ENDPOINTS:
        responses = DOCUMENT["paths"][ep.path][ep.method.lower()]["responses"]
        expected = {*ep.errors, 400, 429} | (set() if ep.public else {401, 403})
        if ep.body is not None:
            expected |= {413, 415, 422}
        for status in expected:
            content = responses[str(status)]["content"]
            assert content == {"application/problem+json": {"schema": problem}}, (ep.path, status)
    assert (
        "Retry-After" in DOCUMENT["paths"]["/v1/operations"]["post"]["responses"]["429"]["headers"]
    )


def test_every_dialect_route_is_documented_under_its_vendor_tag() -> None:
    tags = [tag["name"] for tag in SERVED["tags"]]
    assert len(tags) == len(set(tags))
    assert set(DIALECT_TAGS) <= set(tags)
    found = dialects.dialects()
    assert sorted(d.tag for d in found) == sorted(DIALECT_TAGS)
    for dialect in found:
        assert dialect.specs
        for spec in dialect.specs:
            operation = SERVED["paths"][spec.path][spec.method.lower()]
            assert operation["tags"] == [dialect.tag]
            assert operation["summary"] == spec.summary and operation["summary"]
            assert operation["security"], spec.path
            documented = {p["name"] for p in operation["parameters"]}
            assert set(re.findall(r"\{(\w+)\}", spec.path)) <= documented
            assert {p.name for p in spec.params} <= documented
            responses = operation["responses"]
            assert {"200", "401", "429"} <= set(responses), spec.path
            for status, response in responses.items():
                if status != "200":
                    assert set(response["content"]) == set(dialect.error_media), spec.path
                    assert "application/problem+json" not in response["content"]
            assert ("requestBody" in operation) == (spec.body is not None)


def test_dialect_routes_say_what_they_answer() -> None:
    paths = SERVED["paths"]
    token = paths["/rest/{version}/auth/token"]["post"]
    assert token["security"] == [{"basic": []}]
    assert paths["/rest/{version}/admin/asyncstatus"]["get"]["security"] == [{"bearer": []}]
    status = paths["/v1/videoMesh/testStatus"]["get"]
    assert status["parameters"][0]["name"] == "commandId"
    assert status["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/webex.TestStatus"
    }
    trigger = paths["/v1/videoMesh/triggerTest/nodes/{nodeId}"]["post"]
    assert "413" not in trigger["responses"]  # Webex answers an oversized body 400
    assert "application/json" in trigger["requestBody"]["content"]
    rsa = paths["/aveksa/command.submit"]["get"]["responses"]
    assert set(rsa["404"]["content"]) == {"text/html"}
    assert set(paths["/commands/v0/status/{id}/"]) == {"get", "put"}


def test_security_any_scheme_and_optional_on_public_routes() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert {schemes["bearer"]["scheme"], schemes["basic"]["scheme"]} == {"bearer", "basic"}
    assert DOCUMENT["security"] == [{"apiKey": []}, {"bearer": []}, {"basic": []}]
    token = DOCUMENT["paths"]["/v1/auth/token"]["post"]
    assert token["security"][0] == {}
    assert DOCUMENT["paths"]["/healthz"]["get"]["security"] == []


def test_conditional_reads_and_media_types_are_documented() -> None:
    get = DOCUMENT["paths"]["/v1/operations/{id}"]["get"]["responses"]
    assert get["304"]["headers"]["ETag"]["required"] is True
    assert set(get["200"]["content"]) == {"application/json", "application/xml", "text/plain"}
    events = DOCUMENT["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in events
    assert "content" not in DOCUMENT["paths"]["/v1/operations/{id}"]["delete"]["responses"]["204"]


def test_cross_field_rules_are_part_of_the_body_schemas() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    assert len(schemas["CreateOperationIn"]["anyOf"]) == 2
    assert schemas["KeyIn"]["anyOf"][0]["properties"]["role"] == {"const": "agent"}


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("", True), ("a", True), (" a , b,,c ", True), ("x" * 200, True), ("x" * 201, False)],
)
def test_the_csv_pattern_says_what_csv_accepts(value: str, accepted: bool) -> None:
    assert bool(re.fullmatch(params.csv_pattern(), value)) is accepted
    states = params.csv_pattern(list(OperationState))
    assert re.fullmatch(states, "queued, running")
    assert not re.fullmatch(states, "queued,nope")


async def test_openapi_json_is_served_without_credentials(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == SERVED


async def test_docs_work_offline_from_assets_this_process_serves(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "://" not in page.text  # nothing from elsewhere: it works with no internet
    assert 'data-spec="/openapi.json"' in page.text
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/docs/assets/swagger-ui-bundle.js" in sources
    for source in sources:
        asset = await client.get(source)
        assert asset.status_code == 200, source
        assert asset.content


async def test_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.put("/v1/operations")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST"
    assert response.headers["content-type"] == "application/problem+json"
    # a literal path is its own resource: no fall-through to /v1/operations/{id}
    latest = await client.delete("/v1/operations/latest")
    assert latest.status_code == 405
    assert latest.headers["allow"] == "GET, HEAD"
