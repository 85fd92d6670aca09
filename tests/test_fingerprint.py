"""The Python fingerprint against the golden vectors shared with the Zig filter."""

from __future__ import annotations

import json

import pytest

from sp_istio_cache.fingerprint import request_fingerprint
from sp_istio_cache.paths import FILTER_DIR

VECTORS = json.loads((FILTER_DIR / "testdata" / "fingerprint_vectors.json").read_text())["vectors"]


def test_vector_file_is_complete():
    names = [v["name"] for v in VECTORS]
    assert len(names) == len(set(names))
    assert len(names) >= 10
    for vector in VECTORS:
        assert len(vector["digest"]) == 64
        assert vector["digest"] == vector["digest"].lower()


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vector):
    digest = request_fingerprint(
        vector["method"],
        vector["authority"],
        vector["path"],
        vector["headers"],
        vector["vary"],
        bytes.fromhex(vector["body_hex"]),
    )
    assert digest == vector["digest"]


def test_head_and_get_share_a_key_but_post_does_not():
    get = request_fingerprint("GET", "h", "/x", {}, [])
    assert request_fingerprint("HEAD", "h", "/x", {}, []) == get
    assert request_fingerprint("POST", "h", "/x", {}, []) != get
