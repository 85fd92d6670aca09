"""Oversize bodies through the real Envoy with its default buffer limit (1 MiB per connection).

At 1 MiB - 1, 1 MiB, 1 MiB + 1 and 8 MiB, with Content-Length and chunked, in both directions, the
client gets the status and every byte from the upstream (SHA-256 equal), Envoy never answers
413/500 of the filter's making, the filter counts what it could not cache, and nothing oversize is
stored. One stack per configuration for the module; distinct paths, counted as deltas.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from e2e_support import Delta, fetch, query, settle

from sp_istio_cache import pluginconfig
from sp_istio_cache.httpclient import Reply
from sp_istio_cache.upstream.payload import generate

pytestmark = pytest.mark.envoy

MiB = 1 << 20
SIZES = [MiB - 1, MiB, MiB + 1, 8 * MiB]
MAX_RESPONSE = 1048576  # max_response_body_bytes set at Envoy's default connection buffer limit
#: the largest max_request_body_bytes (filter/config.schema.json): below Envoy's 1 MiB buffer
HOLD_LIMIT = pluginconfig.bound("max_request_body_bytes")
POST_LOOKUPS = ["GET", "HEAD", "POST"]


def post(url: str, body: bytes, *, chunked: bool, chunk: int = 64 * 1024) -> Reply:
    """POST ``body`` with Content-Length, or chunked from a generator (no Content-Length)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        path = u.path + ("?" + u.query if u.query else "")
        headers = {"content-type": "application/octet-stream"}
        if chunked:
            def gen() -> Iterator[bytes]:
                for i in range(0, len(body), chunk):
                    yield body[i:i + chunk]
            conn.request("POST", path, body=gen(), headers=headers, encode_chunked=True)
        else:
            conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        return Reply(r.status, [(k.lower(), v) for k, v in r.getheaders()], r.read())
    finally:
        conn.close()


def upstream_body_bytes(stack) -> int:
    return int(stack.upstream.get_json("/__stats")["request_body_bytes"])


@pytest.fixture(scope="module")
def response_stack(module_stacks):
    # per_connection_buffer_limit_bytes None: Envoy's 1 MiB; the filter's limit raised to match it
    return module_stacks(plugin_config={"max_response_body_bytes": MAX_RESPONSE})


@pytest.fixture(scope="module")
def post_stack(module_stacks):
    """POST looked up (keyed with its body), request bodies held up to the largest limit."""
    return module_stacks(plugin_config={"lookup_methods": POST_LOOKUPS, "max_request_body_bytes": HOLD_LIMIT})


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_responses_arrive_whole_and_only_up_to_the_limit_is_stored(response_stack, chunked):
    stack = response_stack
    d = Delta(stack)
    for n in SIZES:
        seed = f"large-{int(chunked)}"
        path = f"/bytes/{n}?" + query(("seed", seed), ("cache_control", "max-age=60"), ("chunked", str(int(chunked))))
        want = hashlib.sha256(generate(n, seed)).hexdigest()

        first = fetch(stack, path, timeout_s=60)
        assert (first.status, first.cache, len(first.body), first.sha256) == (200, "MISS", n, want)
        if chunked:
            assert (first.header("content-length"), first.header("transfer-encoding")) == (None, "chunked")
        else:
            assert first.header("content-length") == str(n)
        settle(stack)
        second = fetch(stack, path, timeout_s=60)
        assert (second.status, len(second.body), second.sha256) == (200, n, want)
        if n <= MAX_RESPONSE:  # store.zig: skipped only when the size is > max_response_body_bytes
            assert second.cache == "HIT"
            assert second.header("content-length") == str(n)  # the bytes sent, also for a chunked original
            assert d.upstream(f"/bytes/{n}") == 1
        else:
            assert second.cache == "BYPASS"  # hit-for-pass: too large is the resource's own reason
            assert d.upstream(f"/bytes/{n}") == 2

    settle(stack)
    # 1 MiB + 1 and 8 MiB, twice each; 1 MiB - 1 and 1 MiB stored once each
    assert d.filter("store_skipped_too_large") == 4
    assert (d.filter("store_sent"), d.filter("store_failed"), d.filter("store_dropped")) == (2, 0, 0)
    assert d.reasons() == {"not_found": 4, "l1_hit": 2, "hit_for_pass": 2}
    assert (d.backend("stores"), d.backend("rejected")) == (2, 0)
    assert d.backend("stored_bytes") >= (MiB - 1) + MiB
    assert stack.filter_stats()["sp_cache.buffered_body_bytes"] == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_request_bodies_stream_to_the_upstream_byte_exact(post_stack, chunked):
    stack = post_stack
    d = Delta(stack)
    for i, n in enumerate(SIZES):
        path = f"/bytes/{1000 + i}?seed=req-{int(chunked)}"
        body = hashlib.sha256(str(n).encode()).digest() * (n // 32) + os.urandom(n % 32)
        before = upstream_body_bytes(stack)
        reply = post(stack.listener_url + path, body, chunked=chunked)
        assert (reply.status, reply.cache, reply.body) == (200, "BYPASS", generate(1000 + i, f"req-{int(chunked)}")), n
        assert upstream_body_bytes(stack) - before == n
    assert sum(d.upstream(f"/bytes/{1000 + i}", "POST") for i in range(len(SIZES))) == len(SIZES)
    settle(stack)
    assert d.reasons() == {"bypass_request_too_large": 4}
    assert (d.backend("lookups"), d.backend("stores")) == (0, 0)
    assert stack.filter_stats()["sp_cache.buffered_body_bytes"] == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_request_body_at_the_hold_limit_is_looked_up_and_one_byte_more_is_not(post_stack, chunked):
    stack = post_stack
    path = f"/bytes/2000?cache_control=max-age%3D60&seed=hold-{int(chunked)}"
    expected = generate(2000, f"hold-{int(chunked)}")
    at_limit = os.urandom(HOLD_LIMIT)
    d = Delta(stack)
    before = upstream_body_bytes(stack)
    first = post(stack.listener_url + path, at_limit, chunked=chunked)
    assert (first.status, first.cache, first.body) == (200, "MISS", expected)
    assert upstream_body_bytes(stack) - before == HOLD_LIMIT
    settle(stack)
    second = post(stack.listener_url + path, at_limit, chunked=chunked)
    assert (second.status, second.cache, second.body) == (200, "HIT", expected)

    over = post(stack.listener_url + path, at_limit + b"x", chunked=chunked)
    assert (over.status, over.cache, over.body) == (200, "BYPASS", expected)
    assert upstream_body_bytes(stack) - before == 2 * HOLD_LIMIT + 1
    assert d.upstream("/bytes/2000", "POST") == 2  # the miss and the oversize one
    assert d.reasons() == {"not_found": 1, "l1_hit": 1, "bypass_request_too_large": 1}
    assert stack.filter_stats()["sp_cache.buffered_body_bytes"] == 0


def test_the_request_body_limit_is_the_configured_one_below_the_hold_limit(module_stacks):
    """Default max_request_body_bytes (65536): exactly 64 KiB is looked up, 64 KiB + 1 bypasses."""
    stack = module_stacks(plugin_config={"lookup_methods": POST_LOOKUPS})
    path = "/bytes/3000"
    d = Delta(stack)
    for n, outcome in ((65536, "MISS"), (65537, "BYPASS")):
        for chunked in (False, True):
            reply = post(stack.listener_url + path, os.urandom(n), chunked=chunked)
            assert (reply.status, reply.cache, reply.body) == (200, outcome, generate(3000, "0")), (n, chunked)
    assert d.reasons() == {"not_found": 2, "bypass_request_too_large": 2}
    assert d.upstream("/bytes/3000", "POST") == 4


def raw_post_in_two_pieces(url: str, body: bytes, first: int, pause_s: float = 0.2) -> bytes:
    """POST with Content-Length: ``first`` bytes of the body, a pause (the filter sees them and
    holds them), then the rest in one burst. Returns the response head (status line + headers)."""
    u = urllib.parse.urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as c:
        c.sendall(f"POST {u.path} HTTP/1.1\r\nhost: burst\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                  + body[:first])
        time.sleep(pause_s)
        try:
            c.sendall(body[first:])
        except ConnectionError:
            pass  # Envoy answered early and closed: the answer is still readable
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = c.recv(65536)
            if not chunk:
                break
            head += chunk
    return head.split(b"\r\n\r\n")[0]


@pytest.mark.parametrize("variant", ["baseline", "filter"])
def test_a_request_body_burst_after_a_held_piece(module_stacks, post_stack, variant):
    """1000 bytes (held by the filter), then 2 MiB at once: one read lands past Envoy's 1 MiB
    connection buffer. When the filter held bodies with StopIterationAndBuffer Envoy answered 413
    here every time; with StopIterationAndWatermark it pushes back on the client and the filter
    lets the body stream (BYPASS request_too_large)."""
    stack = post_stack if variant == "filter" else module_stacks(variant="baseline")
    d = Delta(stack, wait=False)
    head = raw_post_in_two_pieces(stack.listener_url + "/bytes/10", os.urandom(2 * MiB), first=1000)
    status_line = head.split(b"\r\n")[0]
    assert status_line == b"HTTP/1.1 200 OK", head
    if variant == "filter":
        assert b"x-sp-cache: BYPASS" in head
        assert d.reasons() == {"bypass_request_too_large": 1}
