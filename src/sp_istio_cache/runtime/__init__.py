"""Envoy runtimes by name: ``local`` (a child process) and ``docker`` (a container with limits).

The docker SDK is imported only when a docker runtime starts, so ``local`` works without it.
"""

from __future__ import annotations

from .base import EnvoyRuntime, EnvoyStartError
from .docker import DockerRuntime, remove_leftovers
from .image import RuntimeUnavailable
from .local import LocalRuntime, envoy_binary

RUNTIMES: dict[str, type[EnvoyRuntime]] = {"local": LocalRuntime, "docker": DockerRuntime}


def get_runtime(name: str) -> type[EnvoyRuntime]:
    """The runtime class registered as ``name``.

    Raises:
        ValueError: unknown name; the message lists the known ones.
    """
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; known: {', '.join(sorted(RUNTIMES))}") from None


__all__ = ["DockerRuntime", "EnvoyRuntime", "EnvoyStartError", "LocalRuntime", "RUNTIMES", "RuntimeUnavailable",
           "envoy_binary", "get_runtime", "remove_leftovers"]
