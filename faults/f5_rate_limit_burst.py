"""F5: a burst far above the rate limit — every 429 says when to come back, nothing breaks.

``opstatus serve`` runs with ``OPSTATUS_RATE_LIMIT=10/second`` (a moving window per
credential). An asyncio client pinned to the load CPU fires, for a few seconds and on
64 connections, a round robin of probes far above that limit (at least BURST_FACTOR
times it, or the burst proves nothing and fails): five credentials (admin
``X-API-Key``, operator bearer token, viewer Basic, agent key, anonymous) over reads,
creates, an agent inbox, the token route and a route of every dialect (Webex, SBC,
RSA, Clanforge, Command Status). Each answer is checked:

* a 429 carries ``Retry-After`` (whole seconds, 1 to the window), the ``RateLimit-*``
  headers the API sets on every limited answer, and the error body of its dialect
  with a message;
* every other answer is the probe's success status with a correct body (no 5xx);
* each credential got at most its limit per window through (the limiter holds);
* after the window passes, every probe succeeds again.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import math
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any
from xml.etree import ElementTree as ET

from bench.common import (
    ADMIN_KEY,
    Options,
    cpu_affinity,
    http,
    opstatus,
    run_async,
    sqlite_database,
)
from faults import wire
from faults.common import Outcome

LIMIT = 10  #: requests per credential per window
WINDOW = 1  #: seconds: the limit is LIMIT/second
CONNECTIONS = 64
#: the burst must offer each credential at least this many times its limit
BURST_FACTOR = 5
TARGETS = ("burst-t1", "burst-t2")
#: the headers every limited answer carries (opstatus/api/ratelimit.py)
RATELIMIT_HEADERS = (
    "ratelimit-policy",
    "ratelimit",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
)
EXAMPLES = 5  #: failures of each kind kept word for word


@dataclasses.dataclass(frozen=True, kw_only=True)
class Probe:
    """One request of the burst and what a correct non-429 answer to it is."""

    name: str
    credential: str  #: whose rate limit it counts against
    dialect: str
    method: str
    path: str
    headers: Mapping[str, str]
    ok: int  #: the success status
    check: Callable[[bytes], bool]  #: is the success body right
    body: Any = None

    @property
    def raw(self) -> bytes:
        """The request on the wire."""
        data = None if self.body is None else json.dumps(self.body).encode()
        headers = [*self.headers.items()]
        if data is not None:
            headers.append(("Content-Type", "application/json"))
        return wire.request_bytes(self.method, self.path, headers, data)


@dataclasses.dataclass
class Tally:
    """What the burst got back, per probe and per credential."""

    statuses: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    limited: int = 0
    with_retry_after: int = 0
    with_ratelimit: int = 0
    with_message: int = 0
    remaining_left: int = 0  #: 429s whose RateLimit-Remaining is not 0
    served: int = 0
    served_ok: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    accepted: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    failures: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    problems: collections.defaultdict[str, list[str]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )

    def fail(self, kind: str, text: str) -> None:
        """Count a failure of ``kind``; keep the first few different ones word for word."""
        self.failures[kind] += 1
        found = self.problems[kind]
        if len(found) < EXAMPLES and text not in found:
            found.append(text)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


# -- set-up ------------------------------------------------------------------------------


def _call(url: str, method: str, key: str | None, body: Any = None, **kw: Any) -> Any:
    """A set-up request: retried while rate limited, SystemExit unless it succeeds."""
    for _ in range(20):
        status, answer = http(method, url, key, body, **kw)
        if status == 429:
            time.sleep(WINDOW)
            continue
        if not 200 <= status < 300:
            raise SystemExit(f"F5 set-up {method} {url}: {status} {answer}")
        return answer
    raise SystemExit(f"F5 set-up {method} {url}: still rate limited")


def _is_json(test: Callable[[Any], bool]) -> Callable[[bytes], bool]:
    def check(body: bytes) -> bool:
        doc = wire.decoded_json(body)
        return doc is not None and bool(test(doc))

    return check


def _xml_has(path: str) -> Callable[[bytes], bool]:
    def check(body: bytes) -> bool:
        try:
            return bool(ET.fromstring(body).findtext(path))
        except ET.ParseError:
            return False

    return check


def probes(base: str) -> list[Probe]:
    """Register targets, keys, an operation, a Video Mesh test and an image update; the
    probes over them."""
    for target in TARGETS:
        _call(f"{base}/v1/targets", "POST", ADMIN_KEY, {"id": target})
    made = {
        role: _call(f"{base}/v1/keys", "POST", ADMIN_KEY, {"name": f"burst {role}", "role": role,
                    "targets": list(TARGETS) if role == "agent" else []})
        for role in ("operator", "viewer", "agent")
    }  # fmt: skip
    op = _call(
        f"{base}/v1/operations", "POST", ADMIN_KEY, {"kind": "burst", "targets": [TARGETS[0]]}
    )
    test = _call(f"{base}/v1/videoMesh/triggerTest/nodes/{TARGETS[1]}", "POST", ADMIN_KEY,
                 {"type": "NetworkTest"})  # fmt: skip
    update = _call(
        f"{base}/cfp/v1/imageupdate/create?imageid=i1&desc=burst&machineid={TARGETS[1]}"
        "&accountserviceid=default", "GET", ADMIN_KEY,
    )  # fmt: skip
    token = _call(f"{base}/v1/auth/token", "POST", made["operator"]["secret"])["access_token"]
    admin_key = {"X-API-Key": ADMIN_KEY}
    admin_bearer = {"Authorization": f"Bearer {ADMIN_KEY}"}
    operator = {"Authorization": f"Bearer {token}"}
    viewer = {"Authorization": wire.basic(made["viewer"]["id"], made["viewer"]["secret"])}
    agent = {"X-API-Key": made["agent"]["secret"]}
    create = {"kind": "burst", "targets": [TARGETS[0]]}
    c, s = wire.CANONICAL, wire.SBC

    def probe(name: str, who: str, dialect: str, method: str, path: str, headers: Mapping[str, str],
              ok: int, check: Callable[[bytes], bool], body: Any = None) -> Probe:  # fmt: skip
        return Probe(name=name, credential=who, dialect=dialect, method=method, path=path,
                     headers=headers, ok=ok, check=check, body=body)  # fmt: skip

    return [
        probe("read", "admin", c, "GET", f"/v1/operations/{op['id']}", admin_key, 200,
              _is_json(lambda d: d["id"] == op["id"])),
        probe("create", "admin", c, "POST", "/v1/operations", admin_key, 202,
              _is_json(lambda d: d["kind"] == "burst"), create),
        probe("sbc asyncstatus", "admin", s, "GET", "/rest/v1.2/admin/asyncstatus", admin_bearer,
              200, _xml_has("data")),
        probe("rsa getRunStatus", "admin", wire.RSA, "GET",
              f"/aveksa/command.submit?cmd=getRunStatus&run-id={op['number']}&format=json",
              admin_bearer, 200, _is_json(lambda d: "overall-status" in d["data"])),
        probe("list", "operator", c, "GET", "/v1/operations?limit=5", operator, 200,
              _is_json(lambda d: isinstance(d["items"], list))),
        probe("create (token)", "operator", c, "POST", "/v1/operations", operator, 202,
              _is_json(lambda d: d["kind"] == "burst"), create),
        probe("webex testStatus", "operator", wire.WEBEX, "GET",
              f"/v1/videoMesh/testStatus?commandId={test['commandId']}", operator, 200,
              _is_json(lambda d: d["commandId"] == test["commandId"])),
        probe("read xml (Basic)", "viewer", c, "GET", f"/v1/operations/{op['id']}?format=xml",
              viewer, 200, _xml_has("id")),
        probe("clanforge status", "viewer", wire.CLANFORGE, "GET",
              f"/cfp/v1/imageupdate/{update['updateid']}/status?accountserviceid=default", viewer,
              200, _is_json(lambda d: d["success"] is True)),
        probe("sbc token", "viewer", s, "POST", "/rest/v1.0/auth/token", viewer, 200,
              _xml_has("data/access_token")),
        probe("commandstatus list", "viewer", wire.COMMANDSTATUS, "GET",
              "/commands/v0/status/?limit=5", viewer, 200, _is_json(lambda d: d["code"] == 0)),
        probe("inbox", "agent", c, "GET", f"/v1/targets/{TARGETS[0]}/inbox?limit=1", agent, 200,
              _is_json(lambda d: isinstance(d["items"], list))),
        probe("commandstatus inbox", "agent", wire.COMMANDSTATUS, "GET",
              f"/v2/command-inbox/?device_id={TARGETS[1]}", agent, 200,
              _is_json(lambda d: d["code"] == 0)),
        probe("token (anonymous)", "anonymous", c, "POST", "/v1/auth/token", {}, 200,
              _is_json(lambda d: bool(d["access_token"])), {"key": made["viewer"]["secret"]}),
    ]  # fmt: skip


# -- the burst ---------------------------------------------------------------------------


def _judge_limited(probe: Probe, reply: wire.Reply, tally: Tally) -> None:
    """A 429: Retry-After, RateLimit headers, the dialect's error body."""
    headers, body = reply.headers, reply.body
    tally.limited += 1
    retry = headers.get("retry-after", "")
    if retry.isdigit() and 1 <= int(retry) <= WINDOW:
        tally.with_retry_after += 1
    else:
        tally.fail("429 without a valid Retry-After", f"{probe.name}: Retry-After {retry!r}")
    missing = [h for h in RATELIMIT_HEADERS if h not in headers]
    if not missing:
        tally.with_ratelimit += 1
    else:
        tally.fail("429 without RateLimit headers", f"{probe.name} ({probe.dialect})")
    if not missing and headers["ratelimit-remaining"] != "0":
        tally.remaining_left += 1
    if wire.error_message(probe.dialect, 429, headers, body) is not None:
        tally.with_message += 1
    else:
        tally.fail("429 without an error message", f"{probe.name}: {body[:200]!r}")


def judge(probe: Probe, reply: wire.Reply, tally: Tally) -> None:
    """Count one answer and check it."""
    status, body = reply.status, reply.body
    tally.statuses[str(status)] += 1
    if status == 429:
        _judge_limited(probe, reply, tally)
        return
    tally.served += 1
    tally.accepted[probe.credential] += 1
    if status >= 500:
        tally.server_errors += 1
    if status == probe.ok and probe.check(body):
        tally.served_ok += 1
    else:
        tally.fail("wrong non-429 answer", f"{probe.name}: {status} {body[:200]!r}")


def _connection(base: str) -> wire.RawConnection:
    split = urllib.parse.urlsplit(base)
    return wire.RawConnection(split.hostname or "127.0.0.1", split.port or 80)


async def _worker(base: str, plan: list[Probe], start: int, until: float, tally: Tally) -> None:
    """One connection: the probes round robin from ``start`` until ``until``."""
    connection, i = _connection(base), start
    requests = [probe.raw for probe in plan]
    try:
        while time.monotonic() < until:
            probe, request = plan[i % len(plan)], requests[i % len(plan)]
            i += 1
            try:
                reply = await connection.exchange(request)
            except (OSError, TimeoutError) as exc:
                tally.transport_errors += 1
                tally.fail("transport error", f"{probe.name}: {type(exc).__name__}: {exc}")
                continue
            judge(probe, reply, tally)
    finally:
        await connection.close()


async def burst(base: str, plan: list[Probe], seconds: float) -> tuple[Tally, float]:
    """Fire the probes round robin on CONNECTIONS connections for ``seconds``."""
    tally = Tally()
    started = time.monotonic()
    until = started + seconds
    await asyncio.gather(*(_worker(base, plan, n, until, tally) for n in range(CONNECTIONS)))
    return tally, time.monotonic() - started


async def recovery(base: str, plan: list[Probe]) -> list[str]:
    """After the window: each probe once, one at a time; what did not succeed."""
    await asyncio.sleep(WINDOW + 0.5)
    connection, failed = _connection(base), []
    try:
        for probe in plan:
            reply = await connection.exchange(probe.raw)
            if reply.status != probe.ok or not probe.check(reply.body):
                failed.append(f"{probe.name}: {reply.status} {reply.body[:200]!r}")
    finally:
        await connection.close()
    return failed


# -- the scenario ------------------------------------------------------------------------


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 100.0


def outcome(tally: Tally, seconds: float, credentials: int, still_limited: list[str]) -> Outcome:
    """Figures and verdict from the burst and the recovery."""
    # a moving window lets LIMIT through in any WINDOW: at most this many in the burst
    most = LIMIT * (math.ceil(seconds / WINDOW) + 1)
    over = {who: n for who, n in tally.accepted.items() if n > most}
    offered = tally.requests / credentials / seconds / (LIMIT / WINDOW)
    figures: dict[str, Any] = {
        "requests": tally.requests,
        "requests/s": round(tally.requests / seconds),
        "rate limit": f"{LIMIT}/{WINDOW}s per credential ({credentials} credentials)",
        "offered per credential x the limit": round(offered, 1),
        "429s": tally.limited,
        "429s with Retry-After %": _percent(tally.with_retry_after, tally.limited),
        "429s with RateLimit headers %": _percent(tally.with_ratelimit, tally.limited),
        "429s with an error message %": _percent(tally.with_message, tally.limited),
        "5xx": tally.server_errors,
        "transport errors": tally.transport_errors,
        "non-429 answers": tally.served,
        "non-429 answers correct %": _percent(tally.served_ok, tally.served),
        "most let through per credential": max(tally.accepted.values(), default=0),
        "recovered after the window": not still_limited,
    }
    passed = (
        offered >= BURST_FACTOR
        and tally.with_retry_after == tally.with_ratelimit == tally.with_message == tally.limited
        and tally.server_errors == tally.transport_errors == 0
        and tally.served_ok == tally.served
        and not over
        and not still_limited
    )
    details = [
        f"burst of {seconds:.1f} s on {CONNECTIONS} connections; answers by status: "
        f"{dict(sorted(tally.statuses.items()))}",
        f"let through per credential (at most {most} allowed in {seconds:.1f} s): "
        f"{dict(sorted(tally.accepted.items()))}",
    ]
    details += [f"credential let through more than its limit: {over}"] if over else []
    if offered < BURST_FACTOR:
        details.append(
            f"the burst offered only {offered:.1f}x the limit (wanted {BURST_FACTOR}x): "
            "the load CPU was too busy for it to prove anything"
        )
    for kind, found in tally.problems.items():
        details.append(f"{kind}: {tally.failures[kind]}, e.g. " + " | ".join(found))
    details += [f"still failing after the window: {f}" for f in still_limited]
    if tally.remaining_left:
        details.append(
            f"{tally.remaining_left} 429s said RateLimit-Remaining > 0: the limiter reads its "
            "window after refusing, and an entry can expire in between (harmless, inconsistent)"
        )
    return Outcome(
        scenario="F5",
        title="429 burst",
        goal="100 % of 429s with Retry-After (and RateLimit headers, an error body), 0 5xx, "
        "non-429 answers correct, the limit holds per credential, success after the window",
        passed=passed,
        figures=figures,
        details=details,
        command="python -m faults --only F5",
    )


def run(opts: Options) -> Outcome:
    """Start a rate-limited server, burst it from the load CPU, then check recovery."""
    seconds = opts.pick(10.0, 3.0)
    env = {"OPSTATUS_RATE_LIMIT": f"{LIMIT}/second"}
    with sqlite_database(opts) as db, opstatus(db, cpu=opts.server_cpu, env=env) as server:
        plan = probes(server.url)
        time.sleep(WINDOW + 0.5)  # set-up requests out of the window
        with cpu_affinity(opts.load_cpu):
            tally, took = run_async(burst(server.url, plan, seconds))
            still_limited = run_async(recovery(server.url, plan))
        result = outcome(tally, took, len({p.credential for p in plan}), still_limited)
        result.details += wire.logged_errors(server)
    return result
