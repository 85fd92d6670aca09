"""The storage interface every cache backend store implements.

The backend is a keyed store of (status, headers, body, expiry): HTTP semantics stay in the
filter. Every implementation passes ``tests/backend/test_storage_conformance.py``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One cached response.

    Attributes:
        status: HTTP status code.
        headers: lower-case name -> every value, in the order stored.
        body: exact body bytes.
        stored_at: when it was stored, seconds since the epoch.
        expires_at: when it stops being served, seconds since the epoch (fresh while now < expires_at).
    """

    status: int
    headers: dict[str, list[str]]
    body: bytes
    stored_at: float
    expires_at: float

    @property
    def size(self) -> int:
        """Bytes the entry accounts for: body + UTF-8 header names and values (once per value)."""
        header_bytes = sum(
            len(name.encode()) + len(value.encode())
            for name, values in self.headers.items()
            for value in values
        )
        return len(self.body) + header_bytes


@dataclass(frozen=True)
class StorageStats:
    """Contents of a store: entry count (expired-but-not-evicted included) and their total size."""

    entries: int
    bytes: int


class Storage(abc.ABC):
    """A keyed store of :class:`Entry`; keys are request fingerprints (64 hex characters).

    ``blocking`` says whether calls may block on I/O: the server runs those in a worker thread
    and calls the others inline on the event loop. Implementations are safe to call from several
    threads.
    """

    blocking: bool = True
    #: whether ``lookup`` may block; a store whose lookups are short reads (no lock shared with
    #: writers) sets False, so the server answers lookups inline instead of paying a thread hop.
    blocking_lookup: bool = True

    @abc.abstractmethod
    def lookup(self, key: str, now: float) -> Entry | None:
        """Return the entry under ``key`` if it is fresh at ``now`` (now < expires_at), else None."""

    @abc.abstractmethod
    def insert(self, key: str, entry: Entry) -> None:
        """Store ``entry`` under ``key``, replacing any entry already there."""

    @abc.abstractmethod
    def evict(self, now: float) -> int:
        """Remove every entry expired at ``now`` (expires_at <= now); return how many were removed."""

    @abc.abstractmethod
    def stats(self) -> StorageStats:
        """Entry count and total :attr:`Entry.size` of everything stored."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release resources; the store is unusable afterwards. Closing twice is harmless."""

    def __enter__(self) -> "Storage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
