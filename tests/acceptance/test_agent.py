"""The real ``opstatus agent`` command running real shell commands against a real server."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from opstatus import Client, Operation
from opstatus.domain.states import OperationState, State
from tests.server import Key, Server, Tenant, clean_env, opstatus_command, stop

DEADLINE = 30.0
TARGET = "box-1"
#: short inbox long-polls: the server finishes an abandoned long-poll (the agent's, when it
#: stops) before it shuts down, and the fixture gives it 10 s for that
POLL = 2.0


@pytest.fixture
def tenant(server: Server) -> Tenant:
    """A tenant of this test's own."""
    return server.tenant()


@pytest.fixture
def agent_key(server: Server, tenant: Tenant) -> Key:
    """An agent key for the target the agent pulls for."""
    return server.key(tenant, "agent", [TARGET])


@pytest.fixture
def client(server: Server, tenant: Tenant) -> Iterator[Client]:
    """An SDK client with the tenant's admin key."""
    with Client(server.url, tenant.admin.secret) as c:
        yield c


@contextmanager
def agent(
    server: Server, key: Key, command: str, workdir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``opstatus agent`` for TARGET; stopped with SIGTERM afterwards (it must exit 0)."""
    log = workdir / "agent.log"
    env = clean_env(OPSTATUS_URL=server.url, OPSTATUS_KEY=key.secret)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*opstatus_command(), "agent", "--target", TARGET, "--exec", command,
             "--poll", str(POLL)],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode != -signal.SIGKILL:  # a test that killed it saw to it itself
            stop(proc, log, DEADLINE)


def until(
    client: Client, op_id: str, done: Callable[[Operation], bool], deadline: float = DEADLINE
) -> Operation:
    """Long-poll the operation until ``done`` holds for it (AssertionError at the deadline)."""
    end = time.monotonic() + deadline
    operation = client.get(op_id)
    while not done(operation):
        left = end - time.monotonic()
        assert left > 0, f"condition never held; last seen {operation}"
        response = client._http.get(
            f"/v1/operations/{op_id}",
            params={"wait": min(left, 5.0), "version": operation.version},
            timeout=left + 10,
        )
        assert response.status_code == 200, response.text
        operation = client.get(op_id)
    return operation


def script(workdir: Path, body: str) -> str:
    """A shell script file with ``body``; the command that runs it."""
    path = workdir / "job.sh"
    path.write_text("set -e\n" + body)
    return f"sh {path}"


def test_progress_lines_and_exit_0_succeed(
    server: Server, client: Client, agent_key: Key, tmp_path: Path
) -> None:
    command = script(
        tmp_path,
        "echo PROGRESS 30\n"
        "echo PROGRESS 70\n"
        'printf "%s\\n" "$OPSTATUS_PARAMETERS"\n'
        'echo "$OPSTATUS_TARGET $OPSTATUS_EXECUTION_ID $OPSTATUS_OPERATION_ID"\n',
    )
    parameters = {"version": "2.0", "hosts": ["a", "b"]}
    with agent(server, agent_key, command, tmp_path):
        made = client.create("deploy", targets=[TARGET], parameters=parameters)
        final = client.wait(made.id, timeout=DEADLINE)
    assert final.state is OperationState.SUCCEEDED
    [execution] = final.executions  # type: ignore[misc]
    assert execution.result["exit_code"] == 0
    *_, params_line, ids_line = execution.result["output_tail"].splitlines()
    assert json.loads(params_line) == parameters
    assert ids_line == f"{TARGET} {execution.id} {made.id}"
    progress = [e.progress for e in client.events(made.id) if e.type == "execution.in_progress"]
    assert 30 in progress and 70 in progress
    assert progress.index(30) < progress.index(70)


def test_a_large_parameters_document_reaches_the_command_on_stdin_and_in_a_file(
    server: Server, client: Client, agent_key: Key, tmp_path: Path
) -> None:
    """900 KB of parameters once made the spawn fail (one environment variable) and
    stranded the work in progress; now the command reads them from stdin or the file."""
    command = script(
        tmp_path,
        "from_stdin=$(wc -c)\n"
        'from_file=$(wc -c < "$OPSTATUS_PARAMETERS_FILE")\n'
        'echo "stdin=$from_stdin file=$from_file env=${#OPSTATUS_PARAMETERS}"\n',
    )
    parameters = {"blob": "x" * 900_000}
    size = len(json.dumps(parameters))
    with agent(server, agent_key, command, tmp_path):
        made = client.create("deploy", targets=[TARGET], parameters=parameters)
        final = client.wait(made.id, timeout=DEADLINE)
    assert final.state is OperationState.SUCCEEDED, final
    [execution] = final.executions  # type: ignore[misc]
    assert execution.result["output_tail"].split() == [f"stdin={size}", f"file={size}", "env=0"]


def test_a_non_zero_exit_fails_with_the_output_tail(
    server: Server, client: Client, agent_key: Key, tmp_path: Path
) -> None:
    lines = "".join(f"echo line-{n}\n" for n in range(40))
    command = script(tmp_path, lines + "echo 'disk full' >&2\nexit 3\n")
    with agent(server, agent_key, command, tmp_path):
        made = client.create("deploy", targets=[TARGET])
        final = client.wait(made.id, timeout=DEADLINE)
    assert final.state is OperationState.FAILED
    [execution] = final.executions  # type: ignore[misc]
    assert execution.state is State.FAILED and execution.error is not None
    assert "disk full" in execution.error and "line-39" in execution.error
    assert "line-0\n" not in execution.error  # only the tail
    assert execution.result["exit_code"] == 3


def test_sigterm_hands_the_running_execution_back_and_exits_0(
    server: Server, client: Client, agent_key: Key, tmp_path: Path
) -> None:
    """A stopping agent gives its work back: queued again, the attempt not spent, and
    the next agent finishes it."""
    command = script(
        tmp_path, "trap 'echo got-term; exit 143' TERM\necho started\nsleep 30 &\nwait $!\n"
    )
    with agent(server, agent_key, command, tmp_path) as proc:
        made = client.create("deploy", targets=[TARGET])
        until(client, made.id, lambda op: op.counts.get("in_progress", 0) == 1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE) == 0
    assert time.monotonic() - started < 25, "the agent waited for sleep 30"
    [execution] = client.get(made.id).executions  # type: ignore[misc]
    assert execution.state is State.QUEUED
    assert execution.attempt == 1  # not spent
    assert execution.error is None and execution.started_at is None
    with agent(server, agent_key, script(tmp_path, "echo done\n"), tmp_path):
        final = client.wait(made.id, timeout=DEADLINE)
    assert final.state is OperationState.SUCCEEDED
    [execution] = final.executions  # type: ignore[misc]
    assert execution.attempt == 1


def test_a_killed_agents_work_comes_back_when_its_heartbeat_lapses(
    server: Server, client: Client, agent_key: Key, tmp_path: Path
) -> None:
    """SIGKILL: nothing is reported; the heartbeat deadline passes, and the engine queues
    the work again (attempt + 1) for the next agent."""
    with agent(server, agent_key, script(tmp_path, "sleep 60\n"), tmp_path) as proc:
        made = client.create("deploy", targets=[TARGET], timeouts={"heartbeat": 2}, retries=1)
        until(client, made.id, lambda op: op.counts.get("in_progress", 0) == 1)
        proc.kill()
        proc.wait()
    [held] = client.get(made.id).executions  # type: ignore[misc]
    assert held.heartbeat_expires_at is not None
    until(client, made.id, lambda op: op.counts.get("queued", 0) == 1)
    [again] = client.get(made.id).executions  # type: ignore[misc]
    assert again.attempt == 2
    with agent(server, agent_key, script(tmp_path, "echo done\n"), tmp_path):
        final = client.wait(made.id, timeout=DEADLINE)
    assert final.state is OperationState.SUCCEEDED


def test_simulate_runs_a_fleet_over_the_sdk(
    server: Server, client: Client, tenant: Tenant, tmp_path: Path
) -> None:
    targets = ["sim-1", "sim-2", "sim-3"]
    made = client.create("deploy", targets=targets)
    env = clean_env(OPSTATUS_URL=server.url, OPSTATUS_KEY=tenant.admin.secret)
    log = tmp_path / "simulate.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*opstatus_command(), "simulate", "--targets", "3", "--duration-min", "0.2",
             "--duration-max", "0.5", "--poll", str(POLL)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        final = client.wait(made.id, timeout=DEADLINE)
    finally:
        stop(proc, log, DEADLINE)
    assert final.state is OperationState.SUCCEEDED, log.read_text()
    progress = {e.progress for e in client.events(made.id) if e.type == "execution.in_progress"}
    assert {10, 50, 90} <= progress
