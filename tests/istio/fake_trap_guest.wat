;; FAKE proxy-wasm guest, for the fail-strategy tests only (never a filter).
;; ABI 0.2.1. It traps (`unreachable`) in proxy_on_request_headers when the request carries a
;; non-empty `x-fake-trap` header; otherwise it lets the request through and marks every response
;; it sees with `x-fake-guest: seen`, so a test can tell whether the plugin ran.
(module
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "x-fake-trap")
  (data (i32.const 32) "x-fake-guest")
  (data (i32.const 48) "seen")
  (func (export "proxy_abi_version_0_2_1"))
  ;; bump allocator, reset at the start of every request (nothing outlives a callback)
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (global.get $heap) (local.get $size)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $heap (i32.const 4096))
    ;; map 0 = request headers; the value's pointer lands at 64, its size at 68
    (if (i32.eqz (call $get_header (i32.const 0) (i32.const 16) (i32.const 11) (i32.const 64) (i32.const 68)))
      (then (if (i32.gt_u (i32.load (i32.const 68)) (i32.const 0)) (then unreachable))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    ;; map 2 = response headers
    (drop (call $add_header (i32.const 2) (i32.const 32) (i32.const 12) (i32.const 48) (i32.const 4)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))
