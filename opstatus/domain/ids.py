"""Opaque, URL-safe, time-sortable identifiers (ULID layout, lower-case Crockford base32)."""

from __future__ import annotations

import re
import secrets
import time

#: tenant ids: lowercase letters, digits, '-' and '_', 1 to 63 characters
TENANT_SLUG = re.compile(r"[a-z0-9_-]{1,63}")
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """Return ``prefix_`` + 48 bits of milliseconds + 80 random bits, 26 characters."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{_encode(millis, 10)}{_encode(secrets.randbits(80), 16)}"


def operation_id() -> str:
    """A new operation id."""
    return new_id("op")


def execution_id() -> str:
    """A new execution id."""
    return new_id("ex")
