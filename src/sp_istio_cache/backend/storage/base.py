"""The storage interface every cache backend store implements.

The backend is a keyed store (STYLE.md §7): HTTP semantics stay in the filter. An **entry** is one
stored span (the exact bytes the filter sent) under a primary key (64 hex) and a variant (64 hex
or ""); a key holds one entry per variant. Every implementation passes
``tests/backend/test_storage_conformance.py``:

- ``lookup`` returns the span bytes of every variant of a key that is fresh at ``now``
  (``now < expires_at``), in no promised order, and makes the key most recently used;
- ``insert`` replaces the entry with the same (key, variant), makes the key most recently used,
  drops the key's other variants that expire first while it holds more than ``max_variants``
  (every variant comes back on each lookup, so the cap bounds a lookup's answer: clients that
  send a new value of a ``Vary``-nominated header on every request cannot grow it), then evicts
  whole keys, least recently used first, until the store holds at most ``max_entries`` entries and
  ``max_bytes`` bytes (the sum of the stored spans' lengths);
- ``invalidate`` deletes every variant of each key; ``evict`` removes what expired.

All calls are coroutines: each implementation keeps the event loop free in its own way (a worker
thread for SQLite writes, a network client for Redis). Times are seconds since the epoch.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

#: default capacity of every storage: 512 MiB of spans, one million entries
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_ENTRIES = 1_000_000
#: variants kept per key by default: the plugin config's ``max_variants`` default
#: (filter/config.schema.json); at most :data:`MAX_VARIANTS`, what one lookup answer may hold
DEFAULT_MAX_VARIANTS = 8
MAX_VARIANTS = 64


class EntryTooLarge(ValueError):
    """A span longer than the storage's whole byte limit: it can never be stored."""


class StorageUnavailable(RuntimeError):
    """The storage cannot serve the call (server unreachable, misconfigured); the message says why."""


@dataclass(frozen=True)
class StorageStats:
    """What a store holds and has dropped.

    Attributes:
        entries: stored entries (expired ones included until ``evict`` removes them).
        bytes: total length of their spans, bytes.
        max_entries, max_bytes: the limits.
        evicted: entries removed to stay within the limits (since the store was created; shared
            by every process on the same SQLite file or Redis prefix).
        expired: entries removed by ``evict`` because they expired (same scope).
    """

    entries: int
    bytes: int
    max_entries: int
    max_bytes: int
    evicted: int
    expired: int


class Storage(abc.ABC):
    """A keyed store of span bytes with byte and entry limits and LRU eviction (module docstring).

    Args:
        max_bytes: most bytes of spans held at once (>= 1).
        max_entries: most entries held at once (>= 1).
        max_variants: most variants held per key (1..64; the filter's ``max_variants``).

    Raises:
        ValueError: a limit below 1, or ``max_variants`` above 64.
    """

    #: whether several processes may share this storage (SQLite file, Redis: yes; memory: no)
    shared: bool = True

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES,
                 max_variants: int = DEFAULT_MAX_VARIANTS) -> None:
        if max_bytes < 1 or max_entries < 1:
            raise ValueError(f"storage limits must be >= 1, got max_bytes={max_bytes} max_entries={max_entries}")
        if not 1 <= max_variants <= MAX_VARIANTS:
            raise ValueError(f"max_variants must be 1..{MAX_VARIANTS}, got {max_variants}")
        self.max_bytes = int(max_bytes)
        self.max_entries = int(max_entries)
        self.max_variants = int(max_variants)

    def check_size(self, span: bytes) -> None:
        """Raise :class:`EntryTooLarge` when ``span`` alone exceeds ``max_bytes``."""
        if len(span) > self.max_bytes:
            raise EntryTooLarge(f"entry of {len(span)} bytes exceeds the storage byte limit of {self.max_bytes}")

    async def open(self) -> None:  # noqa: B027 - optional hook: a storage with nothing to connect keeps this no-op
        """Connect and check the server or file; called once before the first request.

        Raises:
            StorageUnavailable: the storage cannot be used (the message names the setting).
        """

    @abc.abstractmethod
    async def lookup(self, key: str, now: float) -> list[bytes]:
        """The span bytes of every variant of ``key`` fresh at ``now``; [] when none."""

    @abc.abstractmethod
    async def insert(self, key: str, variant: str, span: bytes, expires_at: float, now: float) -> int:
        """Store ``span`` as (key, variant) until ``expires_at``, replacing any entry with the same
        pair; ``now`` is the time of use for LRU. Return how many entries were evicted to make room
        (other variants of the key past ``max_variants`` included).

        Raises:
            EntryTooLarge: ``len(span) > max_bytes``.
        """

    @abc.abstractmethod
    async def invalidate(self, keys: Sequence[str]) -> int:
        """Delete every variant of each of ``keys``; return how many entries were deleted."""

    @abc.abstractmethod
    async def evict(self, now: float) -> int:
        """Remove every entry expired at ``now`` (expires_at <= now); return how many."""

    @abc.abstractmethod
    async def stats(self) -> StorageStats:
        """Counts, sizes, limits and removals (see :class:`StorageStats`)."""

    async def ping(self) -> None:  # noqa: B027 - optional hook: an in-process storage always answers
        """Return when the storage answers; raise :class:`StorageUnavailable` otherwise."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release resources; the store is unusable afterwards. Closing twice is harmless."""

    async def __aenter__(self) -> Storage:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
