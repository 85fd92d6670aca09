"""Oversize bodies through the real Envoy with its default buffer limit (1 MiB per connection).

At 1 MiB - 1, 1 MiB, 1 MiB + 1 and 8 MiB, with Content-Length and chunked, the client gets the
status and every byte from the upstream (SHA-256 equal), Envoy never answers 413/500 of the
filter's making, the filter counts what it could not cache, and nothing oversize is stored.
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

from sp_istio_cache.httpclient import Reply, request

pytestmark = pytest.mark.envoy

MiB = 1 << 20
SIZES = [MiB - 1, MiB, MiB + 1, 8 * MiB]
MAX_RESPONSE = 1048576  # max_response_body_bytes set at Envoy's default connection buffer limit
#: filter.zig envoy_hold_limit: the most request body the filter asks Envoy to hold
HOLD_LIMIT = MiB - 64 * 1024


def direct(stack, path: str) -> bytes:
    """The upstream's bytes for ``path``, fetched from the upstream itself (not through Envoy)."""
    with urllib.request.urlopen(stack.upstream.url + path, timeout=30) as r:
        assert r.status == 200
        return r.read()


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


def settle(stack, timeout_s: float = 5.0) -> None:
    """Wait until every store the filter sent has been answered by the backend."""
    deadline = time.monotonic() + timeout_s
    while True:
        f = stack.filter_stats()
        if f["sp_cache.store_sent"] <= stack.backend_stats()["stores"] + f["sp_cache.store_failed"]:
            return
        assert time.monotonic() < deadline, f"stores still in flight: {f}"
        time.sleep(0.02)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_responses_arrive_whole_and_only_up_to_the_limit_is_stored(make_stack, chunked):
    # per_connection_buffer_limit_bytes None: Envoy's 1 MiB; the filter's limit raised to match it
    stack = make_stack(variant="filter", plugin_config={"max_response_body_bytes": MAX_RESPONSE})
    query = "?chunked=1" if chunked else ""
    stored = 0
    for n in SIZES:
        path = f"/bytes/{n}{query}"
        expected = direct(stack, path)
        assert len(expected) == n
        want = hashlib.sha256(expected).hexdigest()

        first = request(stack.listener_url + path, timeout_s=60)
        assert (first.status, first.cache, len(first.body), first.sha256) == (200, "MISS", n, want)
        if chunked:
            assert first.header("content-length") is None
            assert first.header("transfer-encoding") == "chunked"
        else:
            assert first.header("content-length") == str(n)
        if n <= MAX_RESPONSE:  # filter.zig: skipped only when the size is > max_response_body_bytes
            stored += 1
            stack.wait_for_stores(stored)

        second = request(stack.listener_url + path, timeout_s=60)
        assert (second.status, len(second.body), second.sha256) == (200, n, want)
        if n <= MAX_RESPONSE:
            assert second.cache == "HIT"
            assert second.header("content-length") == str(n)  # the bytes sent, also for a chunked original
            assert stack.upstream_count(f"/bytes/{n}") == 2  # direct fetch + the miss
        else:
            assert second.cache == "MISS"
            assert stack.upstream_count(f"/bytes/{n}") == 3

    settle(stack)
    f = stack.filter_stats()
    # 1 MiB + 1 and 8 MiB, twice each (both requests missed); 1 MiB - 1 and 1 MiB stored once each
    assert f["sp_cache.store_skipped_response_too_large"] == 4
    assert (f["sp_cache.miss"], f["sp_cache.hit"], f["sp_cache.store_sent"]) == (6, 2, 2)
    assert (f["sp_cache.store_failed"], f["sp_cache.store_dropped"], f["sp_cache.lookup_error"]) == (0, 0, 0)
    assert f["sp_cache.buffered_body_bytes"] == 0
    backend = stack.backend_stats()
    assert (backend["entries"], backend["stores"], backend["rejected"]) == (2, 2, 0)
    assert backend["bytes"] >= (MiB - 1) + MiB


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_request_bodies_stream_to_the_upstream_byte_exact(make_stack, chunked):
    # max_request_body_bytes 1 MiB: the setting under which a naive filter would make Envoy 413
    stack = make_stack(variant="filter", plugin_config={
        "lookup_methods": ["GET", "HEAD", "POST"], "max_request_body_bytes": MiB})
    for i, n in enumerate(SIZES):
        path = f"/bytes/{1000 + i}"
        expected = direct(stack, path)
        body = hashlib.sha256(str(n).encode()).digest() * (n // 32) + os.urandom(n % 32)
        before = upstream_body_bytes(stack)
        reply = post(stack.listener_url + path, body, chunked=chunked)
        assert (reply.status, reply.cache, reply.body) == (200, "BYPASS", expected), (n, reply.status)
        assert upstream_body_bytes(stack) - before == n
        assert stack.upstream_count(path) == 2  # direct fetch + this POST

    f = stack.filter_stats()
    assert f["sp_cache.bypass_request_too_large"] == 4
    assert (f["sp_cache.miss"], f["sp_cache.hit"], f["sp_cache.lookup_error"]) == (0, 0, 0)
    assert f["sp_cache.store_skipped_not_looked_up"] == 4
    assert f["sp_cache.buffered_body_bytes"] == 0
    backend = stack.backend_stats()
    assert (backend["lookups"], backend["entries"], backend["stores"]) == (0, 0, 0)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_request_body_at_the_hold_limit_is_looked_up_and_one_byte_more_is_not(make_stack, chunked):
    """The filter holds at most 960 KiB (filter.zig envoy_hold_limit) even when configured for more."""
    stack = make_stack(variant="filter", plugin_config={
        "lookup_methods": ["GET", "HEAD", "POST"], "max_request_body_bytes": MiB})
    path = "/bytes/2000"
    expected = direct(stack, path)
    at_limit = os.urandom(HOLD_LIMIT)

    before = upstream_body_bytes(stack)
    first = post(stack.listener_url + path, at_limit, chunked=chunked)
    assert (first.status, first.cache, first.body) == (200, "MISS", expected)
    assert upstream_body_bytes(stack) - before == HOLD_LIMIT
    stack.wait_for_stores(1)
    second = post(stack.listener_url + path, at_limit, chunked=chunked)
    assert (second.status, second.cache, second.body) == (200, "HIT", expected)

    over = post(stack.listener_url + path, at_limit + b"x", chunked=chunked)
    assert (over.status, over.cache, over.body) == (200, "BYPASS", expected)
    assert upstream_body_bytes(stack) - before == 2 * HOLD_LIMIT + 1
    assert stack.upstream_count(path) == 3  # direct, the miss, the oversize one

    f = stack.filter_stats()
    assert (f["sp_cache.miss"], f["sp_cache.hit"], f["sp_cache.bypass_request_too_large"]) == (1, 1, 1)
    assert f["sp_cache.buffered_body_bytes"] == 0
    assert stack.backend_stats()["entries"] == 1


def test_request_body_limit_is_the_configured_one_below_the_hold_limit(make_stack):
    """Default max_request_body_bytes (65536): exactly 64 KiB is looked up, 64 KiB + 1 bypasses."""
    stack = make_stack(variant="filter", plugin_config={"lookup_methods": ["GET", "HEAD", "POST"]})
    path = "/bytes/3000"
    expected = direct(stack, path)
    for n, outcome in ((65536, "MISS"), (65537, "BYPASS")):
        for chunked in (False, True):
            reply = post(stack.listener_url + path, os.urandom(n), chunked=chunked)
            assert (reply.status, reply.cache, reply.body) == (200, outcome, expected), (n, chunked)
    f = stack.filter_stats()
    assert (f["sp_cache.miss"], f["sp_cache.bypass_request_too_large"]) == (2, 2)


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
def test_request_body_burst_after_a_held_piece(make_stack, variant):
    """1000 bytes (held by the filter), then 2 MiB at once: one read lands past Envoy's 1 MiB
    connection buffer. When the filter held bodies with StopIterationAndBuffer Envoy answered 413
    here every time; with StopIterationAndWatermark it pushes back on the client and the filter
    lets the body stream (BYPASS request_too_large)."""
    stack = make_stack(variant=variant, plugin_config={"lookup_methods": ["GET", "HEAD", "POST"]}
                       if variant == "filter" else {})
    head = raw_post_in_two_pieces(stack.listener_url + "/bytes/10", os.urandom(2 * MiB), first=1000)
    status_line = head.split(b"\r\n")[0]
    assert status_line == b"HTTP/1.1 200 OK", head
    if variant == "filter":
        assert b"x-sp-cache: BYPASS" in head
        assert stack.filter_stats()["sp_cache.bypass_request_too_large"] == 1
