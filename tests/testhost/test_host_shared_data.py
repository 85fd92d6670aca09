"""Shared data and queues across the worker VMs of one model (proxy-wasm-cpp-host semantics)."""

from __future__ import annotations

from sp_istio_cache.testhost import WasmResult
from sp_istio_cache.testhost.shared_state import SharedData

from .fake_guest import FakeGuest, events, fake_model


def _set(g: FakeGuest, ctx: int, key: bytes, value: bytes, cas: int) -> int:
    return g.call("do_set_shared", ctx, g.put(key), len(key), g.put(value), len(value), cas)


def _get(g: FakeGuest, ctx: int, key: bytes) -> tuple[int, bytes, int]:
    kptr, ptr_ptr, size_ptr, cas_ptr = g.put(key), g.slot(), g.slot(), g.slot()
    status = g.call("do_get_shared", ctx, kptr, len(key), ptr_ptr, size_ptr, cas_ptr)
    if status != WasmResult.OK:
        return status, b"", 0
    return status, g.returned(ptr_ptr, size_ptr), g.u32(cas_ptr)


def test_cas_across_two_worker_vms():
    model = fake_model()
    vm0, vm1 = FakeGuest(model, 0), FakeGuest(model, 1)
    root0, root1 = model.root_context_id(0), model.root_context_id(1)
    assert _get(vm1, root1, b"k") == (WasmResult.NOT_FOUND, b"", 0)
    assert _set(vm0, root0, b"k", b"v1", 0) == WasmResult.OK
    status, value, cas1 = _get(vm1, root1, b"k")
    assert (status, value) == (WasmResult.OK, b"v1")
    assert _set(vm0, root0, b"k", b"v2", 0) == WasmResult.OK  # cas 0: unconditional
    assert _set(vm1, root1, b"k", b"v3", cas1) == WasmResult.CAS_MISMATCH  # vm0 wrote in between
    status, value, cas2 = _get(vm1, root1, b"k")
    assert (value, cas2 > cas1) == (b"v2", True)
    assert _set(vm1, root1, b"k", b"v3", cas2) == WasmResult.OK
    assert _get(vm0, root0, b"k")[1] == b"v3"
    assert _set(vm0, root0, b"new", b"x", 12345) == WasmResult.OK  # a missing key ignores the cas
    assert model.shared_data.keys(model.vm_id) == [b"k", b"new"]


def test_cas_counter_is_process_wide_and_never_zero():
    data = SharedData()
    assert data.set("vm", b"a", b"1", 0) == WasmResult.OK
    assert data.set("vm", b"b", b"1", 0) == WasmResult.OK
    assert data.set("other", b"a", b"1", 0) == WasmResult.OK
    assert [data.get("vm", b"a")[1], data.get("vm", b"b")[1], data.get("other", b"a")[1]] == [1, 2, 3]
    data._cas = 0xFFFFFFFF
    data.set("vm", b"a", b"2", 0)
    data.set("vm", b"a", b"3", 0)
    assert data.get("vm", b"a") == (b"3", 1)  # wrapped past 0
    assert data.bytes_used("vm") == 4


def test_keys_are_never_deleted_by_stream_or_root_teardown():
    model = fake_model()
    g = FakeGuest(model)
    _set(g, model.root_context_id(), b"kept", b"v", 0)
    model.reconfigure(b"{}")
    model.shutdown()
    assert model.shared_data.get(model.vm_id, b"kept")[0] == b"v"


def test_queue_registered_on_one_vm_is_fed_by_the_other_and_notifies_after_the_event():
    model = fake_model()
    vm0, vm1 = FakeGuest(model, 0), FakeGuest(model, 1)
    r0, r1 = model.root_context_id(0), model.root_context_id(1)
    token_ptr = vm0.slot()
    assert vm0.call("do_register_queue", r0, vm0.put(b"fills"), 5, token_ptr) == WasmResult.OK
    token = vm0.u32(token_ptr)
    found = vm1.slot()
    name, vm_id = vm1.put(b"fills"), vm1.put(model.vm_id.encode())
    assert vm1.call("do_resolve_queue", r1, vm_id, len(model.vm_id), name, 5, found) == WasmResult.OK
    assert vm1.u32(found) == token
    assert vm1.call("do_resolve_queue", r1, vm_id, len(model.vm_id), vm1.put(b"nope"), 4, found) == WasmResult.NOT_FOUND
    item = vm1.put(b"entry-1")
    model.workers[1].callback("do_enqueue", r1, token, item, 7)  # no pump: the notification is posted
    assert ("queue_ready", r0) not in events(model)
    model.pump()
    assert events(model)[-1] == ("queue_ready", r0)
    ptr_ptr, size_ptr = vm0.slot(), vm0.slot()
    assert vm0.call("do_dequeue", r0, token, ptr_ptr, size_ptr) == WasmResult.OK
    assert vm0.returned(ptr_ptr, size_ptr) == b"entry-1"
    assert vm0.call("do_dequeue", r0, token, ptr_ptr, size_ptr) == WasmResult.EMPTY
    assert vm0.call("do_dequeue", r0, token + 99, ptr_ptr, size_ptr) == WasmResult.NOT_FOUND
