;; FAKE proxy-wasm guest, for the secret-environment test only (never a filter).
;; ABI 0.2.1. On every response it adds `x-fake-environ`: the VM's whole WASI environment
;; (environ_get), entries joined with ';'. A test then sees exactly which variables Envoy's
;; vm_config.environment_variables let the VM read.
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 32768))
  (data (i32.const 16) "x-fake-environ")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (global.get $heap) (local.get $size)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (local $size i32) (local $i i32)
    (global.set $heap (i32.const 32768))
    ;; count at 64, buffer size at 68; pointers at 256 (up to 64 entries), strings at 1024
    (drop (call $environ_sizes_get (i32.const 64) (i32.const 68)))
    (local.set $size (i32.load (i32.const 68)))
    (if (i32.gt_u (local.get $size) (i32.const 30000)) (then (local.set $size (i32.const 0))))
    (if (i32.gt_u (i32.load (i32.const 64)) (i32.const 64)) (then (local.set $size (i32.const 0))))
    (if (i32.gt_u (local.get $size) (i32.const 0))
      (then
        (drop (call $environ_get (i32.const 256) (i32.const 1024)))
        ;; NUL terminators -> ';'
        (local.set $i (i32.const 0))
        (block $done
          (loop $next
            (br_if $done (i32.ge_u (local.get $i) (local.get $size)))
            (if (i32.eqz (i32.load8_u (i32.add (i32.const 1024) (local.get $i))))
              (then (i32.store8 (i32.add (i32.const 1024) (local.get $i)) (i32.const 59))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next)))
        ;; drop the trailing separator
        (local.set $size (i32.sub (local.get $size) (i32.const 1)))))
    (drop (call $add_header (i32.const 2) (i32.const 16) (i32.const 14) (i32.const 1024) (local.get $size)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))
