"""Local replies and stream control (Envoy ``Context::sendLocalResponse``, ``continueStream``,
``closeStream``; proxy-wasm-cpp-host ``set_effective_context``, ``done``, ``get_status``).

All stream actions act on the effective context and run after the VM call returns. On a root
context they do nothing and answer Ok (a filter that does that has forgotten
``proxy_set_effective_context``: recorded as a violation). ``proxy_send_local_response`` also turns
the running callback's result into a stop (``stopNextIteration``), and a malformed header map
becomes an empty one, as in Envoy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import headermap
from ..abi import StreamType, WasmResult, envoy_pairs
from ..errors import NotModelled
from ..stream import Stream
from ..vm import ImportSpec

if TYPE_CHECKING:
    from ..worker import Worker


def proxy_send_local_response(w: Worker, caller: Any, status: int, dptr: int, dsize: int, bptr: int, bsize: int,
                              hptr: int, hsize: int, grpc_status: int) -> int:
    details, body = w.mem.read(caller, dptr, dsize), w.mem.read(caller, bptr, bsize)
    raw_headers = w.mem.read(caller, hptr, hsize)
    if details is None or body is None or raw_headers is None:
        return WasmResult.INVALID_MEMORY_ACCESS
    pairs = envoy_pairs(raw_headers)
    if pairs is None:
        w.model.violation(f"proxy_send_local_response({status}): malformed header map; Envoy sends no headers")
        pairs = []
    extra = [(headermap.text(k).lower(), headermap.text(v)) for k, v in pairs]
    w.stop_next_iteration = True
    ctx = w.context()
    if not isinstance(ctx, Stream):
        w.model.violation(f"proxy_send_local_response({status}) on context {w.effective_id}, which is not a stream: "
                          f"Envoy ignores it (set the effective context first)")
        return WasmResult.OK
    grpc = grpc_status - 2**32 if grpc_status >= 2**31 else grpc_status
    text = details.decode("utf-8", "replace")
    w.after_vm_call(lambda: ctx.send_local_reply(status, body, extra, text, grpc))
    return WasmResult.OK


def proxy_continue_stream(w: Worker, caller: Any, t: int) -> int:
    if t > StreamType.UPSTREAM:
        return WasmResult.BAD_ARGUMENT
    if t == StreamType.UPSTREAM:
        return WasmResult.UNIMPLEMENTED
    ctx = w.context()
    if not isinstance(ctx, Stream):
        w.model.violation(f"proxy_continue_stream({t}) on context {w.effective_id}, which is not a stream: "
                          f"Envoy does nothing (set the effective context first)")
        return WasmResult.OK
    if t in (StreamType.REQUEST, StreamType.RESPONSE):
        request = t == StreamType.REQUEST
        w.after_vm_call(lambda: ctx.continue_direction(request))
        ctx.decoder.detach()
    return WasmResult.OK


def proxy_close_stream(w: Worker, caller: Any, t: int) -> int:
    if t > StreamType.UPSTREAM:
        return WasmResult.BAD_ARGUMENT
    ctx = w.context()
    if isinstance(ctx, Stream) and t in (StreamType.REQUEST, StreamType.RESPONSE):
        w.after_vm_call(lambda: ctx.reset("wasm_close_stream"))
    return WasmResult.OK


def proxy_set_effective_context(w: Worker, caller: Any, context_id: int) -> int:
    return WasmResult.OK if w.set_effective(context_id) else WasmResult.BAD_ARGUMENT


def proxy_done(w: Worker, caller: Any) -> int:
    ctx = w.context()
    return WasmResult.OK if ctx is not None and w.plugin_done(ctx) else WasmResult.NOT_FOUND


def proxy_get_status(w: Worker, caller: Any, code_ptr: int, ptr_ptr: int, size_ptr: int) -> int:
    ctx = w.context()
    code, message = ctx.root.status if ctx is not None else (0, b"")
    if not w.mem.write_u32(caller, code_ptr, code):
        return WasmResult.INVALID_MEMORY_ACCESS
    return w.mem.return_bytes(caller, message, ptr_ptr, size_ptr)


def proxy_continue_request(w: Worker, caller: Any) -> int:
    return proxy_continue_stream(w, caller, StreamType.REQUEST)


def proxy_continue_response(w: Worker, caller: Any) -> int:
    return proxy_continue_stream(w, caller, StreamType.RESPONSE)


def proxy_clear_route_cache(w: Worker, caller: Any) -> int:
    return WasmResult.OK


def _not_modelled(name: str):
    def handler(w: Worker, caller: Any, *args: int) -> int:
        raise NotModelled(f"{name} is implemented by Envoy but not by this test host")
    return handler


ENV = {
    "proxy_send_local_response": ImportSpec("iiiiiiii", "i", proxy_send_local_response),
    "proxy_continue_stream": ImportSpec("i", "i", proxy_continue_stream),
    "proxy_close_stream": ImportSpec("i", "i", proxy_close_stream),
    "proxy_continue_request": ImportSpec("", "i", proxy_continue_request),
    "proxy_continue_response": ImportSpec("", "i", proxy_continue_response),
    "proxy_clear_route_cache": ImportSpec("", "i", proxy_clear_route_cache),
    "proxy_set_effective_context": ImportSpec("i", "i", proxy_set_effective_context),
    "proxy_done": ImportSpec("", "i", proxy_done),
    "proxy_get_status": ImportSpec("iii", "i", proxy_get_status),
    "proxy_call_foreign_function": ImportSpec("iiiiii", "i", _not_modelled("proxy_call_foreign_function")),
    "proxy_grpc_call": ImportSpec("i" * 12, "i", _not_modelled("proxy_grpc_call")),
    "proxy_grpc_stream": ImportSpec("i" * 9, "i", _not_modelled("proxy_grpc_stream")),
    "proxy_grpc_send": ImportSpec("iiii", "i", _not_modelled("proxy_grpc_send")),
    "proxy_grpc_cancel": ImportSpec("i", "i", _not_modelled("proxy_grpc_cancel")),
    "proxy_grpc_close": ImportSpec("i", "i", _not_modelled("proxy_grpc_close")),
}
