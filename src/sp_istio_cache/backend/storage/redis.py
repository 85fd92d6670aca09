"""Redis / Valkey store: one server shared by every backend replica (Redis >= 7.0, Valkey >= 7.2).

Through ``redis.asyncio`` (the ``redis`` package, which speaks to Valkey too). Each call is one
round trip and one atomic step: a Lua script (:mod:`.redis_lua`) run with EVALSHA.

- **Variants** of a key live in one hash (field = variant); a lookup is one HVALS.
- **Freshness**: each value starts with its expiry; the hash gets PEXPIREAT at the latest expiry
  of its variants (``NX`` then ``GT``), so Redis itself drops what no variant needs any more.
- **Capacity** is the backend's own accounting, not ``maxmemory``: totals of entries and span
  bytes and a recency sorted set are updated in the same script as the data, and a store evicts
  least recently used keys until ``max_entries``/``max_bytes`` hold. The limits are therefore
  exact, identical on every storage, and tested by the shared conformance suite; Redis's own
  eviction is approximate (sampled LRU) and counts its per-key overhead, so it cannot promise
  either. Those bookkeeping keys carry no TTL and must never be evicted by Redis: ``open``
  refuses a server whose ``maxmemory-policy`` is an ``allkeys-*`` one, and a ``maxmemory`` below
  ``max_bytes``. Recommended server settings: ``maxmemory`` >= 1.5 x ``max_bytes`` (Redis's
  overhead), ``maxmemory-policy volatile-lru`` as a backstop (it only evicts entry hashes).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis import asyncio as aioredis
from redis import exceptions as redis_errors

from . import redis_lua
from .base import Storage, StorageStats, StorageUnavailable

log = logging.getLogger("sp_istio_cache.backend.redis")

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "sp-cache:"
MIN_SERVER_VERSION = (7, 0)
_EXPIRY_BYTES = 8


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


def _text(value: str | bytes | None) -> str:
    """A CONFIG GET name or value as text (bytes unless the client decodes responses)."""
    if isinstance(value, bytes):
        return value.decode()
    return value or ""


class RedisStorage(Storage):
    """Entries in a Redis or Valkey server at ``url`` under key ``prefix`` (module docstring).

    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://`` for TLS, ``unix://path``.
        prefix: start of every key name, so several caches can share one server.
        socket_timeout_s: most seconds a call waits for the server (then StorageUnavailable).
        sweep_batch: keys examined per script call when sweeping expired entries.
        max_bytes, max_entries, max_variants: see :class:`Storage`.
    """

    def __init__(self, url: str = DEFAULT_URL, *, prefix: str = DEFAULT_PREFIX, socket_timeout_s: float = 2.0,
                 sweep_batch: int = 200, **limits: int) -> None:
        super().__init__(**limits)
        self.url = url
        self.prefix = prefix
        self.sweep_batch = sweep_batch
        self._client = aioredis.from_url(url, socket_timeout=socket_timeout_s,
                                         socket_connect_timeout=socket_timeout_s, decode_responses=False)
        self._meta = [prefix + name for name in ("lru", "sizes", "counts", "totals")]
        self._insert = self._client.register_script(redis_lua.INSERT)
        self._lookup = self._client.register_script(redis_lua.LOOKUP)
        self._invalidate = self._client.register_script(redis_lua.INVALIDATE)
        self._sweep = self._client.register_script(redis_lua.SWEEP)
        self._closed = False

    def _entry_key(self, key: str) -> str:
        return f"{self.prefix}e:{key}"

    async def _call(self, what: str, coro: Any) -> Any:
        if self._closed:
            coro.close()
            raise RuntimeError("redis storage is closed")
        try:
            return await coro
        except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
            raise StorageUnavailable(f"redis {what} at {self.url}: {exc}") from exc
        except redis_errors.ResponseError as exc:
            raise StorageUnavailable(f"redis {what} refused: {exc}") from exc

    async def open(self) -> None:
        """Check the server: reachable, version >= 7.0, memory settings that keep the bookkeeping.

        Raises:
            StorageUnavailable: unreachable, too old, an ``allkeys-*`` eviction policy, or a
                ``maxmemory`` below ``max_bytes``.
        """
        info = await self._call("INFO", self._client.info("server"))
        version = str(info.get("redis_version", "0"))  # Valkey reports its Redis compatibility here
        if _version(version) < MIN_SERVER_VERSION:
            raise StorageUnavailable(f"redis at {self.url} is version {version}; the storage needs >= 7.0 "
                                     "(PEXPIREAT NX/GT)")
        try:
            raw = await self._client.config_get("maxmemory*")
        except redis_errors.RedisError as exc:  # CONFIG disabled or not allowed (managed servers)
            log.warning("cannot read the server's memory settings (%s); make sure maxmemory >= %d bytes "
                        "and maxmemory-policy is volatile-lru or noeviction", exc, self.max_bytes)
            return
        config = {_text(k): _text(v) for k, v in raw.items()}
        policy = config.get("maxmemory-policy", "")
        maxmemory = int(config.get("maxmemory") or "0")
        if policy.startswith("allkeys-"):
            raise StorageUnavailable(
                f"redis at {self.url} has maxmemory-policy {policy}, which may evict the storage's bookkeeping "
                f"keys ({self.prefix}lru, {self.prefix}totals, ...); set volatile-lru or noeviction: the "
                "backend bounds the cache itself with --max-bytes/--max-entries")
        if maxmemory and maxmemory < self.max_bytes:
            raise StorageUnavailable(
                f"redis at {self.url} has maxmemory {maxmemory} bytes, below --max-bytes {self.max_bytes}; "
                "raise maxmemory (about 1.5 x max-bytes) or lower --max-bytes")
        log.info("redis storage at %s (server %s %s, maxmemory %d, policy %s, prefix %r)",
                 self.url, "valkey" if "valkey_version" in info else "redis", info.get("valkey_version", version),
                 maxmemory, policy, self.prefix)

    async def lookup(self, key: str, now: float) -> list[bytes]:
        values = await self._call("lookup", self._lookup(keys=[self._entry_key(key), self._meta[0]],
                                                         args=[key, repr(now)]))
        now_ms = now * 1000
        return [v[_EXPIRY_BYTES:] for v in values if int.from_bytes(v[:_EXPIRY_BYTES], "big") > now_ms]

    async def insert(self, key: str, variant: str, span: bytes, expires_at: float, now: float) -> int:
        self.check_size(span)
        expires_ms = int(expires_at * 1000)
        if expires_ms <= now * 1000:
            return 0  # already expired: Redis would drop it at once
        value = expires_ms.to_bytes(_EXPIRY_BYTES, "big") + span
        evicted, _ = await self._call("insert", self._insert(
            keys=[*self._meta, self._entry_key(key)],
            args=[key, variant, value, expires_ms, repr(now), self.max_bytes, self.max_entries, self.prefix,
                  self.max_variants]))
        return int(evicted)

    async def invalidate(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        deleted = await self._call("invalidate", self._invalidate(keys=self._meta, args=[self.prefix, *set(keys)]))
        return int(deleted)

    async def evict(self, now: float) -> int:
        removed, cursor = 0, 0
        while True:
            cursor, members = await self._call("sweep", self._client.zscan(self._meta[0], cursor,
                                                                           count=self.sweep_batch))
            if members:
                keys = [member.decode() for member, _ in members]
                removed += int(await self._call("sweep", self._sweep(
                    keys=self._meta, args=[self.prefix, int(now * 1000), *keys])))
            if cursor == 0:
                return removed

    async def stats(self) -> StorageStats:
        totals = await self._call("stats", self._client.hgetall(self._meta[3]))
        get = lambda name: int(totals.get(name.encode(), 0))  # noqa: E731
        return StorageStats(get("entries"), get("bytes"), self.max_entries, self.max_bytes,
                            get("evicted"), get("expired"))

    async def ping(self) -> None:
        await self._call("PING", self._client.ping())

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.aclose()
