"""Database URLs (`--database`, `OPSTATUS_DATABASE_URL`: see README.md) to Store adapters."""

from __future__ import annotations

from dataclasses import dataclass

from opstatus.store.port import Store

DEFAULT_URL = "sqlite:///opstatus.db"


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A parsed database URL."""

    kind: str  #: ``sqlite`` or ``postgres``
    target: str  #: file path or DSN


def parse_url(url: str) -> DatabaseUrl:
    """``sqlite:///rel.db``, ``sqlite:////abs.db``, ``postgresql://…`` (or a bare path)."""
    if url.startswith(("postgresql://", "postgres://")):
        return DatabaseUrl("postgres", url)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path:
            raise ValueError(f"no file in database URL {url!r}")
        return DatabaseUrl("sqlite", path)
    if "://" in url:
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")
    return DatabaseUrl("sqlite", url)


def open_store(
    url: str,
    *,
    sqlite_synchronous: str = "FULL",
    pool_size: int = 10,
    pool_timeout: float = 5.0,
    list_timeout: float | None = None,
) -> Store:
    """Build (not yet open) the adapter ``url`` names.

    ``pool_timeout``: seconds to wait for a free PostgreSQL connection (then
    Unavailable); ``list_timeout``: seconds a list query may run (then QueryTimeout).
    """
    parsed = parse_url(url)
    if parsed.kind == "postgres":
        from opstatus.store.postgres import PostgresStore

        return PostgresStore(
            parsed.target,
            max_size=pool_size,
            acquire_timeout=pool_timeout,
            list_timeout=list_timeout,
        )
    from opstatus.store.sqlite import SqliteStore

    return SqliteStore(parsed.target, synchronous=sqlite_synchronous, list_timeout=list_timeout)
