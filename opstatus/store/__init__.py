"""Storage: the Store port and its adapters (SQLite embedded, PostgreSQL scale-out)."""

from __future__ import annotations

from opstatus.store.port import Store
from opstatus.store.urls import open_store, parse_url

__all__ = ["Store", "open_store", "parse_url"]
