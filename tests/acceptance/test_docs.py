"""docs/architecture.md and docs/dialects.md hold what the code does.

The dialect examples run verbatim, in order, against a real ``opstatus serve``;
the signature example verifies what the server signs; the tables of states,
transitions, dialect mappings and environment variables are compared with the
code's own tables, so a change to either side that forgets the other fails here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import opstatus
from opstatus.dialects import clanforge, commandstatus, rsa, sbc, webex
from opstatus.domain import webhooks
from opstatus.domain.states import TRANSITIONS, OperationState, State, Via
from tests.server import Server, run_shell_example, running

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
DIALECTS = ROOT / "docs" / "dialects.md"
SCRIPT_DEADLINE = 60.0
#: a table row whose cells are backticked names: "| `a` | `b` | text |"
CELL = re.compile(r"`([^`]+)`")


def section(path: Path, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    text = path.read_text()
    level = heading.split(" ", 1)[0]
    start = text.find(f"\n{heading}\n")
    assert start >= 0, f"{path.name} has no {heading!r} section"
    body = text[start + len(heading) + 2 :]
    following = re.search(rf"^#{{1,{len(level)}}} ", body, re.MULTILINE)
    return body if following is None else body[: following.start()]


def rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row in ``text`` (header and rule rows left out)."""
    out = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("| ---"):
            out.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return out[1:] if out else out


def blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of ``language`` in ``text``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


# -- the dialect examples ------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """``opstatus serve`` on a fresh SQLite file, bootstrapped with an admin key."""
    with running(f"sqlite:///{tmp_path / 'opstatus.db'}", tmp_path) as srv:
        yield srv


def test_the_dialect_examples_run_in_order_and_answer_as_shown(server: Server) -> None:
    script = "\n".join(blocks(DIALECTS.read_text(), "bash"))
    assert script.startswith("set -euo pipefail\n")
    out = run_shell_example(script, server.url, server.admin_key, SCRIPT_DEADLINE)
    # What each example prints, as the page shows it.
    assert '"nodes":[{"nodeId":"node-1","status":"Dispatched"}' in out
    assert '"clusterId":"cluster-a"' in out
    assert "<operation>activate</operation>" in out
    assert "<status>pending</status>" in out
    assert '{"data":{"type":"getRunStatus","overall-status":"New","start-time":"' in out
    assert '"jobstateid":3,"jobstatename":"Queued"' in out
    assert '"device":"thermostat-7","state":"Command Success","reason":"rebooted"' in out


# -- the signature example -----------------------------------------------------------


def _verify() -> Callable[..., bool]:
    [code] = blocks(section(ARCHITECTURE, "### Verifying a signature"), "python")
    namespace: dict[str, Any] = {}
    exec(compile(code, str(ARCHITECTURE), "exec"), namespace)  # the page's own code
    verify: Callable[..., bool] = namespace["verify"]
    return verify


@pytest.mark.parametrize("which", ["the page's example", "opstatus.verify_signature"])
def test_the_signature_example_accepts_what_the_server_signs_and_nothing_else(which: str) -> None:
    verify = _verify() if which == "the page's example" else opstatus.verify_signature
    body, now = b'{"seq":7,"type":"operation.succeeded"}', 1_800_000_000
    header = webhooks.signature("whsec_test", now, body)
    assert verify("whsec_test", header, body, now=now)
    assert verify("whsec_test", header, body, now=now + 300)
    assert not verify("whsec_other", header, body, now=now)
    assert not verify("whsec_test", header, body + b" ", now=now)
    assert not verify("whsec_test", header, body, now=now + 301)
    assert not verify("whsec_test", header.replace("t=", "t=1"), body, now=now)
    assert not verify("whsec_test", "v1=" + "0" * 64, body, now=now)
    assert not verify("whsec_test", "garbage", body, now=now)


# -- the tables ----------------------------------------------------------------------


def test_the_state_table_lists_every_execution_state_and_which_are_terminal() -> None:
    found = {
        CELL.findall(row[0])[0]: row[2] == "yes"
        for row in rows(section(ARCHITECTURE, "## Execution states"))
    }
    assert found == {str(s): s.terminal for s in State}


def test_the_transition_table_is_the_code_s_table() -> None:
    demands = {"anyone": Via.ANYONE, "**force**": Via.FORCE, "**retry**": Via.RETRY}
    found = {}
    for row in rows(section(ARCHITECTURE, "## Transition table")):
        [old], [new] = CELL.findall(row[0]), CELL.findall(row[1])
        found[(State(old), State(new))] = demands[row[2].split(" (")[0]]
    assert found == TRANSITIONS


def test_the_operation_state_table_lists_every_operation_state() -> None:
    table = rows(section(ARCHITECTURE, "## The derived operation"))
    assert {CELL.findall(row[0])[0] for row in table} == {str(s) for s in OperationState}


def _operation_state(state: State) -> OperationState:
    """The operation state an operation whose executions are all in ``state`` has."""
    if state.active:
        return OperationState.RUNNING
    if state is State.TIMED_OUT:
        return OperationState.FAILED
    return OperationState(str(state))


def test_the_mapping_table_is_every_dialect_s_table() -> None:
    found = {
        State(CELL.findall(row[0])[0]): row[1:]
        for row in rows(section(DIALECTS, "## State mappings at a glance"))
    }
    expected = {}
    for state in State:
        op = _operation_state(state)
        stateid, statename = clanforge.JOB_STATES[op]
        expected[state] = [
            webex.STATUS[state],
            sbc.STATUS[op],
            rsa.OVERALL_STATUS[op],
            f"{stateid} {statename}",
            commandstatus.STATES[state],
        ]
    assert found == expected


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    used: set[str] = set()
    for folder in ("opstatus", "tests", "bench", "faults"):
        for path in (ROOT / folder).rglob("*.py"):
            used.update(re.findall(r"OPSTATUS_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    documented = set(re.findall(r"`(OPSTATUS_[A-Z0-9_]+)`", ARCHITECTURE.read_text()))
    assert used - documented == set()
    assert documented - used == set()


# -- the links -----------------------------------------------------------------------


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_every_link_between_the_documents_reaches_a_file_and_heading() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: outside the repository
            path, _, fragment = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
                continue
            if fragment and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.MULTILINE)
                if fragment not in {anchor(h) for h in headings}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_every_file_the_documents_name_exists() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    pattern = r"\b(?:opstatus|tests|bench|faults|docs)/[\w/.-]*\w\.(?:py|md|sql|json|lua|png)\b"
    missing = [
        f"{page.name}: {name}"
        for page in pages
        for name in sorted(set(re.findall(pattern, page.read_text())))
        if not (ROOT / name).exists()
    ]
    assert missing == []
