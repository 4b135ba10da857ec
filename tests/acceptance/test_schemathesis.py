"""Schemathesis over ``/openapi.json`` against the real ``opstatus serve``, every check on.

The server must answer every generated request (valid and invalid alike) as the
document says: no 500, only documented statuses, headers and content types, bodies
that match their schemas, 4xx for invalid input, 2xx (or a documented state-dependent
refusal) for valid input, 401 without credentials, 405 with ``Allow``.

Only the canonical API is fuzzed: the vendor dialects' operations (one tag each) answer
as their vendors document, which tests/dialects/ checks against those documents.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from opstatus import dialects
from opstatus.api import ENDPOINTS, openapi
from tests.server import BOOTSTRAP_SECRET, clean_env, running

HERE = Path(__file__).parent
#: what the document says and schemathesis does not read from it (see the file)
CONFIG = HERE / "schemathesis.toml"
#: a valid Idempotency-Key made unique per request, as a client makes one per request
HOOKS = HERE / "schemathesis_hooks.py"
#: examples per operation and phase: enough to find the trouble, small enough for CI
MAX_EXAMPLES = int(os.environ.get("OPSTATUS_SCHEMATHESIS_EXAMPLES", "30"))
#: a fixed seed keeps CI deterministic; set the variable to explore other inputs
SEED = os.environ.get("OPSTATUS_SCHEMATHESIS_SEED", "20261123")
RUN_DEADLINE = 420.0
#: the dialects' tags, left out of the run
DIALECT_TAGS = "^(" + "|".join(re.escape(d.tag) for d in dialects.dialects()) + ")$"
#: what schemathesis 4.x takes unless told otherwise (``*_EXPECTED_STATUSES``): for a
#: valid request, and as the rejection of an invalid one
DEFAULTS = {
    "positive_data_acceptance": {"2xx", "3xx", "401", "403", "404", "409", "429", "5xx"},
    "negative_data_rejection": {
        "400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx",
    },
}  # fmt: skip


def schemathesis_command() -> list[str]:
    """The ``st`` console script installed beside this Python."""
    script = Path(sys.executable).with_name("st")
    return [str(script)] if script.exists() else [sys.executable, "-m", "schemathesis.cli"]


def documented(operation: dict[str, Any]) -> set[str]:
    """The statuses ``operation`` documents."""
    return set(operation["responses"])


def test_the_configuration_only_repeats_what_the_document_says() -> None:
    """Every status the configuration adds to schemathesis' defaults is one the document
    states: on the operation a rule names, or (globally) on the routes that give it."""
    config = tomllib.loads(CONFIG.read_text())
    paths = openapi.document(ENDPOINTS)["paths"]
    operations = {op["operationId"]: op for path in paths.values() for op in path.values()}
    every = set().union(*(documented(op) for op in operations.values()))
    for check, default in DEFAULTS.items():
        added = set(config["checks"][check]["expected-statuses"]) - default
        assert added <= every, check
    for rule in config["operations"]:
        operation = operations[rule["include-operation-id"]]
        for check, settings in rule["checks"].items():
            added = set(settings["expected-statuses"]) - DEFAULTS[check]
            assert added <= documented(operation), rule


def test_the_api_conforms_to_its_openapi_document(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/opstatus.db"
    # Schemathesis sends thousands of requests, invalid credentials among them, from one
    # address: both limits would answer 429 where it checks for 401 (each limit has
    # its own tests).
    limits = {"OPSTATUS_RATE_LIMIT": "off", "OPSTATUS_AUTH_FAILURE_LIMIT": "off"}
    with running(database, tmp_path, limits) as server:
        started = time.monotonic()
        result = subprocess.run(
            [
                *schemathesis_command(), "--no-color", "--config-file", str(CONFIG),
                "run", f"{server.url}/openapi.json",
                "--checks", "all",
                "--max-examples", str(MAX_EXAMPLES),
                "--seed", SEED,
                "--exclude-tag-regex", DIALECT_TAGS,
                "--header", f"X-API-Key: {BOOTSTRAP_SECRET}",
            ],
            cwd=tmp_path,
            env=clean_env(SCHEMATHESIS_HOOKS=str(HOOKS), COLUMNS="120"),
            capture_output=True,
            text=True,
            timeout=RUN_DEADLINE,
            check=False,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        log = server.log.read_text()
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"schemathesis failed after {elapsed:.0f}s:\n{report}"
    assert "Traceback" not in log, log
    assert " generated" in report, report  # it did run test cases
    assert "/v1/videoMesh" not in report and "/aveksa" not in report, report
