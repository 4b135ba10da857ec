"""F6's barrage as data: the routes of every API, and bad requests made from them.

Every route is listed once with a *valid* request (path, query, credential, body);
each case family spoils one part of it and nothing else, so an answer that is not a
4xx with a message names exactly what got through:

* ``auth`` — no or broken credentials (garbage Basic, huge bearer, Latin-1 bytes…);
* ``id`` — each path id too long, with control characters, traversal, Unicode,
  invalid percent-encoding, SQL, huge numbers;
* ``query`` — bad limits, offsets, cursors, timestamps, enums, waits, unknown names;
* ``body`` — oversize (honest, lying ``Content-Length`` both ways, chunked without a
  length), 100,000 levels of nesting, invalid UTF-8, NaN, 1e309, wrong content types,
  XML with entity bombs and external entities, wrong JSON types;
* ``field`` — one bad field of a valid body (enums, numbers, lengths, times);
* ``method`` and ``protocol`` — methods a route lacks, requests uvicorn cannot parse.

Cases whose request is hostile but *valid* (a NUL character inside a JSON string, a
body on a route that takes none) expect only "no 5xx": either answer is defensible.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from faults import wire

#: what a case's answer must be
REFUSED = "4xx with a message"
NO_5XX = "anything but 5xx"

MAX_BODY = 1 << 20  #: OPSTATUS_MAX_BODY_BYTES of the server under test
DEEP = 100_000  #: levels of nesting in the deep-JSON cases
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
#: placeholders whose values are integers (the dialects' run-id, updateid)
NUMERIC = frozenset({"number", "update"})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Route:
    """One route and a valid request to it (templates filled from the fixture)."""

    name: str
    dialect: str
    method: str
    path: str
    query: str = ""
    who: str = "admin"  #: the credential that may call it (see Fixture.credentials)
    body: Any = None  #: a valid JSON body, when the route takes one
    body_ignored: bool = False  #: the route reads no body (any body must not hurt)
    public: bool = False  #: callable without a credential


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fixture:
    """What the set-up made: values for the placeholders, and credentials by name."""

    values: Mapping[str, str]
    credentials: Mapping[str, Sequence[tuple[str, str]]]
    basic_id: str  #: a key id, for Basic cases with a wrong secret


@dataclasses.dataclass(frozen=True)
class Case:
    """One request of the barrage and what its answer must be."""

    family: str
    name: str
    route: str
    dialect: str
    request: bytes
    expect: str = REFUSED

    def line(self) -> str:
        """The request line and the start of the body, for a report."""
        head, _, body = self.request.partition(b"\r\n\r\n")
        first = head.split(b"\r\n", 1)[0][:160].decode("latin-1")
        return f"{first}" + (f" body {body[:80]!r}…" if body else "")


ROUTES: tuple[Route, ...] = (
    Route(name="create", dialect="canonical", method="POST", path="/v1/operations",
          body={"kind": "k", "targets": ["{target}"]}),
    Route(name="list", dialect="canonical", method="GET", path="/v1/operations"),
    Route(name="latest", dialect="canonical", method="GET", path="/v1/operations/latest"),
    Route(name="read", dialect="canonical", method="GET", path="/v1/operations/{op}"),
    Route(name="cancel", dialect="canonical", method="POST", path="/v1/operations/{op}/cancel",
          body={"force": False}),
    Route(name="delete", dialect="canonical", method="DELETE", path="/v1/operations/{op}"),
    Route(name="executions", dialect="canonical", method="GET",
          path="/v1/operations/{op}/executions"),
    Route(name="operation events", dialect="canonical", method="GET",
          path="/v1/operations/{op}/events"),
    Route(name="events", dialect="canonical", method="GET", path="/v1/events"),
    Route(name="execution", dialect="canonical", method="GET", path="/v1/executions/{ex}"),
    Route(name="patch", dialect="canonical", method="PATCH", path="/v1/executions/{ex}",
          who="agent", body={"progress": 10}),
    Route(name="retry", dialect="canonical", method="POST", path="/v1/executions/{ex}/retry"),
    Route(name="inbox", dialect="canonical", method="GET", path="/v1/targets/{target}/inbox",
          who="agent"),
    Route(name="put target", dialect="canonical", method="POST", path="/v1/targets",
          body={"id": "bad-t9"}),
    Route(name="targets", dialect="canonical", method="GET", path="/v1/targets"),
    Route(name="target", dialect="canonical", method="GET", path="/v1/targets/{target}"),
    Route(name="put group", dialect="canonical", method="POST", path="/v1/groups",
          body={"id": "bad-g9", "targets": ["{target}"]}),
    Route(name="group", dialect="canonical", method="GET", path="/v1/groups/{group}"),
    Route(name="create key", dialect="canonical", method="POST", path="/v1/keys",
          body={"role": "viewer", "name": "k"}),
    Route(name="keys", dialect="canonical", method="GET", path="/v1/keys"),
    Route(name="revoke key", dialect="canonical", method="DELETE", path="/v1/keys/{key}"),
    Route(name="token", dialect="canonical", method="POST", path="/v1/auth/token",
          who="none", public=True, body={"key": "{secret}"}),
    Route(name="create webhook", dialect="canonical", method="POST", path="/v1/webhooks",
          body={"url": "https://example.com/hook"}),
    Route(name="webhooks", dialect="canonical", method="GET", path="/v1/webhooks"),
    Route(name="webhook", dialect="canonical", method="GET", path="/v1/webhooks/{hook}"),
    Route(name="deliveries", dialect="canonical", method="GET",
          path="/v1/webhooks/{hook}/deliveries"),
    Route(name="replay", dialect="canonical", method="POST",
          path="/v1/webhooks/{hook}/deliveries/{delivery}/replay"),
    Route(name="webex node", dialect="webex", method="POST",
          path="/v1/videoMesh/triggerTest/nodes/{target}", body={"type": "NetworkTest"}),
    Route(name="webex cluster", dialect="webex", method="POST",
          path="/v1/videoMesh/triggerTest/clusters/{group}",
          body={"type": "NetworkTest", "nodes": ["{target}"]}),
    Route(name="webex status", dialect="webex", method="GET", path="/v1/videoMesh/testStatus",
          query="commandId={test}"),
    Route(name="sbc token", dialect="sbc", method="POST", path="/rest/{version}/auth/token",
          who="basic", body_ignored=True),
    Route(name="sbc asyncstatus", dialect="sbc", method="GET",
          path="/rest/{version}/admin/asyncstatus", who="bearer"),
    Route(name="rsa", dialect="rsa", method="GET", path="/aveksa/command.submit",
          query="cmd=getRunStatus&run-id={number}&format=json", who="bearer"),
    Route(name="clanforge create", dialect="clanforge", method="GET",
          path="/cfp/v1/imageupdate/create",
          query="imageid=i&desc=d&machineid={target}&accountserviceid=default"),
    Route(name="clanforge status", dialect="clanforge", method="GET",
          path="/cfp/v1/imageupdate/{update}/status", query="accountserviceid=default",
          who="basic"),
    Route(name="clanforge retry", dialect="clanforge", method="GET",
          path="/cfp/v1/imageupdate/{update}/retry", query="accountserviceid=default"),
    Route(name="commandstatus list", dialect="commandstatus", method="GET",
          path="/commands/v0/status/"),
    Route(name="commandstatus get", dialect="commandstatus", method="GET",
          path="/commands/v0/status/{ex}/"),
    Route(name="commandstatus put", dialect="commandstatus", method="PUT",
          path="/commands/v0/status/{ex}/", who="agent",
          body={"state": "Command In Progress"}),
    Route(name="commandstatus inbox", dialect="commandstatus", method="GET",
          path="/v2/command-inbox/", query="device_id={target}", who="agent"),
)  # fmt: skip
ROUTE = {route.name: route for route in ROUTES}


# -- building requests -------------------------------------------------------------------


def fill(template: str, fx: Fixture, **override: str) -> str:
    """``template`` with its placeholders from the fixture (``override`` wins)."""
    values = {**fx.values, **override}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def body_of(route: Route, fx: Fixture) -> bytes | None:
    """The route's valid body, filled."""
    if route.body is None:
        return None
    return fill(json.dumps(route.body), fx).encode()


def build(
    route: Route,
    fx: Fixture,
    *,
    path: str | None = None,
    query: str | None = None,
    credential: Sequence[tuple[str | bytes, str | bytes]] | None = None,
    body: bytes | None = None,
    content_type: str | bytes | None = "application/json",
    method: str | None = None,
    **wire_options: Any,
) -> bytes:
    """The route's valid request with some part replaced (the rest filled in as valid)."""
    target = fill(route.path, fx) if path is None else path
    q = fill(route.query, fx) if query is None else query
    headers: list[tuple[str | bytes, str | bytes]] = list(
        fx.credentials[route.who] if credential is None else credential
    )
    data = body_of(route, fx) if body is None else body
    if data is not None and content_type is not None:
        headers.append(("Content-Type", content_type))
    return wire.request_bytes(
        method or route.method, target + (f"?{q}" if q else ""), headers, data, close=True,
        **wire_options,
    )  # fmt: skip


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# -- auth ----------------------------------------------------------------------------------


def bad_credentials(fx: Fixture) -> dict[str, list[tuple[str | bytes, str | bytes]]]:
    """Broken credentials by name."""
    return {
        "none": [],
        "wrong key": [("X-API-Key", "not-a-key")],
        "empty key": [("X-API-Key", "")],
        "Latin-1 key": [(b"X-API-Key", b"\xff\xfe\xfd")],
        "256 KiB key": [("X-API-Key", "k" * (256 << 10))],
        "empty bearer": [("Authorization", "Bearer ")],
        "64 KiB bearer": [("Authorization", "Bearer " + "A" * (64 << 10))],
        "garbage Basic": [("Authorization", "Basic !!!***")],
        "Basic without colon": [("Authorization", "Basic " + _b64(b"justakey"))],
        "Basic not UTF-8": [("Authorization", "Basic " + _b64(b"\xff\xfe:\xfd"))],
        "Basic wrong secret": [("Authorization", "Basic " + _b64(f"{fx.basic_id}:no".encode()))],
        "unknown scheme": [("Authorization", "Digest username=x")],
        "control character": [("X-API-Key", b"a\x01b")],
    }


def auth_cases(fx: Fixture) -> Iterator[Case]:
    """Every route with every broken credential."""
    for route in ROUTES:
        for name, credential in bad_credentials(fx).items():
            if route.public and name == "none":
                continue  # the token route takes its key in the body: valid without a header
            yield Case(
                "auth", name, route.name, route.dialect, build(route, fx, credential=credential)
            )


# -- ids -----------------------------------------------------------------------------------

BAD_IDS = {
    "10,000 characters": "a" * 10_000,
    "NUL": "a%00b",
    "control characters": "%01%02%1b",
    "newline": "a%0ab",
    "traversal": "..%2F..%2Fetc%2Fpasswd",
    "dot dot": "..",
    "emoji": "%F0%9F%92%A9",
    "right-to-left override": "%E2%80%AEx",
    "invalid UTF-8": "%FF%FE",
    "SQL": "%27%20OR%20%271%27%3D%271",
    "blank": "%20",
}
BAD_NUMBERS = {
    "negative": "-1",
    "zero": "0",
    "past int64": "99999999999999999999",
    "5,000 digits": "9" * 5000,
    "fraction": "1.5",
    "exponent": "1e3",
    "hex": "0x10",
}


def id_cases(fx: Fixture) -> Iterator[Case]:
    """Each path placeholder of each route replaced by each bad id."""
    for route in ROUTES:
        for name in _PLACEHOLDER.findall(route.path):
            bad = {**BAD_IDS, **(BAD_NUMBERS if name in NUMERIC else {})}
            for label, value in bad.items():
                path = fill(route.path, fx, **{name: value})
                yield Case("id", f"{name}: {label}", route.name, route.dialect,
                           build(route, fx, path=path))  # fmt: skip


# -- query ---------------------------------------------------------------------------------

MISSING = object()  #: a query value meaning "leave the parameter out"
_LIMITS = ["-1", "0", "1001", "1000000000", "1e3", "abc", "", "99999999999999999999999"]
_TIMES = ["nonsense", "2026-02-30T00:00:00Z", "2026-01-01T00:00:00", "99999-01-01T00:00:00Z",
          "2026-01-01", "2026-01-01T25:00:00Z"]  # fmt: skip
_MANY = ",".join(f"v{i}" for i in range(1001))
#: route -> parameter -> bad values (MISSING: leave a required parameter out)
BAD_QUERIES: dict[str, dict[str, list[Any]]] = {
    "list": {
        "limit": _LIMITS, "offset": ["-5", "1000001", "1e12", "x"],
        "cursor": ["zzzz", "bjo", "A" * 300, "%00"], "created_after": _TIMES,
        "created_before": _TIMES[:3], "state": ["bogus", "RUNNING", "queued,bogus"],
        "internal": ["maybe", "1"], "kind": ["k" * 300], "id": [_MANY, "i" * 300],
        "target": [_MANY], "group": ["g" * 300], "format": ["exe", ""], "bogus": ["1"],
    },
    "read": {
        "wait": ["nan", "inf", "-1", "61", "1e309", "abc"], "version": ["-1", "abc", "9" * 30],
        "format": ["bogus"], "bogus": ["1"],
    },
    "events": {"after": ["-1", "abc", "1e30", str(2**63)], "limit": ["0", "1001", "x"]},
    "operation events": {"after": ["-1", "9" * 30], "limit": ["0", "1001"]},
    "inbox": {"wait": ["nan", "-1", "61"], "limit": ["0", "101", "x"], "bogus": ["1"]},
    "targets": {"limit": ["0", "1001", "x"], "cursor": ["c" * 300]},
    "webhooks": {"limit": ["0", "1001", "x"], "cursor": ["c" * 300]},
    "deliveries": {"limit": ["0", "x"], "cursor": ["x", "-1", "9" * 30]},
    "webex status": {"commandId": [MISSING, "", "a" * 10_000, "a%00b", "%FF"]},
    "sbc asyncstatus": {"bogus": ["1"]},
    "rsa": {
        "cmd": [MISSING, "bogus", ""], "format": ["xml", "bogus"],
        "run-id": [MISSING, "", *BAD_NUMBERS.values(), "abc", "%00", "%F0%9F%92%A9"],
    },
    "clanforge create": {
        "imageid": [MISSING, ""], "desc": [MISSING], "machineid": [MISSING, "", _MANY],
        "accountserviceid": [MISSING, "someone-else", "%00"], "url": ["u" * 300], "bogus": ["1"],
    },
    "clanforge status": {"accountserviceid": [MISSING, "", "someone-else"], "bogus": ["1"]},
    "clanforge retry": {"accountserviceid": [MISSING, "someone-else"]},
    "commandstatus list": {
        "limit": _LIMITS, "offset": ["-1", "x", "1000001"],
        "state": ["bogus", "Command Queued,bogus", "queued"],
        "exclude_internal_commands": ["maybe"], "device": [_MANY, "d" * 300],
        "request": ["r" * 300], "bogus": ["1"],
    },
    "commandstatus inbox": {"device_id": [MISSING, "", ",".join(["d"] * 101), "d" * 300]},
}  # fmt: skip


#: route -> filters given a NUL: a valid query that finds nothing, or a refusal (no 5xx)
NUL_FILTERS: dict[str, list[str]] = {
    "list": ["id", "target", "group", "kind"],
    "targets": ["cursor"],
    "webhooks": ["cursor"],
    "commandstatus list": ["device", "request"],
    "commandstatus inbox": ["device_id"],
    "clanforge create": ["imageid", "desc"],
}

#: (route, header, bad values)
BAD_HEADERS = (
    ("events", "Last-Event-ID", ["abc", "-1", "9" * 30]),
    ("create", "Idempotency-Key", ["", "i" * 201]),
    ("patch", "If-Match", ["abc", '"-1"', '"' + "9" * 30 + '"']),
)


def _with_param(query: str, name: str, value: Any) -> str:
    pairs = [p for p in query.split("&") if p and p.split("=", 1)[0] != name]
    if value is not MISSING:
        pairs.append(f"{name}={value}")
    return "&".join(pairs)


def query_cases(fx: Fixture) -> Iterator[Case]:
    """Each bad query parameter value, the route's other parameters valid."""
    for route_name, params in BAD_QUERIES.items():
        route = ROUTE[route_name]
        base = fill(route.query, fx)
        for name, values in params.items():
            for value in values:
                label = "missing" if value is MISSING else repr(str(value)[:40])
                query = _with_param(base, name, value)
                yield Case("query", f"{name}={label}", route.name, route.dialect,
                           build(route, fx, query=query))  # fmt: skip
    for route_name, names in NUL_FILTERS.items():
        route = ROUTE[route_name]
        for name in names:
            query = _with_param(fill(route.query, fx), name, "a%00b")
            yield Case("query", f"{name}=a%00b", route.name, route.dialect,
                       build(route, fx, query=query), NO_5XX)  # fmt: skip
    for route_name, header, values in BAD_HEADERS:
        route = ROUTE[route_name]
        for value in values:
            credential = [*fx.credentials[route.who], (header, value)]
            yield Case("query", f"{header}: {value[:20]}", route.name, route.dialect,
                       build(route, fx, credential=credential))  # fmt: skip


# -- bodies --------------------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]><lolz>&lol9;</lolz>"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><r>&xxe;</r>'
)


_DEEP_OBJECT = b'{"a":' * DEEP + b"1" + b"}" * DEEP


def _oversize(valid: bytes) -> bytes:
    """A JSON document one byte over MAX_BODY (a long string in an array around ``valid``)."""
    head, tail = b'[{"pad":"', b'"},' + valid + b"]"
    return head + b"x" * (MAX_BODY + 1 - len(head) - len(tail)) + tail


def generic_bodies(valid: bytes) -> dict[str, tuple[bytes, str | bytes | None, dict[str, Any]]]:
    """Spoiled bodies: name -> (body, content type, request_bytes options)."""
    j = "application/json"
    return {
        "oversize": (_oversize(valid), j, {}),
        "lying Content-Length (larger)": (valid, j, {"content_length": MAX_BODY * 4}),
        "lying Content-Length (smaller)": (_oversize(valid), j, {"content_length": 5}),
        "chunked, oversize": (_oversize(valid), j, {"chunked": True}),
        "chunked, truncated JSON": (valid[:-1], j, {"chunked": True}),
        "100,000 levels of arrays": (b"[" * DEEP + b"]" * DEEP, j, {}),
        "100,000 levels of objects": (_DEEP_OBJECT, j, {}),
        "100,000 unclosed": (b'{"a":[' * DEEP, j, {}),
        "invalid UTF-8": (_not_utf8(valid), j, {}),
        "lone surrogate": (valid[:-1] + b',"\\ud800":1}', j, {}),
        "NaN": (b'{"x": NaN}', j, {}),
        "Infinity": (b'{"x": -Infinity}', j, {}),
        "empty": (b"", j, {}),
        "null": (b"null", j, {}),
        "array": (b"[]", j, {}),
        "string": (b'"x"', j, {}),
        "number": (b"1e309", j, {}),
        "truncated": (valid[: len(valid) // 2], j, {}),
        "trailing garbage": (valid + b" xyz", j, {}),
        "unknown field": (valid[:-1] + b',"bogus":1}', j, {}),
        "text/plain": (valid, "text/plain", {}),
        "no content type": (valid, None, {}),
        "form": (b"kind=k&targets=t", "application/x-www-form-urlencoded", {}),
        "multipart": (b"--x\r\n\r\nk\r\n--x--", "multipart/form-data; boundary=x", {}),
        "bad XML": (b"<a><b></a>", "application/xml", {}),
        "billion laughs": (BILLION_LAUGHS, "application/xml", {}),
        "external entity": (EXTERNAL_ENTITY, "application/xml", {}),
        "billion laughs as JSON": (BILLION_LAUGHS, j, {}),
    }


def _not_utf8(valid: bytes) -> bytes:
    """``valid`` with bytes that are not UTF-8 in its first string value (else in a key)."""
    at = valid.find(b': "')
    if at < 0:
        return valid[:-1] + b',"\xff\xfe":1}'
    return valid[: at + 3] + b"\xff\xfe" + valid[at + 3 :]


#: route -> (case name, spoiled valid body); one bad field each
FIELD_BODIES: dict[str, list[tuple[str, Any]]] = {
    "create": [
        ("empty kind", {"kind": "", "targets": ["bad-t1"]}),
        ("kind of 201 characters", {"kind": "k" * 201, "targets": ["bad-t1"]}),
        ("no targets", {"kind": "k"}),
        ("target of 201 characters", {"kind": "k", "targets": ["t" * 201]}),
        ("targets not a list", {"kind": "k", "targets": "bad-t1"}),
        ("parameters a list", {"kind": "k", "targets": ["bad-t1"], "parameters": []}),
        ("retries -1", {"kind": "k", "targets": ["bad-t1"], "retries": -1}),
        ("retries 1.5", {"kind": "k", "targets": ["bad-t1"], "retries": 1.5}),
        ("retries '3'", {"kind": "k", "targets": ["bad-t1"], "retries": "3"}),
        ("lease 0", {"kind": "k", "targets": ["bad-t1"], "timeouts": {"lease": 0}}),
        ("lease 1e300", {"kind": "k", "targets": ["bad-t1"], "timeouts": {"lease": 1e300}}),
        ("schedule_at without zone",
         {"kind": "k", "targets": ["bad-t1"], "schedule_at": "2030-01-01T00:00:00"}),
        ("schedule_at 'tomorrow'", {"kind": "k", "targets": ["bad-t1"], "schedule_at": "tomorrow"}),
        ("internal 'yes'", {"kind": "k", "targets": ["bad-t1"], "internal": "yes"}),
        ("rollout 0 per minute",
         {"kind": "k", "targets": ["bad-t1"], "rollout": {"max_per_minute": 0}}),
        ("unknown group", {"kind": "k", "groups": ["no-such-group"]}),
        ("100,000 levels in parameters",
         {"kind": "k", "targets": ["bad-t1"], "parameters": "DEEP"}),
    ],
    "patch": [
        ("state 'exploded'", {"state": "exploded"}),
        ("state 'SUCCEEDED'", {"state": "SUCCEEDED"}),
        ("state scheduled (no such step)", {"state": "scheduled"}),
        ("progress -1", {"progress": -1}),
        ("progress 101", {"progress": 101}),
        ("progress '50'", {"progress": "50"}),
        ("eta without zone", {"eta": "2030-01-01T00:00:00"}),
        ("expected_version 0", {"progress": 5, "expected_version": 0}),
        ("expected_version 2^60", {"progress": 5, "expected_version": 2**60}),
        ("expected_version 1.5", {"progress": 5, "expected_version": 1.5}),
        ("error of 70,000 characters", {"error": "e" * 70_000}),
        ("reason of 5,000 characters", {"reason": "r" * 5000}),
        ("details a list", {"details": []}),
        ("100,000 levels in result", {"result": "DEEP"}),
        ("100,000 levels in details", {"details": {"a": "DEEP"}}),
    ],
    "cancel": [("force 'yes'", {"force": "yes"}), ("reason of 5,000", {"reason": "r" * 5000})],
    "put target": [
        ("empty id", {"id": ""}),
        ("id of 201 characters", {"id": "t" * 201}),
        ("label not a string", {"id": "bad-t9", "labels": {"a": 1}}),
        ("label of 1,001 characters", {"id": "bad-t9", "labels": {"a": "l" * 1001}}),
        ("name of 201 characters", {"id": "bad-t9", "name": "n" * 201}),
    ],
    "put group": [
        ("targets not a list", {"id": "bad-g9", "targets": "bad-t1"}),
        ("empty id", {"id": "", "targets": []}),
    ],
    "create key": [
        ("role 'root'", {"role": "root"}),
        ("role 'ADMIN'", {"role": "ADMIN"}),
        ("agent without targets", {"role": "agent"}),
        ("viewer with targets", {"role": "viewer", "targets": ["bad-t1"]}),
        ("name of 201 characters", {"role": "viewer", "name": "n" * 201}),
    ],
    "token": [("empty key", {"key": ""}), ("key of 501", {"key": "k" * 501}),
              ("key 1", {"key": 1})],
    "create webhook": [
        ("ftp URL", {"url": "ftp://example.com/"}),
        ("loopback URL", {"url": "http://127.0.0.1/hook"}),
        ("not a URL", {"url": "hook"}),
        ("URL of 10,000", {"url": "https://example.com/" + "u" * 10_000}),
        ("unknown event", {"url": "https://example.com/hook", "events": ["bogus.*.x"]}),
        ("no events", {"url": "https://example.com/hook", "events": []}),
    ],
    "webex node": [
        ("type 'Bogus'", {"type": "Bogus"}),
        ("no type", {}),
    ],
    "webex cluster": [
        ("11 nodes", {"type": "NetworkTest", "nodes": [f"n{i}" for i in range(11)]}),
        ("empty node", {"type": "NetworkTest", "nodes": [""]}),
        ("nodes not a list", {"type": "NetworkTest", "nodes": "bad-t1"}),
        ("a stranger node", {"type": "NetworkTest", "nodes": ["not-a-member"]}),
    ],
    "commandstatus put": [
        ("state 'Command Queued' (not writable)", {"state": "Command Queued"}),
        ("state 'bogus'", {"state": "bogus"}),
        ("state 5", {"state": 5}),
        ("no state", {"reason": "r"}),
        ("reason of 2,001", {"state": "Command In Progress", "reason": "r" * 2001}),
    ],
}  # fmt: skip
#: bodies that are hostile but valid: a NUL inside a string, a charset that means nothing
#: (JSON has no charset parameter); no 5xx is all we ask
HOSTILE_BODIES: dict[str, list[tuple[str, Any]]] = {
    "create": [("NUL in kind", {"kind": "k\u0000", "targets": ["bad-t1"]}),
               ("NUL in parameters", {"kind": "k", "targets": ["bad-t1"],
                                      "parameters": {"a\u0000": "b\u0000"}})],
    "patch": [("NUL in details", {"details": {"a": "\u0000"}})],
    "put target": [("NUL in id", {"id": "t\u0000"})],
}  # fmt: skip


def body_cases(fx: Fixture) -> Iterator[Case]:
    """Every route that takes (or ignores) a body, with every spoiled body and bad field."""
    for route in ROUTES:
        if route.body is None and not route.body_ignored:
            continue
        valid = body_of(route, fx) or b'{"x":1}'
        expect = NO_5XX if route.body_ignored else REFUSED
        for name, (data, media, options) in generic_bodies(valid).items():
            if name == "empty" and route.name in ("cancel", "token"):
                continue  # an optional body: empty is valid
            if name == "unknown field" and route.dialect == "webex":
                continue  # the Webex spec ignores unknown fields
            request = build(route, fx, body=data, content_type=media, **options)
            yield Case("body", name, route.name, route.dialect, request, expect)
    for table, expect in ((FIELD_BODIES, REFUSED), (HOSTILE_BODIES, NO_5XX)):
        for route_name, bodies in table.items():
            route = ROUTE[route_name]
            for name, doc in bodies:
                data = fill(json.dumps(doc), fx).encode().replace(b'"DEEP"', _DEEP_OBJECT)
                yield Case("field", name, route.name, route.dialect, build(route, fx, body=data),
                           expect)  # fmt: skip
    create = ROUTE["create"]
    latin1 = build(create, fx, content_type=b"application/json; charset=\xff")
    yield Case("field", "Latin-1 charset", create.name, create.dialect, latin1, NO_5XX)


# -- methods and protocol ------------------------------------------------------------------


def method_cases(fx: Fixture) -> Iterator[Case]:
    """Methods no route has at that path; requests uvicorn cannot parse."""
    for route in ROUTES:
        empty = b"" if route.body else None
        for method in ("TRACE", "PURGE"):
            request = build(route, fx, method=method, body=empty)
            yield Case("method", method, route.name, route.dialect, request)
    read = ROUTE["read"]
    garbage = {
        "unknown method": wire.request_bytes("FROB", fill(read.path, fx), fx.credentials["admin"]),
        "HTTP/9.9": b"GET /v1/operations HTTP/9.9\r\nHost: x\r\n\r\n",
        "header without colon": b"GET /v1/operations HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
        "space in path": b"GET /v1/oper ations HTTP/1.1\r\nHost: x\r\n\r\n",
        "NUL in path": b"GET /v1/\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        "two Content-Lengths": b"POST /v1/operations HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        "Content-Length and chunked": b"POST /v1/operations HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "bad chunk size": b"POST /v1/operations HTTP/1.1\r\nHost: x\r\nX-API-Key: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    }
    for name, request in garbage.items():
        yield Case("protocol", name, "any", "canonical", request)


def cases(fx: Fixture) -> list[Case]:
    """The whole barrage."""
    families = (auth_cases, id_cases, query_cases, body_cases, method_cases)
    return [case for family in families for case in family(fx)]
