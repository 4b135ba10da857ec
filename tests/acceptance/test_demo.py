"""``opstatus demo``: a server, simulated agents and progress, ending cleanly on its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.server import clean_env, opstatus_command


def test_demo_runs_for_its_duration_and_shows_progress(tmp_path: Path) -> None:
    result = subprocess.run(
        [*opstatus_command(), "demo", "--duration", "5", "--targets", "3"],
        cwd=tmp_path, env=clean_env(COLUMNS="200"), capture_output=True, text=True,
        timeout=90, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "running" in out or "queued" in out
    assert "succeeded" in out or "failed" in out
    assert "recent operations" in out and "total" in out
    assert list(tmp_path.iterdir()) == []  # nothing left behind
    assert "Traceback" not in result.stderr  # e.g. a long-poll left failing after its agent
