"""Checking a webhook delivery's ``Opstatus-Signature`` on the receiving side.

The server signs ``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
(docs/architecture.md#webhooks); this is the same computation, so a receiver needs
nothing of the server's.
"""

from __future__ import annotations

import hashlib
import hmac
import time

#: seconds a signature stays acceptable: older ones may be replayed captures
TOLERANCE = 300.0


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: float = TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (``Opstatus-Signature``) signs ``body`` with ``secret``.

    ``body`` must be the raw bytes as received (a re-encoded parse differs). The
    timestamp must lie within ``tolerance`` seconds of ``now`` (default: the clock),
    so a captured delivery cannot be replayed later. Comparison is constant-time.
    """
    fields = dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))
