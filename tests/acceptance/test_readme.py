"""The README's curl walk-through, run verbatim against the real ``opstatus serve``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import run_shell_example, running

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "## Walk-through with curl"
ADMIN_KEY = "readme-walkthrough-admin"
SCRIPT_DEADLINE = 60.0


def walkthrough_block(readme: str) -> str:
    """The first ```bash block under the walk-through heading (and before the next heading)."""
    start = readme.find(f"\n{HEADING}\n")
    assert start >= 0, f"README.md has no {HEADING!r} section"
    section = readme[start + len(HEADING) + 2 :]
    following = re.search(r"^## ", section, re.MULTILINE)
    if following is not None:
        section = section[: following.start()]
    found = re.search(r"^```bash\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert found is not None, f"no ```bash block under {HEADING!r}"
    return found.group(1)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``opstatus serve`` on a free port and a fresh SQLite file, bootstrapped; its URL."""
    database = f"sqlite:///{tmp_path / 'opstatus.db'}"
    env = {"OPSTATUS_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY, "OPSTATUS_RATE_LIMIT": "100/second"}
    with running(database, tmp_path, env) as srv:
        yield srv.url


def test_the_walkthrough_block_is_found_and_self_contained() -> None:
    block = walkthrough_block(README.read_text())
    assert block.startswith("set -euo pipefail\n")
    assert "OPSTATUS_URL=${OPSTATUS_URL:-http://127.0.0.1:8080}" in block
    assert "ADMIN_KEY=${ADMIN_KEY:-change-me}" in block
    assert "jq" not in block.split()


def test_the_readme_walkthrough_runs_verbatim_and_ends_succeeded(server: str) -> None:
    block = walkthrough_block(README.read_text())
    stdout = run_shell_example(block, server, ADMIN_KEY, SCRIPT_DEADLINE)
    lines = stdout.splitlines()
    assert lines[-1] == "state: succeeded", stdout
    printed = dict(line.split(": ", 1) for line in lines)
    operation_id = printed["operation"]

    headers = {"X-API-Key": ADMIN_KEY}
    with httpx.Client(base_url=server, headers=headers, timeout=5) as client:
        answer = client.get(f"/v1/operations/{operation_id}")
        assert answer.status_code == 200, answer.text
        operation = answer.json()
        assert operation["state"] == "succeeded"
        assert operation["targets"] == ["lamp-1"]
        [execution] = operation["executions"]
        assert execution["id"] == printed["execution"]
        assert execution["state"] == "succeeded"
        assert execution["progress"] == 100
        assert execution["result"] == {"version": "2.1.0"}
        # The agent key the walk-through made is bound to lamp-1 and nothing else.
        keys = client.get("/v1/keys").json()["items"]
        agents = [k for k in keys if k["role"] == "agent"]
        assert [k["targets"] for k in agents] == [["lamp-1"]]
