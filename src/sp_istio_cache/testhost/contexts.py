"""Plugins and their root contexts inside one VM (proxy-wasm-cpp-host ``PluginBase``, ``ContextBase``).

A plugin is one filter configuration; Envoy keys it by root id, configuration bytes and name
(``PluginBase::key``), so an identical configuration reuses the live root context, and a new one
gets a new root context with a new id. A replaced root is torn down once its last stream is gone
(the streams hold the plugin handle): ``proxy_on_done``, then ``proxy_on_delete`` when that
returned true, else when the plugin calls ``proxy_done()``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .callouts import CalloutAnswer
    from .worker import Worker

RootState = Literal["active", "draining", "pending_done", "deleted"]


@dataclass(frozen=True)
class Plugin:
    """One plugin configuration (Envoy's ``PluginBase``).

    Attributes:
        configuration: the bytes ``proxy_on_configure`` reads (``PLUGIN_CONFIGURATION``).
    """

    name: str
    root_id: str
    vm_id: str
    configuration: bytes

    @property
    def key(self) -> tuple[str, bytes, str]:
        """What Envoy keys plugins by (root id, configuration, name)."""
        return (self.root_id, self.configuration, self.name)


def config_bytes(config: dict | bytes | str | None) -> bytes:
    """A plugin configuration as bytes (dicts as JSON)."""
    if config is None:
        return b""
    if isinstance(config, dict):
        return json.dumps(config).encode()
    return config.encode() if isinstance(config, str) else bytes(config)


@dataclass(eq=False)
class RootContext:
    """A plugin's root context in one VM.

    Attributes:
        streams: ids of the live stream contexts created under it.
        state: ``active`` (new streams use it), ``draining`` (replaced, waiting for its streams),
            ``pending_done`` (``proxy_on_done`` returned false), ``deleted``.
        tick_period_ms: from ``proxy_set_tick_period_milliseconds`` (0: no ticks).
        http_call_response: the callout answer readable during ``proxy_on_http_call_response``.
        status: what ``proxy_get_status`` returns (code, message).
    """

    worker: Worker
    id: int
    plugin: Plugin
    streams: set[int] = field(default_factory=set)
    state: RootState = "active"
    tick_period_ms: int = 0
    configuring: bool = False
    http_call_response: CalloutAnswer | None = None
    status: tuple[int, bytes] = (0, b"")

    @property
    def root(self) -> RootContext:
        """Itself (a stream's ``root`` is its plugin's root context)."""
        return self
