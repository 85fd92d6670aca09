"""Fail open through the real Envoy: whatever the cache backend does, every request reaches the
upstream and gets its exact bytes, the filter counts the failure, and Envoy stays healthy.

The misbehaving backends are ``faulty_backend.FaultyBackend`` (test-only) or nothing at all (a
closed port, a cluster name Envoy does not know).
"""

from __future__ import annotations

import hashlib
import socket
import time
import urllib.parse
import urllib.request

import pytest

from sp_istio_cache.httpclient import request

from faulty_backend import POISON, FaultyBackend, closed_port

pytestmark = pytest.mark.envoy

REQUESTS = 100
DISTINCT = 10  # 100 requests over 10 paths: every path is asked 10 times
#: words in an Envoy log that mean the Wasm VM or Envoy itself broke
CRASH_WORDS = ("Caught ", "panic", "unreachable", "RuntimeError", "Backtrace", "Wasm VM failed",
               "wasm trap", "critical")


def path_of(i: int) -> str:
    n = 200 + i % DISTINCT
    return f"/bytes/{n}?seed=s{n}&cache_control=max-age%3D60"


def expected_bodies(stack) -> dict[str, bytes]:
    """Bytes per path, fetched from the upstream directly (counted once per path there)."""
    out = {}
    for i in range(DISTINCT):
        with urllib.request.urlopen(stack.upstream.url + path_of(i), timeout=10) as r:
            out[path_of(i)] = r.read()
    return out


def run_requests(stack, count: int = REQUESTS) -> None:
    """``count`` sequential requests over DISTINCT paths: all 200, exact bytes, never a HIT."""
    expected = expected_bodies(stack)
    for i in range(count):
        path = path_of(i)
        reply = request(stack.listener_url + path, timeout_s=10)
        assert (reply.status, reply.cache) == (200, "MISS"), (i, reply.status, reply.cache)
        assert reply.body == expected[path], i
        assert POISON not in reply.body
    for i in range(DISTINCT):
        assert stack.upstream_count(urllib.parse.urlsplit(path_of(i)).path) == 1 + count // DISTINCT


def wait_counter(stack, name: str, value: int, timeout_s: float = 5.0) -> dict[str, float]:
    """Poll the filter's metrics until ``name`` reaches ``value`` (store answers arrive late)."""
    deadline = time.monotonic() + timeout_s
    while True:
        f = stack.filter_stats()
        if f[name] >= value or time.monotonic() > deadline:
            return f
        time.sleep(0.02)


def assert_healthy(stack) -> None:
    """Envoy answers LIVE on /ready and its log shows no crash or VM failure."""
    with urllib.request.urlopen(stack.envoy.admin_url + "/ready", timeout=5) as r:
        assert (r.status, r.read().strip()) == (200, b"LIVE")
    assert stack.envoy.exited() is None
    log = stack.envoy.logs()
    found = [w for w in CRASH_WORDS if w in log]
    assert not found, f"Envoy log mentions {found}:\n{log[-3000:]}"


# (mode, lookup counter, stores failed?)
FAULTS = [
    ("garbage", "sp_cache.lookup_error", False),    # 200 + non-protobuf; a store answered 200 is fine
    ("truncated", "sp_cache.lookup_error", False),  # 200 + half a hit span (whose body is POISON)
    ("http500", "sp_cache.lookup_error", True),
    ("reset", "sp_cache.lookup_error", True),
]


@pytest.mark.parametrize("mode,counter,stores_fail", FAULTS, ids=[m for m, _, _ in FAULTS])
def test_faulty_backend_answers_are_a_miss(make_stack, mode, counter, stores_fail):
    with FaultyBackend(mode) as fb:
        stack = make_stack(variant="filter", backend_port=fb.port)
        run_requests(stack)
        f = wait_counter(stack, "sp_cache.store_failed", REQUESTS if stores_fail else 0)
        assert f[counter] == REQUESTS
        assert (f["sp_cache.hit"], f["sp_cache.miss"], f["sp_cache.lookup_timeout"]) == (0, 0, 0)
        # every miss is a store attempt; the faulty store answers are counted, never retried
        assert f["sp_cache.store_sent"] == REQUESTS
        assert f["sp_cache.store_failed"] == (REQUESTS if stores_fail else 0)
        assert fb.received["/v1/inject"] == REQUESTS
        assert fb.received["/v1/traces"] == REQUESTS
        assert f["sp_cache.buffered_body_bytes"] == 0
        assert_healthy(stack)


def test_backend_slower_than_the_lookup_timeout(make_stack):
    with FaultyBackend("sleep", sleep_s=0.3) as fb:
        stack = make_stack(variant="filter", backend_port=fb.port,
                           plugin_config={"lookup_timeout_ms": 50, "store_timeout_ms": 50})
        t0 = time.monotonic()
        run_requests(stack)
        per_request_ms = (time.monotonic() - t0) * 1000 / REQUESTS
        assert per_request_ms < 300, per_request_ms  # never waited for the 300 ms backend
        f = wait_counter(stack, "sp_cache.store_failed", REQUESTS)
        assert f["sp_cache.lookup_timeout"] == REQUESTS
        assert (f["sp_cache.hit"], f["sp_cache.miss"], f["sp_cache.lookup_error"]) == (0, 0, 0)
        assert (f["sp_cache.store_sent"], f["sp_cache.store_failed"]) == (REQUESTS, REQUESTS)
        assert fb.received["/v1/inject"] == REQUESTS
        assert_healthy(stack)


def test_backend_on_a_closed_port(make_stack):
    stack = make_stack(variant="filter", backend_port=closed_port())
    run_requests(stack)
    f = wait_counter(stack, "sp_cache.store_failed", REQUESTS)
    assert f["sp_cache.lookup_error"] + f["sp_cache.lookup_timeout"] == REQUESTS
    assert f["sp_cache.lookup_error"] == REQUESTS  # refused at once, far below the 200 ms timeout
    assert (f["sp_cache.hit"], f["sp_cache.miss"]) == (0, 0)
    assert (f["sp_cache.store_sent"], f["sp_cache.store_failed"]) == (REQUESTS, REQUESTS)
    assert_healthy(stack)


def test_wrong_backend_cluster_name_fails_synchronously_and_open(make_stack):
    stack = make_stack(variant="filter", plugin_config={"backend_cluster": "no_such_cluster"})
    run_requests(stack)
    f = stack.filter_stats()
    assert f["sp_cache.lookup_error"] == REQUESTS
    assert (f["sp_cache.hit"], f["sp_cache.miss"], f["sp_cache.lookup_timeout"]) == (0, 0, 0)
    # the store's http_call fails the same way: counted as failed, never sent
    assert (f["sp_cache.store_sent"], f["sp_cache.store_failed"]) == (0, REQUESTS)
    assert stack.backend_stats()["lookups"] == 0
    assert_healthy(stack)


def test_client_abort_during_a_pending_lookup_then_50_good_requests(make_stack):
    with FaultyBackend("sleep", sleep_s=0.5) as fb:
        stack = make_stack(variant="filter", backend_port=fb.port, plugin_config={"lookup_timeout_ms": 2000})
        u = urllib.parse.urlsplit(stack.listener_url)
        aborts = 5
        for i in range(aborts):
            with socket.create_connection((u.hostname, u.port), timeout=5) as s:
                s.sendall(f"GET /bytes/{700 + i} HTTP/1.1\r\nhost: abort\r\n\r\n".encode())
                deadline = time.monotonic() + 5
                while fb.received["/v1/inject"] < i + 1:  # the lookup is pending at the backend
                    assert time.monotonic() < deadline, "lookup never reached the backend"
                    time.sleep(0.005)
            # closed here, while the backend still sleeps on the lookup
        assert fb.answered["/v1/inject"] == 0
        fb.mode = "miss"  # the sleeping lookups still answer (late, for gone streams)

        expected = {}
        for i in range(50):
            path = f"/bytes/{800 + i % 5}"
            if path not in expected:
                with urllib.request.urlopen(stack.upstream.url + path, timeout=10) as r:
                    expected[path] = r.read()
            reply = request(stack.listener_url + path, timeout_s=10)
            assert (reply.status, reply.cache, reply.body) == (200, "MISS", expected[path]), i
        deadline = time.monotonic() + 5
        while fb.answered["/v1/inject"] < aborts + 50:  # every late answer has arrived
            assert time.monotonic() < deadline, fb.answered
            time.sleep(0.02)

        for i in range(aborts):
            assert stack.upstream_count(f"/bytes/{700 + i}") == 0  # an aborted request never went upstream
        f = stack.filter_stats()
        # late answers for the aborted streams are ignored: not a miss, not an error, no reply
        assert (f["sp_cache.miss"], f["sp_cache.lookup_error"], f["sp_cache.lookup_timeout"]) == (50, 0, 0)
        assert f["sp_cache.hit"] == 0
        assert f["sp_cache.buffered_body_bytes"] == 0
        assert_healthy(stack)


def test_client_abort_while_a_hit_is_on_its_way(make_stack):
    """The real backend: a stored entry, clients that vanish right after sending, then hits."""
    stack = make_stack(variant="filter")
    path = "/bytes/4096?seed=abort"
    first = request(stack.listener_url + path)
    assert (first.status, first.cache) == (200, "MISS")
    stack.wait_for_stores(1)
    u = urllib.parse.urlsplit(stack.listener_url)
    for _ in range(20):
        with socket.create_connection((u.hostname, u.port), timeout=5) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nhost: {u.netloc}\r\n\r\n".encode())
    want = hashlib.sha256(first.body).hexdigest()
    for i in range(50):
        reply = request(stack.listener_url + path)
        assert (reply.status, reply.cache, reply.sha256) == (200, "HIT", want), i
    assert stack.upstream_count("/bytes/4096") == 1
    assert stack.filter_stats()["sp_cache.store_sent"] == 1  # no local reply was stored
    assert_healthy(stack)
