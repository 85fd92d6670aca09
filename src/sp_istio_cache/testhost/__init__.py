"""A proxy-wasm (ABI 0.2.1) host on wasmtime that models Envoy: runs the built filter without Envoy.

Start with :class:`EnvoyModel` (an Envoy process: worker VMs, shared data, stats, virtual clock,
callouts) and its :class:`Stream` (one HTTP stream through the filter manager). Layout:

| module | job |
|---|---|
| ``abi`` | ABI constants, statuses, header-map wire format |
| ``headermap`` | Envoy's header map semantics (order, replace, size) |
| ``memory`` | guest memory reads/writes and buffers handed to the guest |
| ``vm`` | one wasmtime instance: link, instantiate, call with fuel, traps |
| ``imports/*`` | the host functions, by area |
| ``worker`` | one worker VM: contexts, callback dispatch, callouts, ticks |
| ``contexts`` | plugins and root contexts |
| ``filter_manager`` | one direction of a stream (pause/continue/buffer rules) |
| ``stream`` | one stream: both directions, local replies, its end |
| ``callouts`` | callouts, Envoy's answers, the real HTTP client |
| ``properties`` | ``proxy_get_property`` paths and serialization |
| ``shared_state`` | shared data (CAS) and shared queues |
| ``stats`` | custom metrics shared by name across VMs |
| ``clock`` | the virtual clock and its timers |
| ``log`` | log lines and violations |
| ``envoy`` | the Envoy process model |
| ``soak`` | many reconfigurations and requests, cheaply |
| ``bench``, ``build`` | per-request cost, test builds (the filter tests' fake backend: tests/testhost/_cache.py) |
"""

from .abi import (
    Action,
    BufferType,
    DataStatus,
    HeadersStatus,
    LogLevel,
    MapType,
    MetricType,
    TrailersStatus,
    WasmResult,
    decode_pairs,
    encode_pairs,
)
from .callouts import CalloutAnswer, HttpCall
from .clock import DEFAULT_NOW_NS
from .envoy import ENVOY_BUFFER_LIMIT, EnvoyModel
from .errors import GuestTrap, NotModelled, TestHostError, UnsupportedImport
from .properties import EnvoyIdentity
from .stream import LocalResponse, Stream
from .vm import CompiledModule, load_module

__all__ = [
    "DEFAULT_NOW_NS", "ENVOY_BUFFER_LIMIT", "Action", "BufferType", "CalloutAnswer", "CompiledModule", "DataStatus",
    "EnvoyIdentity", "EnvoyModel", "GuestTrap", "HeadersStatus", "HttpCall", "LocalResponse", "LogLevel", "MapType",
    "MetricType", "NotModelled", "Stream", "TestHostError", "TrailersStatus", "UnsupportedImport", "WasmResult",
    "decode_pairs", "encode_pairs", "load_module",
]
