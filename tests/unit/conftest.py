"""Builders for the domain unit tests (plain records, no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from opstatus.domain import derive
from opstatus.domain.records import Execution, Operation, Timeouts
from opstatus.domain.states import OperationState, State

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)

MakeExecution = Callable[..., Execution]
MakeOperation = Callable[..., Operation]


def new_execution(**overrides: Any) -> Execution:
    """A fresh queued execution at version 1; ``overrides`` replace any field."""
    fields: dict[str, Any] = {
        "id": "ex-1",
        "tenant": "t1",
        "operation_id": "op-1",
        "target": "node-1",
        "state": State.QUEUED,
        "progress": 0.0,
        "eta": None,
        "details": {},
        "error": None,
        "result": None,
        "attempt": 1,
        "version": 1,
        "queued_at": NOW,
        "started_at": None,
        "updated_at": NOW,
        "finished_at": None,
        "lease_expires_at": None,
    }
    fields.update(overrides)
    return Execution(**fields)


def new_operation(**overrides: Any) -> Operation:
    """An operation with no executions folded in yet (counts all zero, version 1)."""
    fields: dict[str, Any] = {
        "id": "op-1",
        "tenant": "t1",
        "number": 1,
        "kind": "videomesh.NetworkTest",
        "parameters": {},
        "internal": False,
        "groups": (),
        "schedule_at": None,
        "timeouts": Timeouts(),
        "retries": 0,
        "exclusive": False,
        "idempotency_key": None,
        "state": OperationState.QUEUED,
        "counts": derive.empty_counts(),
        "progress_sum": 0.0,
        "total": 0,
        "eta": None,
        "error": None,
        "result": None,
        "created_at": NOW,
        "started_at": None,
        "updated_at": NOW,
        "completed_at": None,
        "version": 1,
    }
    fields.update(overrides)
    return Operation(**fields)


@pytest.fixture
def make_execution() -> MakeExecution:
    return new_execution


@pytest.fixture
def make_operation() -> MakeOperation:
    return new_operation
