"""Schemathesis hooks for ``test_schemathesis.py`` (loaded through ``SCHEMATHESIS_HOOKS``).

Generated requests reuse a handful of short header values ("0", "a", ...). For
``Idempotency-Key`` that turns unrelated bodies into the documented 422 "key used with
a different request", which is the API working, not failing. So every valid key gets a
unique suffix; invalid ones (empty, too long) stay invalid and must still be refused.
"""

from __future__ import annotations

import itertools
from typing import Any

import schemathesis

_serial = itertools.count()
KEY = "Idempotency-Key"
LONGEST = 200


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    """Make a valid Idempotency-Key unique to this request."""
    headers = case.headers
    if not headers or KEY not in headers:
        return
    value = headers[KEY]
    if isinstance(value, str) and 1 <= len(value) <= LONGEST and value.strip():
        suffix = f"~{next(_serial)}"
        headers[KEY] = value[: LONGEST - len(suffix)] + suffix
