"""A proxy-wasm (ABI 0.2.1) test host on wasmtime: runs the built filter without Envoy.

See :mod:`.host` for the Envoy behaviour it models, :mod:`.fakes` for the backend's stand-in used in
unit tests, and :mod:`.bench` for the per-request cost measurement.
"""

from .abi import Action, BufferType, LogLevel, MapType, MetricType, WasmResult, decode_pairs, encode_pairs
from .host import (
    GuestTrap,
    HttpCall,
    LocalResponse,
    ProxyWasmHost,
    Stream,
    TestHostError,
    UnsupportedImport,
    load_module,
)

__all__ = [
    "Action", "BufferType", "GuestTrap", "HttpCall", "LocalResponse", "LogLevel", "MapType",
    "MetricType", "ProxyWasmHost", "Stream", "TestHostError", "UnsupportedImport", "WasmResult",
    "decode_pairs", "encode_pairs", "load_module",
]
