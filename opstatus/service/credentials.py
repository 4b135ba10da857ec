"""Credentials: API keys, short-lived bearer tokens, and who a request is.

Generated secrets (``opk_`` keys, ``opt_`` tokens) are random 256-bit strings, so
one SHA-256 is the right hash (as for GitHub or Stripe tokens): with 2**256
candidates a slow hash would add nothing against guessing, and every request
looks one up. A chosen secret (the bootstrap admin key) has no such guarantee, so
it is stored as scrypt (``scrypt:`` and hex; see :func:`slow_hash`). Rows written
before that hold the SHA-256 hex of their secret, chosen or not, and keep working:
a 64-hex-digit hash is SHA-256, one with the ``scrypt:`` prefix is scrypt. Only
hashes are stored, and a stored hash is compared with ``hmac.compare_digest``.
docs/security.md has the reasoning.
"""

from __future__ import annotations

import asyncio
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
from opstatus.service import notifier as notes
from opstatus.service.notifier import Notifier
from opstatus.store.port import Store

BOOTSTRAP_TENANT = "default"
#: what generated secrets start with; a chosen secret may not, so that one presented
#: with these prefixes is never worth a slow hash
GENERATED = ("opk_", "opt_")
#: shortest chosen secret (the bootstrap admin key) accepted: 32 characters of
#: ``secrets.token_urlsafe`` carry 192 bits, out of any guesser's reach
MIN_CHOSEN_SECRET = 32
#: prefix of the stored form of a chosen secret
SLOW_PREFIX = "scrypt:"
#: scrypt cost: 16 MiB and tens of milliseconds per guess, for each guess an attacker
#: holding the database makes. The salt is fixed, not per key: a bearer secret must be
#: found by its hash without a key id, and only a handful of keys (bootstrap admins)
#: have chosen secrets, so a per-key salt would buy little and cost a scan.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_SALT = 2**14, 8, b"opstatus chosen secret v1"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    """Who is asking: the key behind the credential, its tenant, role and targets."""

    key_id: str
    tenant: str
    role: Role
    targets: frozenset[str]
    #: the SHA-256 of the bearer token this principal came from (None: an API key),
    #: kept so open streams can re-check it; never the token itself
    token: str | None = None

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
    """The stored form of a generated secret (and of chosen ones stored before scrypt)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def slow_hash(secret: str) -> str:
    """The stored form of a chosen secret: scrypt, ``scrypt:`` and hex (CPU-bound: call
    it through :func:`asyncio.to_thread`)."""
    digest = hashlib.scrypt(
        secret.encode(), salt=_SCRYPT_SALT, n=_SCRYPT_N, r=_SCRYPT_R, p=1, dklen=32
    )
    return SLOW_PREFIX + digest.hex()


def _check_chosen(secret: str) -> None:
    if len(secret) < MIN_CHOSEN_SECRET:
        raise errors.Invalid(
            f"a chosen secret must be at least {MIN_CHOSEN_SECRET} characters", parameter="secret"
        )
    if secret.startswith(GENERATED):
        raise errors.Invalid(
            "a chosen secret may not start with opk_ or opt_ (generated secrets do)",
            parameter="secret",
        )


def _principal(key: ApiKey, token: str | None = None) -> Principal:
    return Principal(
        key_id=key.id,
        tenant=key.tenant,
        role=key.role,
        targets=frozenset(key.targets),
        token=token,
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
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.token_ttl = token_ttl
        self.cache = KeyCache(cache_size)
        #: wakes this process's open streams of a tenant when one of its keys is revoked
        self.notifier = notifier
        #: SHA-256 -> scrypt of chosen secrets that authenticated: scrypt is a pure
        #: function, so a known secret is not hashed slowly again (bounded, LRU)
        self._slow: OrderedDict[str, str] = OrderedDict()

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
        if secret is not None:
            _check_chosen(secret)
        stored = await asyncio.to_thread(slow_hash, secret) if secret else None
        secret = secret or f"opk_{secrets.token_urlsafe(32)}"
        key = ApiKey(
            id=ids.new_id("key"),
            tenant=tenant,
            name=name,
            role=role,
            targets=list(dict.fromkeys(targets)),
            created_at=self.clock(),
        )
        await self.store.create_key(key, stored or hash_secret(secret))
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
            if self.notifier is not None:
                # Open streams and long-polls re-check their credential now. On
                # PostgreSQL the revoking transaction wakes the other replicas' too.
                self.notifier.wake([notes.keys_key(tenant)])

    async def by_secret(self, secret: str) -> Principal:
        """The principal behind an API key secret or a bearer token.

        The fast hash is tried first (generated keys and rows stored before scrypt),
        then tokens; only a secret that does not look generated is then tried slowly
        hashed, so neither a generated key nor a token (valid, expired or made up)
        ever waits for scrypt.
        """
        digest = hash_secret(secret)
        epoch = self.store.auth_epoch()
        if (cached := self.cache.get(digest, epoch)) is not None:
            return cached
        found = await self.store.key_by_secret_hash(digest)
        if found is None and secret.startswith("opt_"):
            key = await self.store.key_by_token(digest, self.clock())
            if key is not None:
                return _principal(key, token=digest)
        expected = digest
        if found is None and not secret.startswith(GENERATED):
            expected = await self._slow_form(secret, digest)
            found = await self.store.key_by_secret_hash(expected)
        refusal = "the credential is not valid (unknown, expired or revoked)"
        return self._admit(found, expected, digest, (digest, epoch), refusal)

    def known(self, secret: str, epoch: object | None) -> Principal | None:
        """The principal of an API key secret that authenticated under ``epoch`` (the
        store's current ``auth_epoch``), from the cache alone: no read, no wait; None
        when it is not cached (:meth:`by_secret` decides then)."""
        return self.cache.get(hash_secret(secret), epoch)

    async def by_basic(self, key_id: str, secret: str) -> Principal:
        """The principal behind Basic ``key id : secret``."""
        digest = hash_secret(secret)
        handle = f"basic:{key_id}:{digest}"
        epoch = self.store.auth_epoch()
        if (cached := self.cache.get(handle, epoch)) is not None:
            return cached
        found = await self.store.key_by_id(key_id)
        if found is None:
            raise errors.Unauthorized("the key id or secret is not valid")
        expected = digest
        if found[1].startswith(SLOW_PREFIX):
            expected = await self._slow_form(secret, digest)
        return self._admit(
            found, expected, digest, (handle, epoch), "the key id or secret is not valid"
        )

    def _admit(
        self,
        found: tuple[ApiKey, str] | None,
        expected: str,
        digest: str,
        cache_as: tuple[str, object | None],
        refusal: str,
    ) -> Principal:
        """The principal of ``found`` if its stored hash is ``expected`` (compared in
        constant time), remembered in the cache; Unauthorized with ``refusal`` otherwise."""
        if found is None or not hmac.compare_digest(found[1], expected):
            raise errors.Unauthorized(refusal)
        self._remember(digest, expected)
        principal = _principal(found[0])
        self.cache.put(*cache_as, principal)
        return principal

    async def _slow_form(self, secret: str, digest: str) -> str:
        known = self._slow.get(digest)
        if known is not None:
            self._slow.move_to_end(digest)
            return known
        return await asyncio.to_thread(slow_hash, secret)

    def _remember(self, digest: str, stored: str) -> None:
        if stored == digest:
            return  # a fast hash: nothing slow to remember
        self._slow[digest] = stored
        self._slow.move_to_end(digest)
        while len(self._slow) > 1000:
            self._slow.popitem(last=False)

    async def still_valid(self, principal: Principal) -> bool:
        """Whether ``principal``'s credential still authenticates: its key is not
        revoked and, for a token, the token has not expired (one read)."""
        if principal.token is not None:
            return await self.store.key_by_token(principal.token, self.clock()) is not None
        return await self.store.key_by_id(principal.key_id) is not None

    async def by_key_id(self, key_id: str) -> Principal:
        """The principal of an active key, by id alone: for callers whose transport has
        already proven the key (the MQTT broker, which authenticated the connection)."""
        handle, epoch = f"id:{key_id}", self.store.auth_epoch()
        principal = self.cache.get(handle, epoch)
        if principal is None:
            found = await self.store.key_by_id(key_id)
            if found is None:
                raise errors.Unauthorized("the key is not valid (unknown or revoked)")
            principal = _principal(found[0])
            self.cache.put(handle, epoch, principal)
        return principal

    async def issue_token(self, principal: Principal, ttl: float | None = None) -> tuple[str, int]:
        """A bearer token for ``principal``'s key: ``(token, seconds to expiry)``; it
        lives ``ttl`` seconds (default: the configured token lifetime)."""
        seconds = self.token_ttl if ttl is None else ttl
        if principal.token is not None:
            # Only a key mints tokens: a token minting its successor would make the
            # token lifetime no bound on access at all.
            raise errors.Forbidden("a token cannot mint a token; exchange the key")
        token = f"opt_{secrets.token_urlsafe(32)}"
        now = self.clock()
        await self.store.create_token(
            hash_secret(token), principal.key_id, now + timedelta(seconds=seconds), now
        )
        return token, int(seconds)

    async def by_token(self, token: str) -> Principal:
        """The principal behind a live bearer token only (never an API key secret)."""
        key = await self.store.key_by_token(hash_secret(token), self.clock())
        if key is None:
            raise errors.Unauthorized("the access token is not valid (unknown or expired)")
        return _principal(key, token=hash_secret(token))

    # locks held by a token: they end with it (expiry or revocation) --------------------
    async def take_lock(self, tenant: str, name: str, token: str) -> bool:
        """Take the tenant's lock ``name`` for ``token``; False if another token holds it."""
        digest = hash_secret(token)
        return await self.store.take_lock(tenant, name, digest, self.clock()) == digest

    async def lock_state(self, tenant: str, name: str, token: str) -> bool | None:
        """Whether ``token`` holds the lock: True, False (another does), None (nobody)."""
        holder = await self.store.lock_holder(tenant, name, self.clock())
        return None if holder is None else holder == hash_secret(token)

    async def release_lock(self, tenant: str, name: str, token: str) -> bool:
        """Release the lock if ``token`` holds it; whether it did."""
        return await self.store.release_lock(tenant, name, hash_secret(token))

    async def bootstrap(self, secret: str) -> ApiKey | None:
        """On an empty database, make tenant ``default`` and an admin key with ``secret``."""
        _check_chosen(secret)  # before the tenant, so a refusal leaves the database empty
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
