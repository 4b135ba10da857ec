"""The request journal: each tenant's recent requests, newest first, bounded in memory."""

from __future__ import annotations

import collections
import fnmatch
from datetime import datetime

import msgspec

#: requests kept per tenant; older ones fall off
MAX_ENTRIES = 1000


class Entry(msgspec.Struct, frozen=True):
    """One request as ``GET /v1/testing/requests`` lists it."""

    at: datetime  #: on the service's clock, as every timestamp the API shows
    method: str
    path: str
    dialect: str  #: the vendor dialect whose prefix the path is under, or canonical
    status: int  #: 0 for a dropped connection
    duration_ms: float
    injected: str | None = None  #: the fault rule's id when the answer was injected


class Journal:
    """A ring of :data:`MAX_ENTRIES` entries per tenant."""

    def __init__(self, size: int = MAX_ENTRIES) -> None:
        self.size = size
        self._entries: dict[str, collections.deque[Entry]] = {}

    def record(self, tenant: str, entry: Entry) -> None:
        """Keep ``entry``, dropping the tenant's oldest when the ring is full."""
        ring = self._entries.get(tenant)
        if ring is None:
            ring = self._entries[tenant] = collections.deque(maxlen=self.size)
        ring.append(entry)

    def find(
        self, tenant: str, *, path: str | None = None, method: str | None = None, limit: int = 100
    ) -> list[Entry]:
        """Newest first; ``path`` is a glob (a plain path matches itself)."""
        out: list[Entry] = []
        for entry in reversed(self._entries.get(tenant, ())):
            if method is not None and entry.method != method.upper():
                continue
            if path is not None and not fnmatch.fnmatchcase(entry.path, path):
                continue
            out.append(entry)
            if len(out) >= limit:
                break
        return out

    def clear(self, tenant: str) -> None:
        """Forget the tenant's requests."""
        self._entries.pop(tenant, None)
