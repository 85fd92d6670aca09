"""Shared data and shared queues (proxy-wasm-cpp-host ``exports.cc`` over
:mod:`..shared_state`): every VM of the model sees the same store under the model's ``vm_id``.
A queue notifies the root context that registered it (a stream registers for its root) with
``proxy_on_queue_ready``, posted to that VM's event loop (it runs after the current event)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..abi import WasmResult
from ..vm import ImportSpec

if TYPE_CHECKING:
    from ..worker import Worker


def proxy_get_shared_data(w: Worker, caller: Any, kptr: int, ksize: int, ptr_ptr: int, size_ptr: int,
                          cas_ptr: int) -> int:
    key = w.mem.read(caller, kptr, ksize)
    if key is None:
        return WasmResult.INVALID_MEMORY_ACCESS
    found = w.model.shared_data.get(w.model.vm_id, key)
    if found is None:
        return WasmResult.NOT_FOUND
    value, cas = found
    status = w.mem.return_bytes(caller, value, ptr_ptr, size_ptr)
    if status != WasmResult.OK or not w.mem.write_u32(caller, cas_ptr, cas):
        return WasmResult.INVALID_MEMORY_ACCESS
    return WasmResult.OK


def proxy_set_shared_data(w: Worker, caller: Any, kptr: int, ksize: int, vptr: int, vsize: int, cas: int) -> int:
    key, value = w.mem.read(caller, kptr, ksize), w.mem.read(caller, vptr, vsize)
    if key is None or value is None:
        return WasmResult.INVALID_MEMORY_ACCESS
    return w.model.shared_data.set(w.model.vm_id, key, value, cas)


def proxy_register_shared_queue(w: Worker, caller: Any, nptr: int, nsize: int, token_ptr: int) -> int:
    name = w.mem.read(caller, nptr, nsize)
    ctx = w.context()
    if name is None:
        return WasmResult.INVALID_MEMORY_ACCESS
    if ctx is None:
        return WasmResult.BAD_ARGUMENT
    token = w.model.queues.register(w.model.vm_id, name, ctx.root.id,
                                    lambda cid, tok: w.model.post(lambda: w.queue_ready(cid, tok)))
    return WasmResult.OK if w.mem.write_u32(caller, token_ptr, token) else WasmResult.INVALID_MEMORY_ACCESS


def proxy_resolve_shared_queue(w: Worker, caller: Any, vptr: int, vsize: int, nptr: int, nsize: int,
                               token_ptr: int) -> int:
    vm_id, name = w.mem.read(caller, vptr, vsize), w.mem.read(caller, nptr, nsize)
    if vm_id is None or name is None:
        return WasmResult.INVALID_MEMORY_ACCESS
    token = w.model.queues.resolve(vm_id.decode("utf-8", "replace") or w.model.vm_id, name)
    if token is None:
        return WasmResult.NOT_FOUND
    return WasmResult.OK if w.mem.write_u32(caller, token_ptr, token) else WasmResult.INVALID_MEMORY_ACCESS


def proxy_dequeue_shared_queue(w: Worker, caller: Any, token: int, ptr_ptr: int, size_ptr: int) -> int:
    status, data = w.model.queues.dequeue(token)
    if status != WasmResult.OK:
        return status
    return w.mem.return_bytes(caller, data, ptr_ptr, size_ptr)


def proxy_enqueue_shared_queue(w: Worker, caller: Any, token: int, ptr: int, size: int) -> int:
    data = w.mem.read(caller, ptr, size)
    if data is None:
        return WasmResult.INVALID_MEMORY_ACCESS
    return w.model.queues.enqueue(token, data)


ENV = {
    "proxy_get_shared_data": ImportSpec("iiiii", "i", proxy_get_shared_data),
    "proxy_set_shared_data": ImportSpec("iiiii", "i", proxy_set_shared_data),
    "proxy_register_shared_queue": ImportSpec("iii", "i", proxy_register_shared_queue),
    "proxy_resolve_shared_queue": ImportSpec("iiiii", "i", proxy_resolve_shared_queue),
    "proxy_dequeue_shared_queue": ImportSpec("iii", "i", proxy_dequeue_shared_queue),
    "proxy_enqueue_shared_queue": ImportSpec("iii", "i", proxy_enqueue_shared_queue),
}
