"""The filter builds with the pip-installed Zig, and its own Zig unit tests pass
(including the shared fingerprint vectors and the protocol golden bytes)."""

import hashlib

from sp_istio_cache.build import BuildError, build_filter, zig_test

import pytest


def test_zig_unit_tests_pass_including_shared_vectors():
    result = zig_test()
    out = result.stdout + result.stderr
    assert "fingerprint golden vectors (testdata/fingerprint_vectors.json)...OK" in out
    assert "protocol golden bytes" in out
    assert "All " in out and " tests passed." in out


def test_build_writes_module_and_sha256_file(tmp_path):
    res = build_filter(out_dir=tmp_path)
    data = res.wasm_path.read_bytes()
    assert data[:4] == b"\0asm"
    assert res.size_bytes == len(data)
    assert res.sha256 == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "sp_istio_cache.wasm.sha256").read_text() == f"{res.sha256}  sp_istio_cache.wasm\n"


def test_unknown_optimize_mode_is_refused():
    with pytest.raises(ValueError, match="ReleaseTiny"):
        build_filter(optimize="ReleaseTiny")
