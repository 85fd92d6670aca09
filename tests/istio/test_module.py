"""The module check: a core module with the proxy-wasm ABI, refused otherwise; and its identity:
the module deployed is the module built (sha256 against the build record, issue 14)."""

from __future__ import annotations

import hashlib

import pytest
import wasmtime
from typer.testing import CliRunner

from sp_istio_cache.cli import app
from sp_istio_cache.istio.module import read_build_record, resolve_digest, verify_module
from sp_istio_cache.istio.validate import REQUIRED_EXPORTS, IstioConfigError, inspect_module, sha256_file

from .conftest import write_module

#: a valid custom section ("evil!"): the module still loads, but it is not the one that was built
EXTRA_SECTION = b"\x00\x06\x05evil!"


def test_built_filter_exports_the_abi(wasm):
    report = inspect_module(wasm)
    assert report.ok and report.missing == ()
    assert set(REQUIRED_EXPORTS) <= set(report.exports)
    assert report.sha256 == sha256_file(wasm) and len(report.sha256) == 64
    assert verify_module(wasm) == report.sha256  # the build wrote its record


def test_module_without_the_abi_lists_what_is_missing(tmp_path):
    path = tmp_path / "empty.wasm"
    path.write_bytes(wasmtime.wat2wasm('(module (func (export "proxy_on_vm_start") (param i32 i32) (result i32) '
                                       "i32.const 1))"))
    report = inspect_module(path)
    assert not report.ok
    assert "proxy_abi_version_0_2_1" in report.missing and "proxy_on_vm_start" not in report.missing


def test_not_a_core_module_is_refused(tmp_path):
    path = tmp_path / "component.wasm"
    # the header of a Component Model binary (version 0x0d, layer 1), which Envoy refuses
    path.write_bytes(b"\x00asm\x0d\x00\x01\x00")
    with pytest.raises(IstioConfigError, match="not a core WebAssembly module"):
        inspect_module(path)


def test_a_tampered_module_is_refused_with_both_digests(module, module_sha):
    module.write_bytes(module.read_bytes() + EXTRA_SECTION)
    wasmtime.Module(wasmtime.Engine(), module.read_bytes())  # still a loadable module
    tampered = hashlib.sha256(module.read_bytes()).hexdigest()
    with pytest.raises(IstioConfigError) as info:
        verify_module(module)
    assert str(info.value) == (f"module: {module} has sha256 {tampered}, but its build record {module}.sha256 says "
                               f"{module_sha}: the file changed after it was built; rebuild it (`sp-istio-cache "
                               "build`) and never deploy this one")


@pytest.mark.parametrize("record,said", [(None, "has no build record"),
                                         ("abc  sp_istio_cache.wasm\n", "is not a SHA-256"),
                                         ("f" * 64 + "  other.wasm\n", "is not '<sha256>  sp_istio_cache.wasm'")])
def test_missing_or_malformed_records_are_refused(module, record, said):
    path = module.with_name(module.name + ".sha256")
    if record is None:
        path.unlink()
    else:
        path.write_text(record)
    with pytest.raises(IstioConfigError, match=said):
        read_build_record(module)


def test_resolve_digest_rules(module, module_sha):
    assert resolve_digest("file:///m.wasm", None, module) == module_sha
    assert resolve_digest("file:///m.wasm", module_sha, module) == module_sha
    assert resolve_digest("http://w/m.wasm", module_sha, module) == module_sha
    assert resolve_digest("oci://r/m:1", "a" * 64, None) == "a" * 64  # no local file can confirm an image digest
    with pytest.raises(IstioConfigError, match=r"^sha256: required for a http:// module URL"):
        resolve_digest("http://w/m.wasm", None, module)
    with pytest.raises(IstioConfigError, match=rf"^sha256: {'b' * 64} is not the module's digest"):
        resolve_digest("file:///m.wasm", "b" * 64, module)


@pytest.fixture
def real_copy(tmp_path, wasm):
    """The built filter and its record, copied (so tampering never touches filter/dist)."""
    return write_module(tmp_path / "copy" / "sp_istio_cache.wasm", wasm.read_bytes())


def test_cli_validate_refuses_a_tampered_module_before_saying_ready(real_copy):
    real_copy.write_bytes(real_copy.read_bytes() + EXTRA_SECTION)
    res = CliRunner().invoke(app, ["validate", str(real_copy)])
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "but its build record" in text and "never deploy this one" in text
    assert "ready to deploy" not in text


def test_cli_render_refuses_a_digest_that_is_not_the_modules(tmp_path, real_copy, no_tuning_output):
    res = CliRunner().invoke(app, ["istio", "render", "--out", str(tmp_path / "out"), "--wasm", str(real_copy),
                                   "--sha256", "c" * 64, "--schema-defaults", "--no-envoy-check"])
    assert res.exit_code == 1
    assert f"sha256: {'c' * 64} is not the module's digest" in " ".join(res.output.split())
    assert not (tmp_path / "out").exists()


def test_cli_render_refuses_a_module_without_record(tmp_path, real_copy, no_tuning_output):
    real_copy.with_name(real_copy.name + ".sha256").unlink()
    res = CliRunner().invoke(app, ["istio", "render", "--out", str(tmp_path / "out"), "--wasm", str(real_copy),
                                   "--schema-defaults", "--no-envoy-check"])
    assert res.exit_code == 1
    assert "has no build record" in " ".join(res.output.split())
