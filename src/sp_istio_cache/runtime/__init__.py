"""Envoy runtimes by name (``local`` now; ``docker`` joins the registry when it lands)."""

from __future__ import annotations

from .base import EnvoyRuntime, EnvoyStartError
from .local import LocalRuntime, envoy_binary

RUNTIMES: dict[str, type[EnvoyRuntime]] = {"local": LocalRuntime}


def get_runtime(name: str) -> type[EnvoyRuntime]:
    """The runtime class registered as ``name``.

    Raises:
        ValueError: unknown name; the message lists the known ones.
    """
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; known: {', '.join(sorted(RUNTIMES))}") from None


__all__ = ["EnvoyRuntime", "EnvoyStartError", "LocalRuntime", "RUNTIMES", "envoy_binary", "get_runtime"]
