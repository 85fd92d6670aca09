"""The module check: a core module with the proxy-wasm ABI, refused otherwise."""

from __future__ import annotations

import pytest
import wasmtime

from sp_istio_cache.istio.validate import REQUIRED_EXPORTS, IstioConfigError, inspect_module, sha256_file


def test_built_filter_exports_the_abi(wasm):
    report = inspect_module(wasm)
    assert report.ok and report.missing == ()
    assert set(REQUIRED_EXPORTS) <= set(report.exports)
    assert report.sha256 == sha256_file(wasm) and len(report.sha256) == 64


def test_module_without_the_abi_lists_what_is_missing(tmp_path):
    path = tmp_path / "empty.wasm"
    path.write_bytes(wasmtime.wat2wasm('(module (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1))'))
    report = inspect_module(path)
    assert not report.ok
    assert "proxy_abi_version_0_2_1" in report.missing and "proxy_on_vm_start" not in report.missing


def test_not_a_core_module_is_refused(tmp_path):
    path = tmp_path / "component.wasm"
    # the header of a Component Model binary (version 0x0d, layer 1), which Envoy refuses
    path.write_bytes(b"\x00asm\x0d\x00\x01\x00")
    with pytest.raises(IstioConfigError, match="not a core WebAssembly module"):
        inspect_module(path)
