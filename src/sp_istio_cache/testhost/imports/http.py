"""Header maps and buffers (Envoy ``Context::getMap``/``getConstMap``/``getBuffer``).

Which map a filter reaches, from the effective context:

- request/response headers: during their callback and while the filter holds them; gone once
  the request is continued (``continueStream`` drops them at once, before the deferred continue);
  in ``proxy_on_log`` the final maps, read-only;
- trailers: during their callback and while held;
- callout response headers/trailers/body: during ``proxy_on_http_call_response``, from any context
  of the owning root; read-only;
- a missing map is BadArgument (NotFound in ``proxy_on_log``); a missing key is NotFound; an empty
  map serializes as pointer 0, size 0.

Bodies: the current chunk, or the whole buffer after a StopIterationAndBuffer; empty (Ok) when
there is none. ``proxy_set_buffer_bytes`` follows ``Buffer::copyFrom``: start 0 and length 0
prepends, start 0 and length >= size replaces, start >= size appends, anything else BadArgument.
Plugin configuration is readable only while that root is configured; VM configuration always.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import headermap
from ..abi import BufferType, MapType, WasmResult, encode_pairs, envoy_pairs
from ..contexts import RootContext
from ..headermap import Pairs
from ..stream import Stream
from ..vm import ImportSpec

if TYPE_CHECKING:
    from ..worker import Worker

_CALL_MAPS = (MapType.HTTP_CALL_RESPONSE_HEADERS, MapType.HTTP_CALL_RESPONSE_TRAILERS)
_MAX_MAP = MapType.HTTP_CALL_RESPONSE_TRAILERS


def const_map(w: Worker, t: int) -> Pairs | None:
    """The map of type ``t`` the effective context can read, or None."""
    ctx = w.context()
    if ctx is None:
        return None
    if t in _CALL_MAPS:
        answer = ctx.root.http_call_response
        if answer is None:
            return None
        return answer.headers if t == MapType.HTTP_CALL_RESPONSE_HEADERS else (answer.trailers or None)
    if not isinstance(ctx, Stream) or t > MapType.HTTP_RESPONSE_TRAILERS:
        return None
    direction = ctx.decoder if t <= MapType.HTTP_REQUEST_TRAILERS else ctx.encoder
    trailers = t in (MapType.HTTP_REQUEST_TRAILERS, MapType.HTTP_RESPONSE_TRAILERS)
    if ctx.in_log:
        if t == MapType.HTTP_REQUEST_TRAILERS:
            return None
        return direction.trailers_out if trailers else (direction.headers_out or direction.headers)
    return mutable_map(w, t)


def mutable_map(w: Worker, t: int) -> Pairs | None:
    """The map of type ``t`` the effective context can change, or None."""
    ctx = w.context()
    if not isinstance(ctx, Stream) or ctx.in_log or t > MapType.HTTP_RESPONSE_TRAILERS:
        return None
    direction = ctx.decoder if t <= MapType.HTTP_REQUEST_TRAILERS else ctx.encoder
    trailers = t in (MapType.HTTP_REQUEST_TRAILERS, MapType.HTTP_RESPONSE_TRAILERS)
    if not direction.map_live(trailers):
        return None
    return direction.trailers if trailers else direction.headers


def buffer(w: Worker, t: int) -> bytes | None:
    """Buffer ``t`` as the effective context reads it; None is NotFound."""
    ctx = w.context()
    if t == BufferType.VM_CONFIGURATION:
        return w.model.vm_config
    if ctx is None:
        return None
    if t == BufferType.PLUGIN_CONFIGURATION:
        return ctx.plugin.configuration if isinstance(ctx, RootContext) and ctx.configuring else None
    if t == BufferType.HTTP_CALL_RESPONSE_BODY:
        answer = ctx.root.http_call_response
        return None if answer is None else answer.body
    body = t in (BufferType.HTTP_REQUEST_BODY, BufferType.HTTP_RESPONSE_BODY)
    if body and isinstance(ctx, Stream) and not ctx.in_log:
        return (ctx.decoder if t == BufferType.HTTP_REQUEST_BODY else ctx.encoder).body_visible()
    return b""


# ---------------------------------------------------------------- header maps


def proxy_get_header_map_pairs(w: Worker, caller: Any, t: int, ptr_ptr: int, size_ptr: int) -> int:
    if t > _MAX_MAP:
        return WasmResult.BAD_ARGUMENT
    pairs = const_map(w, t) or []
    return w.mem.return_bytes(caller, encode_pairs(pairs) if pairs else b"", ptr_ptr, size_ptr)


def proxy_set_header_map_pairs(w: Worker, caller: Any, t: int, ptr: int, size: int) -> int:
    status, pairs, data = _map_and_bytes(w, caller, t, ptr, size, mutable=True)
    if status != WasmResult.OK:
        return status
    new = envoy_pairs(data)
    if new is None:
        w.model.violation(f"proxy_set_header_map_pairs({t}): malformed or oversized map; Envoy empties the map")
        new = []
    pairs.clear()
    for key, value in new:
        headermap.add(pairs, headermap.text(key), headermap.text(value))
    return WasmResult.OK


def proxy_get_header_map_size(w: Worker, caller: Any, t: int, ret: int) -> int:
    pairs = mutable_map(w, t) if t <= _MAX_MAP else None
    if pairs is None:
        return WasmResult.BAD_ARGUMENT
    ok = w.mem.write_u32(caller, ret, headermap.byte_size(pairs))
    return WasmResult.OK if ok else WasmResult.INVALID_MEMORY_ACCESS


def proxy_get_header_map_value(w: Worker, caller: Any, t: int, kptr: int, ksize: int, ptr_ptr: int,
                               size_ptr: int) -> int:
    status, pairs, key = _map_and_bytes(w, caller, t, kptr, ksize, mutable=False)
    if status == WasmResult.BAD_ARGUMENT and t <= _MAX_MAP:
        ctx = w.context()
        return WasmResult.NOT_FOUND if isinstance(ctx, Stream) and ctx.in_log else status
    if status != WasmResult.OK:
        return status
    value = headermap.first(pairs, headermap.text(key))
    if value is None:
        return WasmResult.NOT_FOUND
    return w.mem.return_bytes(caller, headermap.raw(value), ptr_ptr, size_ptr)


def _map_and_bytes(w: Worker, caller: Any, t: int, ptr: int, size: int,
                   mutable: bool) -> tuple[int, Pairs, bytes]:
    """(status, map of type ``t``, guest bytes at ``ptr``): BadArgument for an unknown type or a map
    the context cannot reach, InvalidMemoryAccess for a bad range."""
    if t > _MAX_MAP:
        return WasmResult.BAD_ARGUMENT, [], b""
    data = w.mem.read(caller, ptr, size)
    if data is None:
        return WasmResult.INVALID_MEMORY_ACCESS, [], b""
    pairs = mutable_map(w, t) if mutable else const_map(w, t)
    if pairs is None:
        return WasmResult.BAD_ARGUMENT, [], b""
    return WasmResult.OK, pairs, data


def _edit(w: Worker, caller: Any, t: int, kptr: int, ksize: int, vptr: int | None, vsize: int, edit) -> int:
    if t > _MAX_MAP:
        return WasmResult.BAD_ARGUMENT
    key = w.mem.read(caller, kptr, ksize)
    value = b"" if vptr is None else w.mem.read(caller, vptr, vsize)
    if key is None or value is None:
        return WasmResult.INVALID_MEMORY_ACCESS
    pairs = mutable_map(w, t)
    if pairs is None:
        return WasmResult.BAD_ARGUMENT
    edit(pairs, headermap.text(key), headermap.text(value))
    return WasmResult.OK


def proxy_add_header_map_value(w: Worker, caller: Any, t: int, kptr: int, ksize: int, vptr: int, vsize: int) -> int:
    return _edit(w, caller, t, kptr, ksize, vptr, vsize, headermap.add)


def proxy_replace_header_map_value(w: Worker, caller: Any, t: int, kptr: int, ksize: int, vptr: int,
                                   vsize: int) -> int:
    return _edit(w, caller, t, kptr, ksize, vptr, vsize, headermap.replace)


def proxy_remove_header_map_value(w: Worker, caller: Any, t: int, kptr: int, ksize: int) -> int:
    return _edit(w, caller, t, kptr, ksize, None, 0, lambda pairs, key, _: headermap.remove(pairs, key))


# ---------------------------------------------------------------- buffers


def proxy_get_buffer_bytes(w: Worker, caller: Any, t: int, start: int, length: int, ptr_ptr: int,
                           size_ptr: int) -> int:
    if t > BufferType.CALL_DATA:
        return WasmResult.BAD_ARGUMENT
    data = buffer(w, t)
    if data is None:
        return WasmResult.NOT_FOUND
    if start > len(data):
        length = 0
    length = min(length, len(data) - start) if length else 0
    return w.mem.return_bytes(caller, data[start:start + length] if length > 0 else b"", ptr_ptr, size_ptr)


def proxy_get_buffer_status(w: Worker, caller: Any, t: int, len_ptr: int, flags_ptr: int) -> int:
    if t > BufferType.CALL_DATA:
        return WasmResult.BAD_ARGUMENT
    data = buffer(w, t)
    if data is None:
        return WasmResult.NOT_FOUND
    ok = w.mem.write_u32(caller, len_ptr, len(data)) and w.mem.write_u32(caller, flags_ptr, 0)
    return WasmResult.OK if ok else WasmResult.INVALID_MEMORY_ACCESS


def proxy_set_buffer_bytes(w: Worker, caller: Any, t: int, start: int, length: int, ptr: int, size: int) -> int:
    if t > BufferType.CALL_DATA:
        return WasmResult.BAD_ARGUMENT
    current = buffer(w, t)
    if current is None:
        return WasmResult.NOT_FOUND
    data = w.mem.read(caller, ptr, size)
    if data is None:
        return WasmResult.INVALID_MEMORY_ACCESS
    ctx = w.context()
    if t not in (BufferType.HTTP_REQUEST_BODY, BufferType.HTTP_RESPONSE_BODY) or not isinstance(ctx, Stream):
        return WasmResult.BAD_ARGUMENT  # an immutable buffer
    if start == 0 and length == 0:
        new = data + current
    elif start == 0 and length >= len(current):
        new = data
    elif start >= len(current):
        new = current + data
    else:
        return WasmResult.BAD_ARGUMENT
    (ctx.decoder if t == BufferType.HTTP_REQUEST_BODY else ctx.encoder).set_body(new)
    return WasmResult.OK


ENV = {
    "proxy_get_header_map_pairs": ImportSpec("iii", "i", proxy_get_header_map_pairs),
    "proxy_set_header_map_pairs": ImportSpec("iii", "i", proxy_set_header_map_pairs),
    "proxy_get_header_map_size": ImportSpec("ii", "i", proxy_get_header_map_size),
    "proxy_get_header_map_value": ImportSpec("iiiii", "i", proxy_get_header_map_value),
    "proxy_add_header_map_value": ImportSpec("iiiii", "i", proxy_add_header_map_value),
    "proxy_replace_header_map_value": ImportSpec("iiiii", "i", proxy_replace_header_map_value),
    "proxy_remove_header_map_value": ImportSpec("iii", "i", proxy_remove_header_map_value),
    "proxy_get_buffer_bytes": ImportSpec("iiiii", "i", proxy_get_buffer_bytes),
    "proxy_get_buffer_status": ImportSpec("iii", "i", proxy_get_buffer_status),
    "proxy_set_buffer_bytes": ImportSpec("iiiii", "i", proxy_set_buffer_bytes),
}
