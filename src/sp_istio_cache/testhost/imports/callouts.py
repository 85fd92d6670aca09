"""``proxy_http_call`` (Envoy ``Context::httpCall`` via proxy-wasm-cpp-host ``exports::http_call``).

The call is made by the ROOT context of the effective context, whatever context dispatched it;
the token slot is written (0) before anything else, so a bad pointer fails first. BadArgument:
negative timeout (as i32), a cluster Envoy does not know, headers without ``:path``, ``:method``
or ``:authority`` (a malformed header map counts as empty).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import headermap
from ..abi import WasmResult, envoy_pairs
from ..vm import ImportSpec

if TYPE_CHECKING:
    from ..worker import Worker

_REQUIRED = {":path", ":method", ":authority"}


def proxy_http_call(w: Worker, caller: Any, cptr: int, csize: int, hptr: int, hsize: int, bptr: int, bsize: int,
                    tptr: int, tsize: int, timeout_ms: int, token_ptr: int) -> int:
    ctx = w.context()
    cluster, raw_headers = w.mem.read(caller, cptr, csize), w.mem.read(caller, hptr, hsize)
    body, raw_trailers = w.mem.read(caller, bptr, bsize), w.mem.read(caller, tptr, tsize)
    if cluster is None or raw_headers is None or body is None or raw_trailers is None:
        return WasmResult.INVALID_MEMORY_ACCESS
    if not w.mem.write_u32(caller, token_ptr, 0):
        return WasmResult.INVALID_MEMORY_ACCESS
    if ctx is None or timeout_ms >= 2**31:
        return WasmResult.BAD_ARGUMENT
    name = cluster.decode("utf-8", "replace")
    if name not in w.model.clusters:
        return WasmResult.BAD_ARGUMENT
    pairs, trailer_pairs = envoy_pairs(raw_headers), envoy_pairs(raw_trailers)
    if pairs is None or trailer_pairs is None:
        w.model.violation(f"proxy_http_call to {name}: malformed header or trailer map; Envoy uses an empty one")
    headers = [(headermap.text(k).lower(), headermap.text(v)) for k, v in pairs or []]
    trailers = [(headermap.text(k).lower(), headermap.text(v)) for k, v in trailer_pairs or []]
    if not _REQUIRED <= {k for k, _ in headers}:
        return WasmResult.BAD_ARGUMENT
    token = w.dispatch_http_call(ctx.root, name, headers, body, trailers, timeout_ms)
    w.mem.write_u32(caller, token_ptr, token)
    return WasmResult.OK


ENV = {"proxy_http_call": ImportSpec("i" * 10, "i", proxy_http_call)}
