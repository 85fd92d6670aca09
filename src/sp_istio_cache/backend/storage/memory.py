"""In-process store: nothing survives the process, nothing is shared with another process.

Handy for quick runs and tests. Keys sit in an ``OrderedDict`` in recency order, so LRU eviction
is exact and O(1) per evicted key. Every call runs inline on the event loop (no I/O).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from .base import Storage, StorageStats


class MemoryStorage(Storage):
    """Entries in a dict of dicts (key -> variant -> (span, expires_at)); see :class:`Storage`."""

    shared = False

    def __init__(self, **limits: int) -> None:
        super().__init__(**limits)
        self._keys: OrderedDict[str, dict[str, tuple[bytes, float]]] = OrderedDict()
        self._entries = 0
        self._bytes = 0
        self._evicted = 0
        self._expired = 0
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("memory storage is closed")

    def _drop(self, key: str) -> int:
        variants = self._keys.pop(key)
        self._entries -= len(variants)
        self._bytes -= sum(len(span) for span, _ in variants.values())
        return len(variants)

    async def lookup(self, key: str, now: float) -> list[bytes]:
        self._check_open()
        variants = self._keys.get(key)
        if variants is None:
            return []
        self._keys.move_to_end(key)
        return [span for span, expires_at in variants.values() if now < expires_at]

    async def insert(self, key: str, variant: str, span: bytes, expires_at: float, now: float) -> int:
        self._check_open()
        self.check_size(span)
        variants = self._keys.setdefault(key, {})
        old = variants.get(variant)
        if old is None:
            self._entries += 1
        else:
            self._bytes -= len(old[0])
        variants[variant] = (bytes(span), expires_at)
        self._bytes += len(span)
        self._keys.move_to_end(key)
        evicted = 0
        others = sorted((v for v in variants if v != variant), key=lambda v: (-variants[v][1], v))
        for victim in others[self.max_variants - 1:]:  # keep those that expire last
            self._bytes -= len(variants.pop(victim)[0])
            self._entries -= 1
            evicted += 1
        while self._entries > self.max_entries or self._bytes > self.max_bytes:
            evicted += self._drop(next(iter(self._keys)))
        self._evicted += evicted
        return evicted

    async def invalidate(self, keys: Sequence[str]) -> int:
        self._check_open()
        return sum(self._drop(key) for key in set(keys) if key in self._keys)

    async def evict(self, now: float) -> int:
        self._check_open()
        removed = 0
        for key in list(self._keys):
            variants = self._keys[key]
            expired = [v for v, (_, expires_at) in variants.items() if expires_at <= now]
            for variant in expired:
                self._bytes -= len(variants.pop(variant)[0])
            removed += len(expired)
            if not variants:
                del self._keys[key]
        self._entries -= removed
        self._expired += removed
        return removed

    async def stats(self) -> StorageStats:
        self._check_open()
        return StorageStats(self._entries, self._bytes, self.max_entries, self.max_bytes,
                            self._evicted, self._expired)

    async def close(self) -> None:
        self._keys.clear()
        self._entries = self._bytes = 0
        self._closed = True
