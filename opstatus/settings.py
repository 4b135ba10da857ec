"""Process settings, read once from the environment by whoever composes the app."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from opstatus.service.credentials import GENERATED, MIN_CHOSEN_SECRET

DEFAULT_DATABASE_URL = "sqlite:///opstatus.db"
SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


class SettingsError(ValueError):
    """An environment variable holds a value opstatus cannot use."""


class WeakSecret(SettingsError):
    """The bootstrap admin secret is too short to be out of guessing's reach."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """What the app factory needs to build the store and the service."""

    #: ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``postgresql://…``
    database_url: str = DEFAULT_DATABASE_URL
    #: SQLite ``PRAGMA synchronous``; FULL makes every acknowledged write durable
    sqlite_synchronous: str = "FULL"
    #: most PostgreSQL connections one process holds
    pool_size: int = 10
    #: seconds a request waits for a free PostgreSQL connection before it answers 503
    pool_timeout: float = 5.0
    #: seconds a list query may run before it answers 504 (``None``: no budget)
    list_timeout: float | None = 10.0
    #: long-polls and event streams one process holds at once (503 beyond)
    max_waits: int = 20_000
    #: targets one operation may name (more: 400)
    max_targets: int = 100_000
    #: requests per credential, ``limits`` notation (``"100/second"``); ``None``: unlimited
    rate_limit: str | None = "100/second"
    #: largest request body in bytes (413 beyond)
    max_body: int = 1 << 20
    #: operations whose encoded status body one process keeps for the fast read path; 0: off
    read_cache_size: int = 10_000
    #: failed authentications per client address before 429 (``limits`` notation); None: off
    auth_failure_limit: str | None = "20/minute"
    #: seconds between SSE keep-alives and credential re-checks of open streams and long-polls
    keepalive: float = 15.0
    #: lifetime of bearer tokens from ``POST /v1/auth/token``, seconds
    token_ttl: float = 900.0
    #: on an empty database: tenant ``default`` with an admin key of this secret
    bootstrap_admin_key: str | None = None
    #: finished operations older than this are purged, leaving tombstones (410)
    retention_seconds: float = 30 * 86400.0
    #: let webhooks reach loopback, private and other non-public addresses
    webhook_allow_private: bool = False
    #: attempts at one event before its delivery is dead-lettered
    webhook_max_attempts: int = 12
    #: ``mqtt://[user[:password]@]host[:port]`` of a broker: run the MQTT bridge there
    mqtt_url: str | None = None
    #: creates register the targets they name that are not registered yet, for every
    #: caller that may trigger (otherwise only a request's ``"register_targets": true``)
    register_targets: bool = False
    #: seconds an agent may stay silent on started work, for creates that name none
    heartbeat_timeout: float = 600.0
    #: run the bridge even on a broker that admits anonymous clients (never in production)
    mqtt_allow_anonymous: bool = False
    #: the stand-in mode for client developers: /v1/testing/* (faults, scenarios, clock,
    #: reset, journal); never in production (docs/testing.md)
    testing: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the ``OPSTATUS_*`` variables (README lists them).

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
            pool_timeout=_positive_number(env, "OPSTATUS_POOL_TIMEOUT", 5.0),
            list_timeout=_positive_number(env, "OPSTATUS_LIST_TIMEOUT", 10.0),
            max_waits=_positive_int(env, "OPSTATUS_MAX_WAITS", 20_000),
            max_targets=_positive_int(env, "OPSTATUS_MAX_TARGETS", 100_000),
            rate_limit=_limit(env, "OPSTATUS_RATE_LIMIT", "100/second"),
            auth_failure_limit=_limit(env, "OPSTATUS_AUTH_FAILURE_LIMIT", "20/minute"),
            keepalive=float(_positive_int(env, "OPSTATUS_KEEPALIVE_SECONDS", 15)),
            max_body=_positive_int(env, "OPSTATUS_MAX_BODY_BYTES", 1 << 20),
            read_cache_size=_count(env, "OPSTATUS_READ_CACHE_SIZE", 10_000),
            token_ttl=float(_positive_int(env, "OPSTATUS_TOKEN_TTL", 900)),
            bootstrap_admin_key=_bootstrap(env),
            retention_seconds=float(_positive_int(env, "OPSTATUS_RETENTION_SECONDS", 30 * 86400)),
            webhook_allow_private=_flag(env, "OPSTATUS_WEBHOOK_ALLOW_PRIVATE"),
            webhook_max_attempts=_positive_int(env, "OPSTATUS_WEBHOOK_MAX_ATTEMPTS", 12),
            mqtt_url=_mqtt_url(env),
            register_targets=_flag(env, "OPSTATUS_REGISTER_TARGETS"),
            heartbeat_timeout=float(_positive_int(env, "OPSTATUS_HEARTBEAT_TIMEOUT", 600)),
            mqtt_allow_anonymous=_flag(env, "OPSTATUS_MQTT_ALLOW_ANONYMOUS"),
            testing=_flag(env, "OPSTATUS_TESTING"),
        )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Connections:
    """How ``opstatus serve`` guards its connections (read by the serve command)."""

    #: seconds from a connection's first byte (or its opening) to a complete request head
    head_timeout: float = 10.0
    #: seconds from a complete head to a complete body
    body_timeout: float = 30.0
    #: seconds an idle kept-alive connection stays open
    keepalive_timeout: int = 5
    #: open connections per process beyond which requests answer 503; ``None``: derived
    #: from the descriptor limit when the server starts
    max_connections: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Connections:
        """Read ``OPSTATUS_HEAD_TIMEOUT``, ``OPSTATUS_BODY_TIMEOUT``,
        ``OPSTATUS_KEEPALIVE_TIMEOUT`` and ``OPSTATUS_MAX_CONNECTIONS``."""
        env = os.environ if environ is None else environ
        raw_max = env.get("OPSTATUS_MAX_CONNECTIONS", "").strip()
        return cls(
            head_timeout=float(_positive_int(env, "OPSTATUS_HEAD_TIMEOUT", 10)),
            body_timeout=float(_positive_int(env, "OPSTATUS_BODY_TIMEOUT", 30)),
            keepalive_timeout=_positive_int(env, "OPSTATUS_KEEPALIVE_TIMEOUT", 5),
            max_connections=_positive_int(env, "OPSTATUS_MAX_CONNECTIONS", 1) if raw_max else None,
        )


GENERATE_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _bootstrap(env: Mapping[str, str]) -> str | None:
    secret = env.get("OPSTATUS_BOOTSTRAP_ADMIN_KEY") or None
    if secret is not None and secret.startswith(GENERATED):
        raise WeakSecret(
            "OPSTATUS_BOOTSTRAP_ADMIN_KEY may not start with opk_ or opt_ (generated keys "
            f"and tokens do); generate one with: {GENERATE_SECRET}"
        )
    if secret is not None and len(secret) < MIN_CHOSEN_SECRET:
        # the message names the length, never the secret
        raise WeakSecret(
            f"OPSTATUS_BOOTSTRAP_ADMIN_KEY must be at least {MIN_CHOSEN_SECRET} characters "
            f"(it has {len(secret)}); generate one with: {GENERATE_SECRET}"
        )
    return secret


def _limit(env: Mapping[str, str], name: str, default: str) -> str | None:
    """A ``limits`` rate such as ``100/second``; ``off`` (or empty, none, 0): None."""
    raw = env.get(name, default).strip()
    if raw in ("", "off", "none", "0"):
        return None
    from limits import parse

    try:
        parse(raw)
    except ValueError:
        raise SettingsError(f"{name} must look like {default} or off, not {raw!r}") from None
    return raw


def _mqtt_url(env: Mapping[str, str]) -> str | None:
    url = env.get("OPSTATUS_MQTT_URL", "").strip()
    if not url:
        return None
    if not url.startswith(("mqtt://", "mqtts://")):
        raise SettingsError(f"OPSTATUS_MQTT_URL must look like mqtt://host:1883, not {url!r}")
    return url


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name} must be 1 or 0, not {raw!r}")


def _positive_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name} must be a positive number of seconds, not {raw!r}")
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise SettingsError(f"{name} must be an integer >= 0, not {raw!r}")
    return int(raw)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise SettingsError(f"{name} must be a positive integer, not {raw!r}")
    return int(raw)
