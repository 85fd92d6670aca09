"""The host itself: wire formats, import checking, ABI bookkeeping."""

from __future__ import annotations

import pytest
import wasmtime

from sp_istio_cache.testhost import (
    ProxyWasmHost,
    UnsupportedImport,
    WasmResult,
    decode_pairs,
    encode_pairs,
    load_module,
)


def test_header_map_wire_format_is_exact():
    data = encode_pairs([(":path", "/a"), ("x", "")])
    assert data == (b"\x02\x00\x00\x00" b"\x05\x00\x00\x00\x02\x00\x00\x00" b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    b":path\x00/a\x00x\x00\x00")
    assert decode_pairs(data) == [(b":path", b"/a"), (b"x", b"")]
    with pytest.raises(ValueError):
        decode_pairs(data[:-1])


def _wat_module(imports: str):
    wat = f"""(module {imports}
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024))"""
    engine = wasmtime.Engine(_fuel())
    return engine, wasmtime.Module(engine, wat)


def _fuel():
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    return cfg


def test_unknown_import_fails_instantiation_naming_it():
    module = _wat_module('(import "env" "proxy_teleport" (func (param i32) (result i32)))')
    with pytest.raises(UnsupportedImport, match=r"env\.proxy_teleport"):
        ProxyWasmHost(module=module)


def test_import_with_wrong_signature_is_refused():
    module = _wat_module('(import "env" "proxy_log" (func (param i32) (result i32)))')
    with pytest.raises(UnsupportedImport, match=r"env\.proxy_log is imported as"):
        ProxyWasmHost(module=module)


def test_filter_imports_are_all_provided(filter_wasm):
    engine, module = load_module(filter_wasm)
    names = {(i.module, i.name) for i in module.imports}
    assert ("env", "proxy_http_call") in names
    host = ProxyWasmHost(module=(engine, module))  # would raise UnsupportedImport otherwise
    assert host.memory_bytes > 0


def test_metrics_carry_type_bits_and_counters_refuse_non_positive(host):
    ids = {name for name in host.metrics}
    assert "sp_cache.hit" in ids and "sp_cache.buffered_body_bytes" in ids
    assert {m.type for m in host._metrics.values()} == {0, 1}
    assert all(mid & 3 == m.type for mid, m in host._metrics.items())
    hit_id = next(mid for mid, m in host._metrics.items() if m.name == "sp_cache.hit")
    assert host._h_increment_metric(None, hit_id, 0) == WasmResult.BAD_ARGUMENT
    assert host._h_increment_metric(None, 9999, 1) == WasmResult.NOT_FOUND


def test_random_get_is_deterministic_per_seed(make_host):
    from ._support import req

    def first_trace(seed):
        h = make_host(seed=seed)
        s = h.new_stream()
        s.send_request_headers(req(), end_of_stream=True)
        return [v for k, v in s.request_headers if k == "traceparent"]

    assert first_trace(1) == first_trace(1)
    assert first_trace(1) != first_trace(2)
