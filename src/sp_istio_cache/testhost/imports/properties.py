"""``proxy_get_property`` / ``proxy_set_property`` (see :mod:`..properties` for the paths).

A test may pin any path (dotted, e.g. ``connection.mtls``) to raw bytes with the model's
``properties`` argument; such overrides win over the computed values. ``proxy_set_property``
needs a stream (Envoy keeps it in the stream's filter state): on a root context it is NotFound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..abi import WasmResult
from ..properties import resolve, split_path
from ..stream import Stream
from ..vm import ImportSpec

if TYPE_CHECKING:
    from ..worker import Worker


def proxy_get_property(w: Worker, caller: Any, pptr: int, psize: int, ptr_ptr: int, size_ptr: int) -> int:
    raw = w.mem.read(caller, pptr, psize)
    if raw is None:
        return WasmResult.INVALID_MEMORY_ACCESS
    ctx = w.context()
    parts = split_path(raw)
    value = w.model.properties.get(".".join(parts))
    if value is None and ctx is not None:
        value = resolve(ctx, parts, w.model.identity, w.model.vm_id)
    if value is None:
        return WasmResult.NOT_FOUND
    return w.mem.return_bytes(caller, value, ptr_ptr, size_ptr)


def proxy_set_property(w: Worker, caller: Any, pptr: int, psize: int, vptr: int, vsize: int) -> int:
    path, value = w.mem.read(caller, pptr, psize), w.mem.read(caller, vptr, vsize)
    if path is None or value is None:
        return WasmResult.INVALID_MEMORY_ACCESS
    ctx = w.context()
    if not isinstance(ctx, Stream):
        return WasmResult.NOT_FOUND
    ctx.filter_state[path] = value
    return WasmResult.OK


ENV = {
    "proxy_get_property": ImportSpec("iiii", "i", proxy_get_property),
    "proxy_set_property": ImportSpec("iiii", "i", proxy_set_property),
}
