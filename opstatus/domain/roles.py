"""Roles and what each may do: one table, asked by the API and the dialects."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    """What a credential is for (docs/architecture.md, Security)."""

    ADMIN = "admin"  #: everything in its tenant, keys included
    OPERATOR = "operator"  #: trigger, cancel, delete, manage targets and groups; read
    VIEWER = "viewer"  #: read only
    AGENT = "agent"  #: its own targets' inbox and executions only


class Action(enum.StrEnum):
    """Something a request does."""

    READ = "read"  #: read operations, executions, events, targets, groups
    TRIGGER = "trigger"  #: create operations
    CANCEL = "cancel"  #: cancel, retry or delete operations
    MANAGE_TARGETS = "manage_targets"  #: create or change targets and groups
    MANAGE_KEYS = "manage_keys"  #: create, list, revoke keys
    PULL = "pull"  #: read a target's inbox
    REPORT = "report"  #: report on an execution


_R, _A = Role, Action
#: Which role may take which action. Agents are further bound to their own targets.
PERMISSIONS: dict[Role, frozenset[Action]] = {
    _R.ADMIN: frozenset(Action),
    _R.OPERATOR: frozenset({_A.READ, _A.TRIGGER, _A.CANCEL, _A.MANAGE_TARGETS, _A.PULL, _A.REPORT}),
    _R.VIEWER: frozenset({_A.READ}),
    _R.AGENT: frozenset({_A.PULL, _A.REPORT}),
}


def may(role: Role, action: Action) -> bool:
    """Tell whether ``role`` may take ``action`` at all."""
    return action in PERMISSIONS[role]
