"""The SQL blocks as loaded: fragments put in place, per dialect."""

from __future__ import annotations

import pytest

from opstatus.store import queries


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_every_fragment_is_put_in_place(dialect: str) -> None:
    loaded = queries.load(dialect)
    assert not [name for name, sql in loaded.named.items() if "/*:" in sql]


def test_row_locks_are_postgres_clauses() -> None:
    lite, pg = queries.load("sqlite"), queries.load("postgres")
    assert pg["op_lock"].endswith("AND tenant_id IS NOT DISTINCT FROM $1 FOR UPDATE")
    assert pg["exec_due"].endswith("LIMIT $2 FOR UPDATE SKIP LOCKED")
    assert "LIMIT $4 FOR UPDATE OF w SKIP LOCKED)" in pg["webhook_lease"]
    for name in ("op_lock", "exec_lock", "exec_lock_by_op", "exec_due", "webhook_lease"):
        assert "FOR UPDATE" not in lite[name], name


def test_a_lookup_by_id_keeps_the_tenant_off_the_indexes_on_postgres() -> None:
    lite, pg = queries.load("sqlite"), queries.load("postgres")
    for name in ("op_get", "op_lock", "exec_get", "exec_lock", "op_update", "exec_update"):
        assert "id = $2 AND tenant_id IS NOT DISTINCT FROM $1" in pg[name], name
        assert "id = $2 AND tenant_id = $1" in lite[name], name


def test_inlining_drops_a_fragments_comment_lines() -> None:
    named = {"lock": "-- why it locks\nFOR UPDATE", "get": "SELECT 1 /*:lock*/ -- end"}
    assert queries._inline(named)["get"] == "SELECT 1 FOR UPDATE -- end"
