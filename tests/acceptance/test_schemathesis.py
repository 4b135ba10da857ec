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
from pathlib import Path

from opstatus import dialects
from tests.server import BOOTSTRAP_SECRET, clean_env, running

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
#: examples per operation and phase: enough to find the trouble, small enough for CI
MAX_EXAMPLES = int(os.environ.get("OPSTATUS_SCHEMATHESIS_EXAMPLES", "30"))
#: a fixed seed keeps CI deterministic; set the variable to explore other inputs
SEED = os.environ.get("OPSTATUS_SCHEMATHESIS_SEED", "20261123")
RUN_DEADLINE = 420.0
#: the dialects' tags, left out of the run
DIALECT_TAGS = "^(" + "|".join(re.escape(d.tag) for d in dialects.dialects()) + ")$"
# The long-poll ``wait`` is documented up to 60 s; generated values would make each
# request sleep that long. Its parsing is covered elsewhere; here it stays short.
# Schemathesis takes 404 and 409 for a valid request the server's state refuses; 410 (the
# operation was deleted: the stateful phase deletes and then reuses ids), 412 (If-Match
# names another version) and 423 (a target runs exclusive work of this kind) are such
# refusals too, each documented on the routes that answer it.
CONFIG = """\
[parameters]
"query.wait" = 0.05

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "410", "412", "423", "429", "5xx"]

# A schema-valid webhook URL may still name a destination that DNS does not resolve or
# that is not public: 422, as documented on the route (no schema can say what resolves).
[[operations]]
include-operation-id = "create_webhook"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx",
]

# A schema-valid as_of may name a moment before the operation was created or in the
# future, or come with wait: 400, as documented on the parameter (relative to the clock).
[[operations]]
include-operation-id = "get_operation"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", "400", "401", "403", "404", "409", "410", "412", "423", "429", "5xx",
]
"""


def schemathesis_command() -> list[str]:
    """The ``st`` console script installed beside this Python."""
    script = Path(sys.executable).with_name("st")
    return [str(script)] if script.exists() else [sys.executable, "-m", "schemathesis.cli"]


def test_the_api_conforms_to_its_openapi_document(tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    database = f"sqlite:///{tmp_path}/opstatus.db"
    # Schemathesis sends thousands of requests, invalid credentials among them, from one
    # address: both limits would answer 429 where it checks for 401 (each limit has
    # its own tests).
    limits = {"OPSTATUS_RATE_LIMIT": "off", "OPSTATUS_AUTH_FAILURE_LIMIT": "off"}
    with running(database, tmp_path, limits) as server:
        started = time.monotonic()
        result = subprocess.run(
            [
                *schemathesis_command(), "--no-color", "--config-file", str(config),
                "run", f"{server.url}/openapi.json",
                "--checks", "all",
                "--max-examples", str(MAX_EXAMPLES),
                "--seed", SEED,
                "--exclude-tag-regex", DIALECT_TAGS,
                "--workers", "1",
                "--request-timeout", "15",
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
