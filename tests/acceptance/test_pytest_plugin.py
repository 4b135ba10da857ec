"""The pytest plugin, as a client developer uses it: a fresh ``pytest`` in a directory
of its own runs docs/testing.md's Python blocks (the one test per dialect) and a few
tests of the fixture's contract, through the ``pytest11`` entry point alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.acceptance.test_docs import blocks
from tests.server import clean_env

ROOT = Path(__file__).resolve().parents[2]
TESTING = ROOT / "docs" / "testing.md"
RUN_DEADLINE = 300.0

CONTRACT = textwrap.dedent(
    """
    URLS = set()


    def test_a_leaves_state_behind(opstatus_server):
        URLS.add(opstatus_server.url)
        opstatus_server.target("left-over")
        opstatus_server.fault(path="/nowhere", status=500)
        opstatus_server.scenario("mine", outcome="fail")


    def test_b_starts_clean_on_the_same_server(opstatus_server):
        URLS.add(opstatus_server.url)
        assert len(URLS) == 1  # one server for the session
        assert opstatus_server.http.get("/v1/targets").json()["items"] == []
        assert opstatus_server.faults() == []
        listed = opstatus_server.http.get("/v1/testing/scenarios").json()["items"]
        assert "mine" not in {s["name"] for s in listed}


    def test_the_clock_helpers(opstatus_server):
        before = opstatus_server.now()
        assert (opstatus_server.advance(60) - before).total_seconds() >= 60
    """
)


def test_the_documented_tests_pass_with_the_plugin(tmp_path: Path) -> None:
    examples = blocks(TESTING.read_text(), "python")
    assert len(examples) >= 6, "docs/testing.md lost its examples"
    (tmp_path / "test_examples.py").write_text("\n\n".join(examples) + CONTRACT)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_examples.py"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=RUN_DEADLINE,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 passed" in result.stdout, result.stdout
