"""In-process dict store: nothing survives the process; handy for quick runs and tests."""

from __future__ import annotations

import threading

from .base import Entry, Storage, StorageStats


class MemoryStorage(Storage):
    """Entries in a dict guarded by a lock; calls never block on I/O."""

    blocking = False

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("memory storage is closed")

    def lookup(self, key: str, now: float) -> Entry | None:
        with self._lock:
            self._check_open()
            entry = self._entries.get(key)
        if entry is None or now >= entry.expires_at:
            return None
        return entry

    def insert(self, key: str, entry: Entry) -> None:
        with self._lock:
            self._check_open()
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._entries[key] = entry
            self._bytes += entry.size

    def evict(self, now: float) -> int:
        with self._lock:
            self._check_open()
            expired = [k for k, e in self._entries.items() if e.expires_at <= now]
            for key in expired:
                self._bytes -= self._entries.pop(key).size
        return len(expired)

    def stats(self) -> StorageStats:
        with self._lock:
            self._check_open()
            return StorageStats(entries=len(self._entries), bytes=self._bytes)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self._closed = True
