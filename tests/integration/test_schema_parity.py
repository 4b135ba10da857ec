"""Schema parity: the SQLite and the PostgreSQL migrations build the same schema.

A fresh SQLite file and a fresh PostgreSQL database are migrated, read back from the
databases' own catalogues (sqlite_master and PRAGMAs; information_schema and
pg_catalog) and compared: the same tables, the same columns per table (name,
nullability, type), the same primary keys, unique constraints, foreign keys and
indexes (name, columns, uniqueness, partial predicate). Differences that are meant
are listed in the allow-lists below, each with its reason; anything else fails, and
is mended by a new migration in both dialects (an old one is never edited).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from opstatus.store.sqlite import SqliteStore

#: tables only one dialect has, and why
ONLY_POSTGRES_TABLES = {
    # Commit-time numbering (postgres migration 0008): a write queues its events here
    # and a deferred trigger numbers them inside COMMIT. SQLite has one writer at a
    # time and numbers them in the transaction (Driver.appends_at_commit).
    "event_appends",
}
ONLY_SQLITE_TABLES = {
    # The key cache's epoch (sqlite migration 0011): a counter triggers move whenever a
    # key or token changes, read when data_version moved. PostgreSQL's epoch is the
    # LISTEN channel's generation, moved by the revoking transaction's NOTIFY.
    "key_changes",
}

#: indexes only one dialect has, and why
ONLY_POSTGRES_INDEXES = {
    # PostgreSQL walks operations_number for a list filtered by a creation-time range
    # and tests created_at on the index entries (postgres migration 0007); SQLite plans
    # that query through the creation-time index (now operations_created_number) and a sort.
    "operations_number_created",
}
ONLY_SQLITE_INDEXES: set[str] = set()

#: a PostgreSQL column type -> the word of the shared vocabulary
POSTGRES_TYPES = {
    "text": "text",
    "integer": "integer",
    "bigint": "integer",
    "double precision": "real",
    "boolean": "boolean",
    "timestamp with time zone": "timestamp",
    "jsonb": "json",
}
#: a word of the vocabulary -> how SQLite declares a column of it (see SqliteCodec:
#: timestamps are REAL unix seconds, JSON is TEXT, booleans are 0/1 INTEGER)
SQLITE_DECLARED = {
    "text": "text",
    "integer": "integer",
    "boolean": "integer",
    "real": "real",
    "timestamp": "real",
    "json": "text",
}


@dataclass(frozen=True)
class Column:
    name: str
    nullable: bool
    type: str  #: a word of the vocabulary (PostgreSQL) or a declared type (SQLite)


@dataclass(frozen=True)
class Index:
    table: str
    columns: tuple[str, ...]
    unique: bool
    where: str | None  #: the partial index's predicate, normalised


@dataclass
class Schema:
    columns: dict[str, dict[str, Column]] = field(default_factory=dict)
    primary_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: per table: the column lists of UNIQUE constraints (not primary keys)
    uniques: dict[str, set[tuple[str, ...]]] = field(default_factory=dict)
    #: per table: (columns, referenced table, referenced columns, ON DELETE action)
    foreign_keys: dict[str, set[tuple[tuple[str, ...], str, tuple[str, ...], str]]] = field(
        default_factory=dict
    )
    #: indexes made by CREATE INDEX, by name
    indexes: dict[str, Index] = field(default_factory=dict)


def predicate(text: str | None) -> str | None:
    """A partial index's WHERE clause in one spelling: no casts, brackets or case."""
    if text is None:
        return None
    text = re.sub(r"::\w+", "", text).replace("(", " ").replace(")", " ")
    return " ".join(text.lower().split())


# SQLite ---------------------------------------------------------------------------
def sqlite_schema(path: Path) -> Schema:
    """Read the schema of the SQLite file at ``path`` from its catalogue."""
    conn = sqlite3.connect(path)
    try:
        schema = Schema()
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        for table in tables:
            _sqlite_table(conn, table, schema)
        return schema
    finally:
        conn.close()


def _sqlite_table(conn: sqlite3.Connection, table: str, schema: Schema) -> None:
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    pk = sorted((row[5], row[1]) for row in info if row[5])
    schema.primary_keys[table] = tuple(name for _, name in pk)
    # SQLite lets a non-INTEGER PRIMARY KEY column hold NULL (a quirk it keeps for
    # compatibility); the store always writes those ids, so they count as NOT NULL.
    schema.columns[table] = {
        name: Column(name, nullable=not notnull and not in_pk, type=declared.lower())
        for _, name, declared, notnull, _, in_pk in info
    }
    schema.uniques[table] = set()
    for _, name, unique, origin, _ in conn.execute(f"PRAGMA index_list({table})"):
        columns = tuple(row[2] for row in conn.execute(f"PRAGMA index_info({name})"))
        if origin == "u":
            schema.uniques[table].add(columns)
        elif origin == "c":
            (sql,) = conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
            ).fetchone()
            where = sql.split(" WHERE ", 1)[1] if " WHERE " in sql else None
            schema.indexes[name] = Index(table, columns, bool(unique), predicate(where))
    keys: dict[int, list[tuple[str, str, str, str]]] = {}
    for fk_id, _, parent, child_col, parent_col, _, on_delete, _ in conn.execute(
        f"PRAGMA foreign_key_list({table})"
    ):
        keys.setdefault(fk_id, []).append((child_col, parent, parent_col, on_delete))
    schema.foreign_keys[table] = {
        (
            tuple(c for c, _, _, _ in parts),
            parts[0][1],
            tuple(p for _, _, p, _ in parts),
            parts[0][3].lower(),
        )
        for parts in keys.values()
    }


# PostgreSQL -----------------------------------------------------------------------
_PG_COLUMNS = """
SELECT table_name, column_name, is_nullable = 'YES' AS nullable, data_type
  FROM information_schema.columns WHERE table_schema = 'public'
"""


def _attnames(relation: str, numbers: str) -> str:
    """SQL for the names of ``relation``'s columns numbered ``numbers``, in that order."""
    return (
        f"array(SELECT a.attname FROM unnest({numbers}) WITH ORDINALITY AS k(attnum, n) "
        f"JOIN pg_attribute a ON a.attrelid = {relation} AND a.attnum = k.attnum ORDER BY k.n)"
    )


_PG_INDEXES = f"""
SELECT t.relname AS table_name, i.relname AS index_name, ix.indisunique AS is_unique,
       ix.indisprimary AS is_primary, c.contype::text AS constraint_type,
       pg_get_expr(ix.indpred, ix.indrelid) AS predicate,
       {_attnames("t.oid", "ix.indkey")} AS columns
  FROM pg_index ix
  JOIN pg_class i ON i.oid = ix.indexrelid
  JOIN pg_class t ON t.oid = ix.indrelid
  JOIN pg_namespace ns ON ns.oid = t.relnamespace
  LEFT JOIN pg_constraint c ON c.conindid = ix.indexrelid AND c.contype IN ('p', 'u')
 WHERE ns.nspname = 'public'
"""
_PG_FOREIGN_KEYS = f"""
SELECT t.relname AS table_name, p.relname AS parent, c.confdeltype::text AS on_delete,
       {_attnames("c.conrelid", "c.conkey")} AS columns,
       {_attnames("c.confrelid", "c.confkey")} AS parent_columns
  FROM pg_constraint c
  JOIN pg_class t ON t.oid = c.conrelid
  JOIN pg_class p ON p.oid = c.confrelid
  JOIN pg_namespace ns ON ns.oid = t.relnamespace
 WHERE ns.nspname = 'public' AND c.contype = 'f'
"""
#: pg_constraint.confdeltype -> the words SQLite's foreign_key_list uses
_ON_DELETE = {
    "a": "no action", "r": "restrict", "c": "cascade", "n": "set null", "d": "set default",
}  # fmt: skip


async def postgres_schema(url: str) -> Schema:
    """Read the schema of the PostgreSQL database at ``url`` from its catalogue."""
    conn = await asyncpg.connect(url)
    try:
        schema = Schema()
        for row in await conn.fetch(_PG_COLUMNS):
            # an array column (event_appends only) has no word in the vocabulary
            word = POSTGRES_TYPES.get(row["data_type"], row["data_type"])
            in_table = schema.columns.setdefault(row["table_name"], {})
            in_table[row["column_name"]] = Column(row["column_name"], row["nullable"], word)
        for table in schema.columns:
            schema.uniques[table] = set()
            schema.foreign_keys[table] = set()
        for row in await conn.fetch(_PG_INDEXES):
            table, columns = row["table_name"], tuple(row["columns"])
            if row["is_primary"]:
                schema.primary_keys[table] = columns
            elif row["constraint_type"] == "u":
                schema.uniques[table].add(columns)
            else:
                schema.indexes[row["index_name"]] = Index(
                    table, columns, row["is_unique"], predicate(row["predicate"])
                )
        for row in await conn.fetch(_PG_FOREIGN_KEYS):
            schema.foreign_keys[row["table_name"]].add(
                (
                    tuple(row["columns"]),
                    row["parent"],
                    tuple(row["parent_columns"]),
                    _ON_DELETE[row["on_delete"]],
                )
            )
        return schema
    finally:
        await conn.close()


# the comparison -------------------------------------------------------------------
@pytest.fixture
async def schemas(tmp_path: Path, pg_url: str) -> tuple[Schema, Schema]:
    """(SQLite, PostgreSQL), each freshly migrated."""
    path = tmp_path / "parity.db"
    store = SqliteStore(str(path))
    await store.open()
    try:
        await store.migrate()
    finally:
        await store.close()
    return sqlite_schema(path), await postgres_schema(pg_url)


def _shared_tables(lite: Schema, pg: Schema) -> list[str]:
    return sorted(set(lite.columns) & set(pg.columns))


async def test_the_same_tables(schemas: tuple[Schema, Schema]) -> None:
    lite, pg = schemas
    assert set(lite.columns) - ONLY_SQLITE_TABLES == set(pg.columns) - ONLY_POSTGRES_TABLES
    # an allow-listed table must exist where it is said to, or the list is stale
    assert ONLY_POSTGRES_TABLES <= set(pg.columns) - set(lite.columns)
    assert ONLY_SQLITE_TABLES <= set(lite.columns) - set(pg.columns)


async def test_the_same_columns_per_table(schemas: tuple[Schema, Schema]) -> None:
    lite, pg = schemas
    for table in _shared_tables(lite, pg):
        assert sorted(lite.columns[table]) == sorted(pg.columns[table]), table
        for name, pg_column in pg.columns[table].items():
            lite_column = lite.columns[table][name]
            where = f"{table}.{name}"
            assert lite_column.nullable == pg_column.nullable, where
            assert pg_column.type in SQLITE_DECLARED, f"{where}: {pg_column.type}"
            assert lite_column.type == SQLITE_DECLARED[pg_column.type], where


async def test_the_same_keys(schemas: tuple[Schema, Schema]) -> None:
    lite, pg = schemas
    for table in _shared_tables(lite, pg):
        assert lite.primary_keys.get(table, ()) == pg.primary_keys.get(table, ()), table
        assert lite.uniques[table] == pg.uniques[table], table
        assert lite.foreign_keys[table] == pg.foreign_keys[table], table


async def test_the_same_indexes(schemas: tuple[Schema, Schema]) -> None:
    lite, pg = schemas
    assert set(lite.indexes) - ONLY_SQLITE_INDEXES == set(pg.indexes) - ONLY_POSTGRES_INDEXES
    assert ONLY_POSTGRES_INDEXES <= set(pg.indexes) - set(lite.indexes)
    assert ONLY_SQLITE_INDEXES <= set(lite.indexes) - set(pg.indexes)
    for name in sorted(set(lite.indexes) & set(pg.indexes)):
        assert lite.indexes[name] == pg.indexes[name], name
