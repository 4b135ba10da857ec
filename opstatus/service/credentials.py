"""Credentials: API keys, short-lived bearer tokens, and who a request is.

Secrets are random 256-bit strings, so one SHA-256 is the right hash (as for
GitHub or Stripe tokens): a slow password hash would add nothing against
guessing and would cost every request. Only hashes are stored; the stored hash
is compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from datetime import timedelta

from opstatus.domain import errors, ids
from opstatus.domain.clock import Clock, utcnow
from opstatus.domain.records import ApiKey, Tenant
from opstatus.domain.roles import Action, Role, may
from opstatus.store.port import Store

BOOTSTRAP_TENANT = "default"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    """Who is asking: the key behind the credential, its tenant, role and targets."""

    key_id: str
    tenant: str
    role: Role
    targets: frozenset[str]

    def require(self, action: Action, target: str | None = None) -> None:
        """Raise Forbidden unless this principal may take ``action`` (on ``target``)."""
        if not may(self.role, action):
            raise errors.Forbidden(f"role {self.role} may not {action}")
        if target is not None and self.role is Role.AGENT and target not in self.targets:
            raise errors.Forbidden(f"this agent key does not reach target {target!r}")

    def reaches(self, target: str) -> bool:
        """Whether an agent key is bound to ``target`` (other roles reach every target)."""
        return self.role is not Role.AGENT or target in self.targets


def hash_secret(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _principal(key: ApiKey) -> Principal:
    return Principal(
        key_id=key.id, tenant=key.tenant, role=key.role, targets=frozenset(key.targets)
    )


class KeyCache:
    """Principals of recently used API keys, valid while the store's auth epoch holds.

    Every request authenticates; without a cache that is a database read before
    the real work. An entry remembers the epoch (``Store.auth_epoch``) read
    *before* its lookup, and is used only while the store still answers that
    epoch, so a revoke committed anywhere invalidates it before the next request.
    Only successful API key lookups are cached (never a refusal, never a token,
    whose expiry the key row does not carry); the least recently used entry goes
    past ``size``.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[object, Principal]] = OrderedDict()

    def get(self, handle: str, epoch: object | None) -> Principal | None:
        """The cached principal for ``handle`` if it was cached under ``epoch``."""
        if epoch is None:
            return None
        entry = self._entries.get(handle)
        if entry is None or entry[0] != epoch:
            return None
        self._entries.move_to_end(handle)
        return entry[1]

    def put(self, handle: str, epoch: object | None, principal: Principal) -> None:
        """Remember ``principal`` under ``epoch`` (nothing when there is no epoch)."""
        if epoch is None or self.size <= 0:
            return
        self._entries[handle] = (epoch, principal)
        self._entries.move_to_end(handle)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class Credentials:
    """Key and token use cases over the Store."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = utcnow,
        token_ttl: float = 900.0,
        cache_size: int = 10_000,
    ) -> None:
        self.store = store
        self.clock = clock
        self.token_ttl = token_ttl
        self.cache = KeyCache(cache_size)

    async def create_key(
        self,
        tenant: str,
        role: Role,
        *,
        name: str = "",
        targets: Sequence[str] = (),
        secret: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Make a key; the secret is returned here once and never again."""
        if role is Role.AGENT and not targets:
            raise errors.Invalid("an agent key needs at least one target", parameter="targets")
        if role is not Role.AGENT and targets:
            raise errors.Invalid("only agent keys are bound to targets", parameter="targets")
        for target in targets:
            if not target or len(target) > 200:
                raise errors.Invalid("target ids must be 1 to 200 characters", parameter="targets")
        if len(name) > 200:
            raise errors.Invalid("name must be at most 200 characters", parameter="name")
        secret = secret or f"opk_{secrets.token_urlsafe(32)}"
        key = ApiKey(
            id=ids.new_id("key"),
            tenant=tenant,
            name=name,
            role=role,
            targets=list(dict.fromkeys(targets)),
            created_at=self.clock(),
        )
        await self.store.create_key(key, hash_secret(secret))
        return key, secret

    async def list_keys(self, tenant: str) -> list[ApiKey]:
        """Every key of the tenant (never a secret)."""
        return await self.store.list_keys(tenant)

    async def revoke_key(self, tenant: str, key_id: str) -> ApiKey:
        """Revoke a key and every token it issued, at once."""
        try:
            return await self.store.revoke_key(tenant, key_id, self.clock())
        finally:
            self.cache.clear()

    async def by_secret(self, secret: str) -> Principal:
        """The principal behind an API key secret or a bearer token."""
        digest = hash_secret(secret)
        epoch = self.store.auth_epoch()
        if (cached := self.cache.get(digest, epoch)) is not None:
            return cached
        found = await self.store.key_by_secret_hash(digest)
        if found is not None and hmac.compare_digest(found[1], digest):
            principal = _principal(found[0])
            self.cache.put(digest, epoch, principal)
            return principal
        if secret.startswith("opt_"):
            key = await self.store.key_by_token(digest, self.clock())
            if key is not None:
                return _principal(key)
        raise errors.Unauthorized("the credential is not valid (unknown, expired or revoked)")

    async def by_basic(self, key_id: str, secret: str) -> Principal:
        """The principal behind Basic ``key id : secret``."""
        digest = hash_secret(secret)
        handle = f"basic:{key_id}:{digest}"
        epoch = self.store.auth_epoch()
        if (cached := self.cache.get(handle, epoch)) is not None:
            return cached
        found = await self.store.key_by_id(key_id)
        if found is None or not hmac.compare_digest(found[1], digest):
            raise errors.Unauthorized("the key id or secret is not valid")
        principal = _principal(found[0])
        self.cache.put(handle, epoch, principal)
        return principal

    async def by_key_id(self, key_id: str) -> Principal:
        """The principal of an active key, by id alone: for callers whose transport has
        already proven the key (the MQTT broker, which authenticated the connection)."""
        handle = f"id:{key_id}"
        epoch = self.store.auth_epoch()
        if (cached := self.cache.get(handle, epoch)) is not None:
            return cached
        found = await self.store.key_by_id(key_id)
        if found is None:
            raise errors.Unauthorized("the key is not valid (unknown or revoked)")
        principal = _principal(found[0])
        self.cache.put(handle, epoch, principal)
        return principal

    async def issue_token(self, principal: Principal) -> tuple[str, int]:
        """A bearer token for ``principal``'s key: ``(token, seconds to expiry)``."""
        token = f"opt_{secrets.token_urlsafe(32)}"
        now = self.clock()
        await self.store.create_token(
            hash_secret(token), principal.key_id, now + timedelta(seconds=self.token_ttl), now
        )
        return token, int(self.token_ttl)

    async def bootstrap(self, secret: str) -> ApiKey | None:
        """On an empty database, make tenant ``default`` and an admin key with ``secret``."""
        if await self.store.any_tenant():
            return None
        try:
            await self.store.create_tenant(
                Tenant(id=BOOTSTRAP_TENANT, name=BOOTSTRAP_TENANT, created_at=self.clock())
            )
        except errors.Conflict:
            return None  # another replica bootstrapped first
        key, _ = await self.create_key(
            BOOTSTRAP_TENANT, Role.ADMIN, name="bootstrap admin", secret=secret
        )
        return key
