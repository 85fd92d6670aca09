"""Storage implementations chosen by name.

>>> store = create_storage("sqlite", path="cache.sqlite")

Implementations are imported only when created, so a store with an optional dependency (Redis)
costs nothing until it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Entry, Storage, StorageStats

# name -> "module:Class" (module relative to this package)
_REGISTRY: dict[str, str] = {
    "memory": ".memory:MemoryStorage",
    "sqlite": ".sqlite:SqliteStorage",
}


def storage_names() -> list[str]:
    """Names accepted by :func:`create_storage`, sorted."""
    return sorted(_REGISTRY)


def create_storage(name: str, **options: Any) -> Storage:
    """Create the storage registered as ``name`` with its keyword ``options``.

    ``memory`` takes no options; ``sqlite`` takes ``path`` (file, or ``":memory:"``).

    Raises:
        ValueError: ``name`` is not registered (the message lists the known names).
        TypeError: an option the implementation does not accept.
    """
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown storage {name!r}; known: {', '.join(storage_names())}"
        ) from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name, __name__), class_name)
    return cls(**options)


__all__ = ["Entry", "Storage", "StorageStats", "create_storage", "storage_names"]
