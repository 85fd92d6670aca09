"""Deterministic response bodies: the same (size, seed) always gives the same bytes.

Bytes come from ``random.Random(seed).randbytes(size)`` (seeded from the string, so stable across
processes and Python hash seeds); gzip variants use ``mtime=0`` so they are stable too. Generated
bodies are kept in a bounded LRU so large benchmark payloads are built once.
"""

from __future__ import annotations

import gzip
import random
import threading
from collections import OrderedDict

DEFAULT_BUDGET = 256 * 1024 * 1024


def generate(size: int, seed: str) -> bytes:
    """``size`` deterministic bytes for ``seed``.

    Raises:
        ValueError: ``size`` is negative.
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    return random.Random(seed).randbytes(size)


class PayloadCache:
    """LRU of generated bodies keyed by (size, seed, gzip), bounded by total bytes.

    A body bigger than ``budget_bytes`` is generated every time and never kept.
    """

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET) -> None:
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[tuple[int, str, bool], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, size: int, seed: str, gzipped: bool = False) -> bytes:
        """The body for (size, seed), gzip-compressed when ``gzipped``."""
        key = (size, seed, gzipped)
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
                return data
        raw = generate(size, seed)
        data = gzip.compress(raw, compresslevel=1, mtime=0) if gzipped else raw
        self._put(key, data)
        return data

    def _put(self, key: tuple[int, str, bool], data: bytes) -> None:
        if len(data) > self.budget_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = data
            self._bytes += len(data)
            while self._bytes > self.budget_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)

    @property
    def bytes(self) -> int:
        """Total bytes currently kept."""
        return self._bytes
