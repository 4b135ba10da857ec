"""Process settings, read once from the environment by whoever composes the app."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

DEFAULT_DATABASE_URL = "sqlite:///opstatus.db"
SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


class SettingsError(ValueError):
    """An environment variable holds a value opstatus cannot use."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """What the app factory needs to build the store and the service."""

    #: ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``postgresql://…``
    database_url: str = DEFAULT_DATABASE_URL
    #: SQLite ``PRAGMA synchronous``; FULL makes every acknowledged write durable
    sqlite_synchronous: str = "FULL"
    #: most PostgreSQL connections one process holds
    pool_size: int = 10

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``OPSTATUS_DATABASE_URL``, ``OPSTATUS_SQLITE_SYNCHRONOUS``, ``OPSTATUS_POOL_SIZE``.

        Raises SettingsError naming the variable when a value is not usable.
        """
        env = os.environ if environ is None else environ
        synchronous = env.get("OPSTATUS_SQLITE_SYNCHRONOUS", "FULL").strip().upper()
        if synchronous not in SQLITE_SYNCHRONOUS:
            raise SettingsError(
                f"OPSTATUS_SQLITE_SYNCHRONOUS must be one of {', '.join(SQLITE_SYNCHRONOUS)}, "
                f"not {env['OPSTATUS_SQLITE_SYNCHRONOUS']!r}"
            )
        raw_pool = env.get("OPSTATUS_POOL_SIZE", "10").strip()
        try:
            pool_size = int(raw_pool)
        except ValueError:
            pool_size = 0
        # The PostgreSQL pool keeps two connections warm, so fewer cannot work.
        if pool_size < 2:
            raise SettingsError(f"OPSTATUS_POOL_SIZE must be an integer >= 2, not {raw_pool!r}")
        return cls(
            database_url=env.get("OPSTATUS_DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL,
            sqlite_synchronous=synchronous,
            pool_size=pool_size,
        )
