"""The Python fingerprint (protocol version 2) against the vectors shared with the Zig filter."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sp_istio_cache.fingerprint import VERSION_TAG, request_fingerprint
from sp_istio_cache.paths import FILTER_DIR

DOC = json.loads((FILTER_DIR / "testdata" / "fingerprint_vectors.json").read_text())
VECTORS = DOC["vectors"]
BY_NAME = {v["name"]: v["digest"] for v in VECTORS}


def test_vector_file_is_complete():
    assert DOC["version_tag"] == VERSION_TAG.decode() == "sp-istio-cache/2"
    assert len(BY_NAME) == len(VECTORS) >= 12
    for vector in VECTORS:
        assert len(vector["digest"]) == 64
        assert vector["digest"] == vector["digest"].lower()
    assert any(v["body_repeat"] * len(v["body_hex"]) // 2 > 65536 for v in VECTORS)
    non_utf8 = [v for v in VECTORS if not _is_utf8(bytes.fromhex(v["path_hex"]))]
    assert non_utf8, "a vector with a non-UTF-8 path"


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vector):
    body = bytes.fromhex(vector["body_hex"]) * vector["body_repeat"]
    digest = request_fingerprint(
        vector["method"],
        vector["scheme"],
        bytes.fromhex(vector["authority_hex"]),
        bytes.fromhex(vector["path_hex"]),
        body,
    )
    assert digest == vector["digest"]


def test_vectors_show_the_rules():
    assert BY_NAME["head_keyed_as_get"] == BY_NAME["get_minimal"] == BY_NAME["scheme_upper_case"]
    assert BY_NAME["authority_upper_case_with_port"] == BY_NAME["authority_lower_case_with_port"]
    assert BY_NAME["https_is_another_key"] != BY_NAME["authority_lower_case_with_port"]
    assert BY_NAME["method_case_kept"] != BY_NAME["get_minimal"]
    assert BY_NAME["path_case_kept"] != BY_NAME["get_minimal"]
    assert BY_NAME["post_empty_body"] != BY_NAME["post_with_binary_body"]


def test_only_ascii_letters_are_lowered():
    # "É" (C3 89) is not lowered to "é" (C3 A9): the filter lowers ASCII only
    assert request_fingerprint("GET", "http", "\u00c9x", "/") == request_fingerprint("GET", "http", "\u00c9X", "/")
    assert request_fingerprint("GET", "http", "\u00c9x", "/") != request_fingerprint("GET", "http", "\u00e9x", "/")


@given(
    method=st.sampled_from(["GET", "POST", "PUT"]),
    authority=st.text(max_size=20),
    path=st.text(max_size=40),
    body=st.binary(max_size=64),
)
def test_str_is_its_utf8_bytes_and_ascii_case_does_not_matter(method, authority, path, body):
    key = request_fingerprint(method, "http", authority, path, body)
    assert key == request_fingerprint(method, "HTTP", authority.encode(), path.encode(), body)
    assert key == request_fingerprint(method, "http", authority.encode().upper(), path, body)


@given(a=st.binary(max_size=8), b=st.binary(min_size=1, max_size=8), c=st.binary(max_size=8))
def test_field_boundaries_never_collide(a, b, c):
    # moving bytes from the path to the authority changes the key (length prefixes)
    a, b = a.lower(), b.lower()
    assert request_fingerprint("GET", "http", a, b + c) != request_fingerprint("GET", "http", a + b, c)


def test_wrong_argument_types_are_named():
    with pytest.raises(TypeError, match="path must be str or bytes, got dict"):
        request_fingerprint("GET", "http", "h", {})  # headers where version 1 took them
    with pytest.raises(TypeError, match="body must be bytes, got str"):
        request_fingerprint("GET", "http", "h", "/", "text")
