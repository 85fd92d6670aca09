"""A FAKE guest for tests of the host itself (not a filter): a small WAT module compiled with
``wasmtime.wat2wasm``.

Its callbacks record every call as a sample of the histogram ``events`` (``code * 1000 + context
id``), return what the test set in its exported knob globals, and can reply locally. Thin exported
functions let a test make the guest call one host function from inside wasm with arguments the
test chooses (``FakeGuest.call``), so each ABI rule is checked through the real linker.
"""

from __future__ import annotations

import struct

import wasmtime

from sp_istio_cache.testhost import EnvoyModel, load_module
from sp_istio_cache.testhost.vm import CompiledModule
from sp_istio_cache.testhost.worker import Worker

EVENTS = {1: "root_create", 2: "vm_start", 3: "configure", 4: "request_headers", 5: "request_body",
          6: "response_headers", 7: "response_body", 8: "tick", 9: "stream_create", 10: "log", 11: "done",
          12: "delete", 13: "http_call_response", 14: "queue_ready"}
KNOBS = ("req_headers_status", "req_body_status", "resp_headers_status", "resp_body_status", "done_result",
         "configure_result", "tick_period", "reply_in_req_headers", "reply_in_resp_headers")
REFUSED_CONFIG = b"refuse"  # the only configuration the fake guest's proxy_on_configure refuses (6 bytes)
SCRATCH = 4096  # bytes 4096..65535 are the test's; the guest allocates from 65536 up

_IMPORTS = """
  (import "env" "proxy_define_metric" (func $define_metric (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_record_metric" (func $record_metric (param i32 i64) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment_metric (param i32 i64) (result i32)))
  (import "env" "proxy_get_metric" (func $get_metric (param i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $set_tick (param i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local_reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $set_effective (param i32) (result i32)))
  (import "env" "proxy_done" (func $done (result i32)))
  (import "env" "proxy_get_shared_data" (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "env" "proxy_register_shared_queue" (func $register_queue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_resolve_shared_queue" (func $resolve_queue (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $enqueue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $dequeue (param i32 i32 i32) (result i32)))
"""

_BODY = """
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $events (mut i32) (i32.const 0))
  (global $req_headers_status (export "req_headers_status") (mut i32) (i32.const 0))
  (global $req_body_status (export "req_body_status") (mut i32) (i32.const 0))
  (global $resp_headers_status (export "resp_headers_status") (mut i32) (i32.const 0))
  (global $resp_body_status (export "resp_body_status") (mut i32) (i32.const 0))
  (global $done_result (export "done_result") (mut i32) (i32.const 1))
  (global $configure_result (export "configure_result") (mut i32) (i32.const 1))
  (global $tick_period (export "tick_period") (mut i32) (i32.const 0))
  (global $reply_in_req_headers (export "reply_in_req_headers") (mut i32) (i32.const 0))
  (global $reply_in_resp_headers (export "reply_in_resp_headers") (mut i32) (i32.const 0))
  (data (i32.const 1024) "events")
  (data (i32.const 1040) "from the filter")
  (data (i32.const 1072) "\\01\\00\\00\\00\\07\\00\\00\\00\\01\\00\\00\\00x-local\\001\\00")

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (block $ok
      (br_if $ok (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
      (drop (memory.grow (i32.add (i32.div_u (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
                                            (i32.const 65536)) (i32.const 1)))))
    (local.get $p))
  (func $event (param $code i32) (param $ctx i32)
    (if (i32.eqz (global.get $events)) (then
      (drop (call $define_metric (i32.const 2) (i32.const 1024) (i32.const 6) (i32.const 1016)))
      (global.set $events (i32.load (i32.const 1016)))))
    (drop (call $record_metric (global.get $events)
      (i64.extend_i32_u (i32.add (i32.mul (local.get $code) (i32.const 1000)) (local.get $ctx))))))
  (func $reply (param $status i32)
    (drop (call $local_reply (local.get $status) (i32.const 0) (i32.const 0) (i32.const 1040) (i32.const 15)
                             (i32.const 1072) (i32.const 22) (i32.const -1))))

  (func (export "proxy_on_context_create") (param $ctx i32) (param $parent i32)
    (call $event (select (i32.const 1) (i32.const 9) (i32.eqz (local.get $parent))) (local.get $ctx)))
  (func (export "proxy_on_vm_start") (param $ctx i32) (param $size i32) (result i32)
    (call $event (i32.const 2) (local.get $ctx)) (i32.const 1))
  (func (export "proxy_on_configure") (param $ctx i32) (param $size i32) (result i32)
    (call $event (i32.const 3) (local.get $ctx))
    (if (global.get $tick_period) (then (drop (call $set_tick (global.get $tick_period)))))
    (if (i32.eq (local.get $size) (i32.const 6)) (then (return (i32.const 0))))  ;; REFUSED_CONFIG
    (global.get $configure_result))
  (func (export "proxy_on_tick") (param $ctx i32)
    (drop (call $now (i32.const 1008)))
    (drop (call $record_metric (global.get $events)
      (i64.add (i64.const 8000000000) (i64.div_u (i64.load (i32.const 1008)) (i64.const 1000000))))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (call $event (i32.const 4) (local.get $ctx))
    (if (global.get $reply_in_req_headers) (then (call $reply (global.get $reply_in_req_headers))))
    (global.get $req_headers_status))
  (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (call $event (i32.const 5) (local.get $ctx)) (global.get $req_body_status))
  (func (export "proxy_on_response_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (call $event (i32.const 6) (local.get $ctx))
    (if (global.get $reply_in_resp_headers) (then
      (call $reply (global.get $reply_in_resp_headers))
      (global.set $reply_in_resp_headers (i32.const 0))))
    (global.get $resp_headers_status))
  (func (export "proxy_on_response_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (call $event (i32.const 7) (local.get $ctx)) (global.get $resp_body_status))
  (func (export "proxy_on_log") (param $ctx i32) (call $event (i32.const 10) (local.get $ctx)))
  (func (export "proxy_on_done") (param $ctx i32) (result i32)
    (call $event (i32.const 11) (local.get $ctx)) (global.get $done_result))
  (func (export "proxy_on_delete") (param $ctx i32) (call $event (i32.const 12) (local.get $ctx)))
  (func (export "proxy_on_queue_ready") (param $ctx i32) (param $token i32)
    (call $event (i32.const 14) (local.get $ctx)))
  (func (export "proxy_on_http_call_response")
    (param $ctx i32) (param $token i32) (param $h i32) (param $b i32) (param $t i32)
    (call $event (i32.const 13) (local.get $ctx)))

  ;; one host call each, arguments from the test (the first parameter is the context id)
  (func (export "do_get_shared") (param $ctx i32) (param i32 i32 i32 i32 i32) (result i32)
    (call $get_shared (local.get 1) (local.get 2) (local.get 3) (local.get 4) (local.get 5)))
  (func (export "do_set_shared") (param $ctx i32) (param i32 i32 i32 i32 i32) (result i32)
    (call $set_shared (local.get 1) (local.get 2) (local.get 3) (local.get 4) (local.get 5)))
  (func (export "do_get_property") (param $ctx i32) (param i32 i32 i32 i32) (result i32)
    (call $get_property (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
  (func (export "do_get_header") (param $ctx i32) (param i32 i32 i32 i32 i32) (result i32)
    (call $get_header (local.get 1) (local.get 2) (local.get 3) (local.get 4) (local.get 5)))
  (func (export "do_get_buffer") (param $ctx i32) (param i32 i32 i32 i32 i32) (result i32)
    (call $get_buffer (local.get 1) (local.get 2) (local.get 3) (local.get 4) (local.get 5)))
  (func (export "do_environ_sizes_get") (param $ctx i32) (param i32 i32) (result i32)
    (call $environ_sizes_get (local.get 1) (local.get 2)))
  (func (export "do_environ_get") (param $ctx i32) (param i32 i32) (result i32)
    (call $environ_get (local.get 1) (local.get 2)))
  (func (export "do_clock_time_get") (param $ctx i32) (param i32 i32) (result i32)
    (call $clock_time_get (local.get 1) (i64.const 1) (local.get 2)))
  (func (export "do_random_get") (param $ctx i32) (param i32 i32) (result i32)
    (call $random_get (local.get 1) (local.get 2)))
  (func (export "do_register_queue") (param $ctx i32) (param i32 i32 i32) (result i32)
    (call $register_queue (local.get 1) (local.get 2) (local.get 3)))
  (func (export "do_resolve_queue") (param $ctx i32) (param i32 i32 i32 i32 i32) (result i32)
    (call $resolve_queue (local.get 1) (local.get 2) (local.get 3) (local.get 4) (local.get 5)))
  (func (export "do_enqueue") (param $ctx i32) (param i32 i32 i32) (result i32)
    (call $enqueue (local.get 1) (local.get 2) (local.get 3)))
  (func (export "do_dequeue") (param $ctx i32) (param i32 i32 i32) (result i32)
    (call $dequeue (local.get 1) (local.get 2) (local.get 3)))
  (func (export "do_set_tick") (param $ctx i32) (param i32) (result i32) (call $set_tick (local.get 1)))
  (func (export "do_done") (param $ctx i32) (result i32) (call $done))
  (func (export "do_define_metric") (param $ctx i32) (param i32 i32 i32 i32) (result i32)
    (call $define_metric (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
  (func (export "do_increment_metric") (param $ctx i32) (param i32 i64) (result i32)
    (call $increment_metric (local.get 1) (local.get 2)))
  (func (export "do_record_metric") (param $ctx i32) (param i32 i64) (result i32)
    (call $record_metric (local.get 1) (local.get 2)))
  (func (export "do_get_metric") (param $ctx i32) (param i32 i32) (result i32)
    (call $get_metric (local.get 1) (local.get 2)))
  (func (export "do_reply") (param $ctx i32) (param $stream i32) (param $status i32) (result i32)
    (drop (call $set_effective (local.get $stream))) (call $reply (local.get $status)) (i32.const 0))
  (func (export "do_continue") (param $ctx i32) (param $stream i32) (param $which i32) (result i32)
    (drop (call $set_effective (local.get $stream))) (call $continue (local.get $which)))
"""


def fake_guest_module(extra_imports: str = "", extra: str = "", *, fuel: bool = True) -> CompiledModule:
    """The fake guest compiled; ``extra_imports``/``extra`` add WAT (e.g. an import to refuse)."""
    wat = f"(module {_IMPORTS}{extra_imports}{_BODY}{extra})"
    return load_module(wasmtime.wat2wasm(wat), fuel=fuel)


def guest_module(extra_imports: str) -> CompiledModule:
    """The fake guest with one more import (for import-checking tests)."""
    return fake_guest_module(extra_imports)


class FakeGuest:
    """Drives one worker of a model running the fake guest.

    ``put`` writes bytes into the test's scratch area and returns their pointer; ``call`` makes
    the guest run an export inside context ``ctx`` (so the host call it makes acts on ``ctx``).
    """

    def __init__(self, model: EnvoyModel, worker: int = 0):
        self.model = model
        self.worker: Worker = model.workers[worker]
        self._next = SCRATCH

    def knob(self, name: str, value: int) -> None:
        """Set an exported knob global (see :data:`KNOBS`)."""
        self.worker.vm.exports[name].set_value(self.worker.vm.store, wasmtime.Val.i32(value))

    def put(self, data: bytes) -> int:
        ptr = self._next
        self.worker.mem.write(self.worker.vm.store, ptr, data)
        self._next += (len(data) + 8) & ~7
        return ptr

    def slot(self, size: int = 8) -> int:
        """A zeroed scratch slot for the guest to write results into."""
        return self.put(bytes(size))

    def read(self, ptr: int, size: int) -> bytes:
        return self.worker.mem.read(self.worker.vm.store, ptr, size) or b""

    def u32(self, ptr: int) -> int:
        return struct.unpack("<I", self.read(ptr, 4))[0]

    def u64(self, ptr: int) -> int:
        return struct.unpack("<Q", self.read(ptr, 8))[0]

    def returned(self, ptr_ptr: int, size_ptr: int) -> bytes:
        """Bytes a host call handed back through (ptr_ptr, size_ptr)."""
        return self.read(self.u32(ptr_ptr), self.u32(size_ptr))

    def call(self, name: str, ctx: int, *args: int) -> int | None:
        result, _ = self.worker.callback(name, ctx, *args)
        self.model.pump()
        return result


def events(model: EnvoyModel) -> list[tuple[str, int]]:
    """The ``events`` histogram as (event, context id); ticks as ("tick", virtual ms)."""
    out = []
    for value in model.histogram("events"):
        if value >= 8_000_000_000:
            out.append(("tick", value - 8_000_000_000))
        else:
            out.append((EVENTS[value // 1000], value % 1000))
    return out


def fake_model(**kw) -> EnvoyModel:
    """A started model running the fake guest (2 workers unless ``concurrency=``)."""
    kw.setdefault("module", fake_guest_module())
    model = EnvoyModel(**kw)
    assert model.start() is True
    return model
