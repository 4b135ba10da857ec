"""Opaque, URL-safe, time-sortable identifiers (ULID layout, lower-case Crockford base32)."""

from __future__ import annotations

import os
import re
import time

#: tenant ids: lowercase letters, digits, '-' and '_', 1 to 63 characters
TENANT_SLUG = re.compile(r"[a-z0-9_-]{1,63}")
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
#: every pair of digits, indexed by the 10 bits they encode
_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]
_SHIFTS = range(120, -10, -10)
_RANDOM_BYTES = 10  #: 80 random bits per id


def _encode(value: int) -> str:
    """26 base32 digits of a 128-bit ``value``, most significant first (ULID layout:
    the first digit carries 2 zero bits), two digits per table lookup: an id is made
    per execution, so a fan-out to 100,000 targets makes 100,000 of them."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_ids(prefix: str, count: int) -> list[str]:
    """``count`` ids of one millisecond: ``prefix_`` + 48 bits of milliseconds + 80
    random bits each, 26 characters; one read of the system's randomness for all."""
    millis = (time.time_ns() // 1_000_000) << 80
    noise = os.urandom(_RANDOM_BYTES * count)
    return [
        f"{prefix}_{_encode(millis | int.from_bytes(noise[i : i + _RANDOM_BYTES], 'big'))}"
        for i in range(0, _RANDOM_BYTES * count, _RANDOM_BYTES)
    ]


def new_id(prefix: str) -> str:
    """Return ``prefix_`` + 48 bits of milliseconds + 80 random bits, 26 characters."""
    return new_ids(prefix, 1)[0]


def operation_id() -> str:
    """A new operation id."""
    return new_id("op")


def execution_id() -> str:
    """A new execution id."""
    return new_id("ex")
