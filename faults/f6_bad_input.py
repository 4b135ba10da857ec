"""F6: a bad-input barrage — every bad request is refused with a message, nothing breaks.

``opstatus serve`` (rate limit and failed-auth limit off, ``OPSTATUS_MAX_BODY_BYTES``
= 1 MiB) gets the
barrage of :mod:`faults.f6_cases` — every route of the canonical API and of each
dialect, spoiled one part at a time (credentials, path ids, query parameters,
bodies, single fields, methods, HTTP itself) — from a client pinned to the load CPU,
each request on its own connection. The barrage runs twice: RSS is sampled before,
between and after, so the second pass shows whether memory keeps growing. Then
*hostile but valid* documents (control characters, NUL, deep nesting, odd keys,
non-characters, 200 KB strings) are stored as an operation's parameters and an
execution's result, and read back through every reader (JSON, XML, properties, and
each dialect that shows them): each must answer 2xx with a well-formed body.

It runs on SQLite and, when PostgreSQL is there (full runs), on PostgreSQL too.
Goal: every bad request answered 4xx with a message (a problem+json ``detail`` or the
dialect's error body), 0 5xx, 0 connection drops, hostile documents readable, RSS
bounded (the second pass grows it by less than BOUNDED_GROWTH).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from xml.etree import ElementTree as ET

from bench.common import (
    ADMIN_KEY,
    Options,
    Server,
    cpu_affinity,
    expect,
    http,
    opstatus,
    postgres_database,
    rss_bytes,
    run_async,
    sqlite_database,
)
from faults import f6_cases as table
from faults import wire
from faults.common import Outcome

CONCURRENCY = 8
TIMEOUT = 15.0  #: seconds for one answer
MIB = 1 << 20
#: the second pass may grow RSS by at most this (or 10 % of it, if more): memory is bounded
BOUNDED_GROWTH = 16 * MIB
TARGETS = ("bad-t1", "bad-t2", "bad-t3")
EXAMPLES = 3  #: routes named per problem in the report
SETTLE = 1.0  #: seconds before an RSS sample


# -- set-up --------------------------------------------------------------------------------


def fixture(base: str) -> table.Fixture:
    """Targets, a group, keys, an operation with a claimed execution, a Video Mesh test and
    an image update: what the valid requests of the barrage point at."""
    for target in TARGETS:
        expect(*http("POST", f"{base}/v1/targets", body={"id": target}), 201)
    group = {"id": "bad-g", "targets": list(TARGETS[:2])}
    expect(*http("POST", f"{base}/v1/groups", body=group), 201)
    keys = {
        role: expect(*http("POST", f"{base}/v1/keys", body={
            "name": f"bad {role}", "role": role,
            "targets": list(TARGETS) if role == "agent" else []}), 201)
        for role in ("agent", "viewer")
    }  # fmt: skip
    agent = keys["agent"]["secret"]
    create = {"kind": "k", "targets": [TARGETS[0]]}
    op = expect(*http("POST", f"{base}/v1/operations", body=create), 202)
    inbox = expect(*http("GET", f"{base}/v1/targets/{TARGETS[0]}/inbox", agent), 200)
    test = expect(*http("POST", f"{base}/v1/videoMesh/triggerTest/nodes/{TARGETS[1]}",
                        body={"type": "NetworkTest"}), 200)  # fmt: skip
    query = f"imageid=i&desc=d&machineid={TARGETS[1]}&accountserviceid=default"
    update = expect(*http("GET", f"{base}/cfp/v1/imageupdate/create?{query}"), 200)
    viewer = keys["viewer"]
    return table.Fixture(
        values={
            "op": op["id"], "ex": inbox["items"][0]["id"], "target": TARGETS[0],
            "group": "bad-g", "key": viewer["id"], "hook": "wh-none", "delivery": "1",
            "test": test["commandId"], "update": str(update["updateid"]),
            "number": str(op["number"]), "version": "v1.0", "secret": viewer["secret"],
        },
        credentials={
            "admin": [("X-API-Key", ADMIN_KEY)],
            "agent": [("X-API-Key", agent)],
            "basic": [("Authorization", wire.basic(viewer["id"], viewer["secret"]))],
            "bearer": [("Authorization", f"Bearer {ADMIN_KEY}")],
            "none": [],
        },
        basic_id=viewer["id"],
    )  # fmt: skip


# -- the barrage ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Result:
    """A case and what came back (``reply`` None: no whole answer, ``error`` says why)."""

    case: table.Case
    reply: wire.Reply | None
    error: str = ""

    def problem(self) -> str | None:
        """What is wrong with the answer, or None."""
        reply, case = self.reply, self.case
        if reply is None:
            return "no answer"
        if reply.status >= 500:
            return "5xx"
        if case.expect == table.NO_5XX:
            return None
        if not 400 <= reply.status < 500:
            return f"accepted ({reply.status})"
        if wire.error_message(case.dialect, reply.status, reply.headers, reply.body) is None:
            return "4xx without a message"
        return None


async def exchange(host: str, port: int, request: bytes) -> tuple[wire.Reply | None, str]:
    """One request on its own connection."""
    connection = wire.RawConnection(host, port)
    try:
        return await connection.exchange(request, TIMEOUT), ""
    except (OSError, TimeoutError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        await connection.close()


async def barrage(base: str, cases: Sequence[table.Case]) -> list[Result]:
    """Every case, CONCURRENCY at a time."""
    split = urllib.parse.urlsplit(base)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    queue = collections.deque(cases)
    results: list[Result] = []

    async def worker() -> None:
        while queue:
            case = queue.popleft()
            reply, error = await exchange(host, port, case.request)
            results.append(Result(case, reply, error))

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return results


# -- hostile but valid documents -------------------------------------------------------------


def _nested(depth: int) -> Any:
    doc: Any = 1
    for _ in range(depth):
        doc = {"a": doc}
    return doc


HOSTILE: dict[str, Any] = {
    "control characters": {"ctl": "a\u0001b\u0008c\u001fd", "\u0002key": 1},
    "non-characters": {"nonchar": "\uffff\ufffe", "bom": "\ufeff", "rtl": "\u202e", "emoji": "💩"},
    "odd keys": {"": 1, "a b": 2, "xml": 3, "<x>&": 4, "1": 5, "a.b": 6, "=": 7, "a\\b": 8},
    "lists and escapes": {"l": [[], [[]], {}, None, True, "a,b", "c\\d", "e\nf", "g=h"]},
    "numbers": {"big": 1e308, "tiny": 5e-324, "neg0": -0.0, "int": 2**63 - 1, "neg": -(2**63)},
    "200 KB string": {"s": "x" * 200_000},
    "100 levels (the limit)": _nested(100),
    "101 levels": _nested(101),
    "500 levels": _nested(500),
    "900 levels": _nested(900),
    "960 levels": _nested(960),
    "NUL": {"nul": "a\u0000b"},
}


def readers(values: dict[str, str]) -> list[tuple[str, str, str]]:
    """(name, credential, path) of every reader that shows an operation or its execution."""
    op, ex, number = values["op"], values["ex"], values["number"]
    rsa = f"/aveksa/command.submit?cmd=getRunStatus&run-id={number}"
    canonical = [
        ("read", f"/v1/operations/{op}"),
        ("list", f"/v1/operations?id={op}"),
        ("executions", f"/v1/operations/{op}/executions"),
        ("execution", f"/v1/executions/{ex}"),
        ("events", f"/v1/operations/{op}/events"),
    ]
    out = [
        (f"{name} {fmt}", "admin", f"{path}{'&' if '?' in path else '?'}format={fmt}")
        for name, path in canonical
        for fmt in ("json", "xml", "properties")
    ]
    return [
        *out,
        ("latest", "admin", "/v1/operations/latest"),
        ("sbc asyncstatus xml", "bearer", "/rest/v1.0/admin/asyncstatus"),
        ("sbc asyncstatus json", "bearer json", "/rest/v1.0/admin/asyncstatus"),
        ("rsa json", "bearer", f"{rsa}&format=json"),
        ("rsa properties", "bearer", rsa),
        ("clanforge status", "admin",
         f"/cfp/v1/imageupdate/{number}/status?accountserviceid=default"),
        ("commandstatus get", "admin", f"/commands/v0/status/{ex}/"),
        ("commandstatus list", "admin", f"/commands/v0/status/?request={op}"),
    ]  # fmt: skip


def well_formed(reply: wire.Reply) -> bool:
    """Does the body parse as what its Content-Type says?"""
    media = wire.media_type(reply.headers)
    try:
        if media.endswith("json"):
            json.loads(reply.body)
        elif media.endswith("xml"):
            ET.fromstring(reply.body)  # opstatus's own answer; it declares no entities
        else:
            reply.body.decode()
    except (ValueError, ET.ParseError):
        return False
    return True


def _headers(credential: str) -> dict[str, str]:
    if credential == "admin":
        return {"X-API-Key": ADMIN_KEY}
    accept = {"Accept": "application/json"} if credential.endswith("json") else {}
    return {"Authorization": f"Bearer {ADMIN_KEY}", **accept}


def _detail(answer: Any) -> str:
    return str(answer.get("detail") if isinstance(answer, dict) else answer)[:200]


def _store(base: str, agent: str, doc: Any) -> tuple[dict[str, str] | None, list[str]]:
    """An operation with ``doc`` as parameters, its execution succeeded with ``doc`` as
    result and details: the placeholder values (None when the create was refused) and
    what was refused ("STATUS what: detail")."""
    status, op = http("POST", f"{base}/v1/operations", body={
        "kind": "hostile", "targets": [TARGETS[2]], "parameters": doc})  # fmt: skip
    if status != 202:
        return None, [f"{status} create: {_detail(op)}"]
    inbox = expect(*http("GET", f"{base}/v1/targets/{TARGETS[2]}/inbox", agent), 200)
    ex = next(i["id"] for i in inbox["items"] if i["operation_id"] == op["id"])
    body = {"state": "succeeded", "result": doc, "details": doc}
    status, done = http("PATCH", f"{base}/v1/executions/{ex}", agent, body)
    refused = [] if status == 200 else [f"{status} PATCH: {_detail(done)}"]
    return {"op": op["id"], "ex": ex, "number": str(op["number"])}, refused


@dataclasses.dataclass
class Hostile:
    """What storing and reading back the hostile documents found."""

    reads: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)  #: 5xx, unreadable answers
    refused: list[str] = dataclasses.field(default_factory=list)  #: 4xx: a limit said no


def hostile(base: str, agent: str) -> Hostile:
    """Store each hostile document and read it back through every reader."""
    out = Hostile()
    for label, doc in HOSTILE.items():
        stored, refusals = _store(base, agent, doc)
        for refusal in refusals:
            four = refusal.startswith("4")
            (out.refused if four else out.problems).append(f"{label}: {refusal}")
        if stored is None:
            continue
        for name, credential, path in readers(stored):
            out.reads += 1
            reply = _get(base + path, _headers(credential))
            if isinstance(reply, str) or not 200 <= reply.status < 300 or not well_formed(reply):
                answer = reply if isinstance(reply, str) else f"{reply.status} {reply.body[:160]!r}"
                out.problems.append(f"{label} via {name} (GET {path[:80]}): {answer}")
    return out


def _get(url: str, headers: dict[str, str]) -> wire.Reply | str:
    """A GET with its raw answer; why not, when there was none."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return wire.Reply(answer.status, _lower(answer.headers.items()), answer.read())
    except urllib.error.HTTPError as exc:
        return wire.Reply(exc.code, _lower(exc.headers.items()), exc.read())
    except OSError as exc:
        return f"no answer: {type(exc).__name__}: {exc}"


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


# -- the scenario ------------------------------------------------------------------------


@dataclasses.dataclass
class StoreRun:
    """One store's barrage: results of both passes, RSS samples, hostile reads."""

    store: str
    results: list[Result] = dataclasses.field(default_factory=list)
    rss: dict[str, int] = dataclasses.field(default_factory=dict)
    hostile: Hostile = dataclasses.field(default_factory=Hostile)
    server_errors: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def problems(self) -> dict[tuple[str, str, str], list[Result]]:
        """Results with a problem by (problem, family, case)."""
        found: dict[tuple[str, str, str], list[Result]] = collections.defaultdict(list)
        for result in self.results:
            if (problem := result.problem()) is not None:
                found[(problem, result.case.family, result.case.name)].append(result)
        return found

    def growth(self) -> int:
        """RSS growth over the second pass."""
        return self.rss["after pass 2"] - self.rss["after pass 1"]

    def bounded(self) -> bool:
        """The second pass did not grow RSS by more than BOUNDED_GROWTH (or 10 %)."""
        return self.growth() <= max(BOUNDED_GROWTH, self.rss["after pass 1"] // 10)


def _sample(server: Server) -> int:
    time.sleep(SETTLE)
    return rss_bytes(server.pid)


def run_store(opts: Options, store: str, database: str) -> StoreRun:
    """Both passes of the barrage and the hostile documents against one server."""
    out = StoreRun(store)
    # Its credential cases are thousands of failed authentications from one address,
    # which the failed-auth limit would answer with 429 for the rest of the barrage.
    env = {"OPSTATUS_MAX_BODY_BYTES": str(table.MAX_BODY), "OPSTATUS_AUTH_FAILURE_LIMIT": "off"}
    with opstatus(database, cpu=opts.server_cpu, env=env) as server:
        fx = fixture(server.url)
        cases = table.cases(fx)
        started = time.monotonic()
        out.rss["before"] = _sample(server)
        for n in (1, 2):
            with cpu_affinity(opts.load_cpu):
                out.results += run_async(barrage(server.url, cases))
            out.rss[f"after pass {n}"] = _sample(server)
        agent = str(fx.credentials["agent"][0][1])
        with cpu_affinity(opts.load_cpu):
            out.hostile = hostile(server.url, agent)
        out.rss["after hostile documents"] = _sample(server)
        out.seconds = time.monotonic() - started
        out.server_errors = wire.logged_errors(server)
    return out


@contextlib.contextmanager
def _databases(opts: Options) -> Iterator[list[tuple[str, str]]]:
    with contextlib.ExitStack() as stack:
        found = [("SQLite", stack.enter_context(sqlite_database(opts, "f6.db")))]
        if opts.postgres is not None and not opts.quick:
            found.append(
                ("PostgreSQL", stack.enter_context(postgres_database(opts.postgres, "f6")))
            )
        yield found


def report(runs: list[StoreRun]) -> Outcome:
    """Figures, the problems found (each with its request), and the verdict."""
    figures: dict[str, Any] = {}
    details: list[str] = []
    passed = True
    for run in runs:
        s = run.store
        problems = run.problems()
        tally: collections.Counter[str] = collections.Counter()
        for (problem, _, _), found in problems.items():
            tally["accepted" if problem.startswith("accepted") else problem] += len(found)
        figures[f"{s} requests"] = len(run.results) + run.hostile.reads
        figures[f"{s} 5xx"] = tally["5xx"]
        figures[f"{s} no answer"] = tally["no answer"]
        figures[f"{s} bad input accepted"] = tally["accepted"]
        figures[f"{s} 4xx without a message"] = tally["4xx without a message"]
        figures[f"{s} hostile documents unreadable"] = len(run.hostile.problems)
        figures[f"{s} RSS MiB before/pass 1/pass 2"] = "/".join(
            f"{run.rss[k] / MIB:.0f}" for k in ("before", "after pass 1", "after pass 2")
        )
        passed = passed and not problems and not run.hostile.problems and run.bounded()
        details += _details(run, problems)
    return Outcome(
        scenario="F6",
        title="bad-input barrage",
        goal="every bad request 4xx with a message (problem detail or the dialect's error "
        "body), 0 5xx, 0 connection drops, hostile documents readable, RSS bounded",
        passed=passed,
        figures=figures,
        details=details,
        command="python -m faults --only F6",
    )


def _details(run: StoreRun, problems: dict[tuple[str, str, str], list[Result]]) -> list[str]:
    families = collections.Counter(r.case.family for r in run.results)
    rss = ", ".join(f"{k} {v / MIB:.1f} MiB" for k, v in run.rss.items())
    verdict = "bounded" if run.bounded() else "NOT bounded"
    lines = [
        f"{run.store}: {len(run.results)} barrage requests in two passes "
        f"({dict(sorted(families.items()))}), {run.hostile.reads} hostile-document reads, "
        f"{run.seconds:.0f} s; RSS {rss}; the second pass grew it "
        f"{run.growth() / MIB:+.1f} MiB ({verdict})",
    ]
    for (problem, family, name), found in sorted(problems.items()):
        routes = sorted({r.case.route for r in found})
        first, reply = found[0], found[0].reply
        answer = first.error if reply is None else f"{reply.status} {reply.body[:160]!r}"
        lines.append(
            f"{run.store} BUG {problem}: {family} case '{name}' on {len(routes)} route(s) "
            f"({', '.join(routes[:EXAMPLES])}{'…' if len(routes) > EXAMPLES else ''}); "
            f"e.g. {first.case.line()} -> {answer}"
        )
    lines += [f"{run.store} BUG hostile document: {p}" for p in run.hostile.problems]
    lines += [f"{run.store} hostile document refused (a limit): {r}" for r in run.hostile.refused]
    lines += [f"{run.store}: {e}" for e in run.server_errors]
    return lines


def run(opts: Options) -> Outcome:
    """The barrage on each store."""
    with _databases(opts) as databases:
        runs = [run_store(opts, store, url) for store, url in databases]
    return report(runs)
