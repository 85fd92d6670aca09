"""Storage implementations chosen by name (STYLE.md §8: a registry, not if/else).

>>> store = create_storage("sqlite", path="cache.sqlite", max_bytes=64 * 2**20)

Implementations are imported only when created, so a storage with an optional dependency costs
nothing until it is used. Every one passes ``tests/backend/test_storage_conformance.py``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_VARIANTS,
    MAX_VARIANTS,
    EntryTooLarge,
    Storage,
    StorageStats,
    StorageUnavailable,
)

# name -> "module:Class" (module relative to this package)
_REGISTRY: dict[str, str] = {
    "memory": ".memory:MemoryStorage",
    "redis": ".redis:RedisStorage",
    "sqlite": ".sqlite:SqliteStorage",
}


def storage_names() -> list[str]:
    """Names accepted by :func:`create_storage`, sorted."""
    return sorted(_REGISTRY)


def storage_class(name: str) -> type[Storage]:
    """The class registered as ``name``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the known names).
    """
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown storage {name!r}; known: {', '.join(storage_names())}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name, __name__), class_name)


def create_storage(name: str, **options: Any) -> Storage:
    """Create the storage registered as ``name`` with its keyword ``options``.

    Every storage takes ``max_bytes``, ``max_entries`` and ``max_variants``; ``sqlite`` takes ``path`` (file, or
    ``":memory:"``); ``redis`` takes ``url`` and ``prefix``; ``memory`` nothing more. Call
    ``await storage.open()`` before use.

    Raises:
        ValueError: ``name`` is not registered, or a limit below 1.
        TypeError: an option the implementation does not accept.
    """
    return storage_class(name)(**options)


__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_ENTRIES", "DEFAULT_MAX_VARIANTS", "MAX_VARIANTS",
           "EntryTooLarge", "Storage", "StorageStats",
           "StorageUnavailable", "create_storage", "storage_class", "storage_names"]
