"""The filter builds with the pip-installed Zig, and its own Zig unit tests pass
(including the shared fingerprint vectors and the protocol golden bytes)."""

import hashlib
import re

import pytest

from sp_istio_cache.build import build_filter, metrics_doc, zig_test
from sp_istio_cache.paths import REPO_ROOT


def test_zig_unit_tests_pass_including_shared_vectors():
    result = zig_test()
    out = result.stdout + result.stderr
    m = re.search(r"run test (\d+) pass \((\d+) total\)", out)
    assert m is not None, out
    passed, total = int(m.group(1)), int(m.group(2))
    assert passed == total and total >= 100  # pure modules, config-schema agreement, golden vectors


def test_metrics_doc_is_generated_from_the_reason_enum(tmp_path):
    """docs/metrics.md is `zig build metrics-doc` output: a reason added to filter/src/reason.zig
    without regenerating the page fails here."""
    written = metrics_doc(tmp_path / "metrics.md").read_text()
    assert written == (REPO_ROOT / "docs" / "metrics.md").read_text()
    assert "| `l1_hit` | HIT |" in written and "| `hit_for_pass` | BYPASS |" in written


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
