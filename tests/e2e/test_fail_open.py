"""Fail open through the real Envoy: whatever the cache backend does, every request reaches the
upstream and gets its exact bytes, the filter counts the failure by name, and Envoy stays healthy.

The misbehaving backends are ``faulty_backend.FaultyBackend`` (test-only; one per module, its mode
switched per test) or nothing at all (a closed port, a cluster name Envoy does not know). The L1
is off on the faulty stacks (``l1_max_bytes: 0``) so that every one of the 100 requests meets the
backend; the closed-port stack keeps it, to show that the L1 serves while the backend is down.
Measured on Envoy 1.40: a refused callout is answered ``503``, a timeout ``504``, a reset with no
headers at all.
"""

from __future__ import annotations

import hashlib
import socket
import time
import urllib.parse
import urllib.request

import pytest
from e2e_support import Delta, fetch
from faulty_backend import POISON, FaultyBackend, closed_port

from sp_istio_cache.httpclient import request
from sp_istio_cache.upstream.payload import generate

pytestmark = pytest.mark.envoy

REQUESTS = 100
DISTINCT = 10  # 100 requests over 10 paths: every path is asked 10 times
NO_L1 = {"l1_max_bytes": 0, "lookup_timeout_ms": 100, "store_timeout_ms": 100}
#: words in an Envoy log that mean the Wasm VM or Envoy itself broke
CRASH_WORDS = ("Caught ", "panic", "unreachable", "RuntimeError", "Backtrace", "Wasm VM failed",
               "wasm trap", "critical")


def path_of(i: int, tag: str) -> str:
    n = 200 + i % DISTINCT
    return f"/bytes/{n}?seed={tag}{n}&cache_control=max-age%3D60"


def run_requests(stack, tag: str, count: int = REQUESTS) -> list[str]:
    """``count`` sequential requests over DISTINCT paths: all 200 with the origin's exact bytes.
    Returns the ``x-sp-cache`` values in order."""
    outcomes = []
    for i in range(count):
        path = path_of(i, tag)
        reply = fetch(stack, path, timeout_s=10)
        n = 200 + i % DISTINCT
        assert (reply.status, reply.body) == (200, generate(n, f"{tag}{n}")), (i, reply.status, reply.cache)
        assert POISON not in reply.body
        outcomes.append(reply.cache)
    return outcomes


def wait_counter(stack, name: str, value: int, d: Delta, timeout_s: float = 5.0) -> None:
    """Poll until the filter's counter ``name`` moved by ``value`` (store answers arrive late)."""
    deadline = time.monotonic() + timeout_s
    while d.filter(name) < value and time.monotonic() < deadline:
        time.sleep(0.02)


def assert_healthy(stack) -> None:
    """Envoy answers LIVE on /ready, nothing buffered is left, and its log shows no crash."""
    with urllib.request.urlopen(stack.envoy.admin_url + "/ready", timeout=5) as r:
        assert (r.status, r.read().strip()) == (200, b"LIVE")
    assert stack.envoy.exited() is None
    assert stack.filter_stats()["sp_cache.buffered_body_bytes"] == 0
    log = stack.envoy.logs()
    found = [w for w in CRASH_WORDS if w in log]
    assert not found, f"Envoy log mentions {found}:\n{log[-3000:]}"


@pytest.fixture(scope="module")
def faulty():
    with FaultyBackend("miss", sleep_s=0.4) as fb:
        yield fb


@pytest.fixture(scope="module")
def faulty_stack(module_stacks, faulty):
    return module_stacks(backend_port=faulty.port, plugin_config=NO_L1)


# (mode, reason of every lookup, stores fail?). An answer that is not a decodable TracesData is a
# lookup_error by docs/metrics.md ("undecodable answer"), never entry_rejected: a broken backend
# must not look like forged entries on a dashboard.
FAULTS = [
    ("garbage", "lookup_error", False),    # 200 + not a TracesData; the store answered 200 is fine
    ("truncated", "lookup_error", False),  # 200 + half a lookup answer (whose body is POISON)
    ("http500", "lookup_error", True),
    ("reset", "lookup_error", True),
    ("sleep", "lookup_timeout", True),     # 400 ms, past lookup_timeout_ms and store_timeout_ms
]


@pytest.mark.parametrize("mode,reason,stores_fail", FAULTS, ids=[m for m, _, _ in FAULTS])
def test_a_faulty_backend_answer_is_a_miss(faulty_stack, faulty, mode, reason, stores_fail):
    faulty.mode = mode
    faulty.received.clear()
    d = Delta(faulty_stack, wait=False)
    t0 = time.monotonic()
    outcomes = run_requests(faulty_stack, mode)
    if mode == "sleep":  # never waited for the 400 ms backend
        assert (time.monotonic() - t0) * 1000 / REQUESTS < 400
    assert set(outcomes) == {"MISS"}
    wait_counter(faulty_stack, "store_failed", REQUESTS if stores_fail else 0, d)
    assert d.reasons() == {reason: REQUESTS}
    # every miss is a store attempt; the faulty answers are counted, never retried
    assert (d.filter("store_sent"), d.filter("store_failed")) == (REQUESTS, REQUESTS if stores_fail else 0)
    assert (faulty.received["/v1/inject"], faulty.received["/v1/traces"]) == (REQUESTS, REQUESTS)
    for i in range(DISTINCT):
        assert d.upstream(urllib.parse.urlsplit(path_of(i, mode)).path) == REQUESTS // DISTINCT
    assert_healthy(faulty_stack)


def test_a_backend_on_a_closed_port_fails_open_and_the_l1_keeps_serving(module_stacks):
    stack = module_stacks(backend_port=closed_port())
    d = Delta(stack, wait=False)
    outcomes = run_requests(stack, "closed")
    assert outcomes[:DISTINCT] == ["MISS"] * DISTINCT  # refused at once: 503, far below the timeout
    assert outcomes[DISTINCT:] == ["HIT"] * (REQUESTS - DISTINCT)  # our own stores filled the L1
    wait_counter(stack, "store_failed", DISTINCT, d)
    assert d.reasons() == {"lookup_error": DISTINCT, "l1_hit": REQUESTS - DISTINCT}
    assert (d.filter("store_sent"), d.filter("store_failed")) == (DISTINCT, DISTINCT)
    assert_healthy(stack)


def test_a_wrong_backend_cluster_name_fails_synchronously_and_open(module_stacks):
    stack = module_stacks(plugin_config={**NO_L1, "backend_cluster": "no_such_cluster"})
    d = Delta(stack)
    outcomes = run_requests(stack, "cluster")
    assert set(outcomes) == {"MISS"}
    assert d.reasons() == {"lookup_error": REQUESTS}
    # the store's http_call fails the same way: counted as failed, never sent
    assert (d.filter("store_sent"), d.filter("store_failed")) == (0, REQUESTS)
    assert (d.backend("lookups"), d.backend("stores")) == (0, 0)
    assert_healthy(stack)


def test_a_client_abort_during_a_pending_lookup_then_50_good_requests(module_stacks, faulty):
    faulty.mode, faulty.sleep_s = "sleep", 0.5
    faulty.received.clear()
    faulty.answered.clear()
    stack = module_stacks(backend_port=faulty.port, plugin_config={"l1_max_bytes": 0, "lookup_timeout_ms": 2000})
    d = Delta(stack, wait=False)
    u = urllib.parse.urlsplit(stack.listener_url)
    aborts = 5
    for i in range(aborts):
        with socket.create_connection((u.hostname, u.port), timeout=5) as s:
            s.sendall(f"GET /bytes/{700 + i} HTTP/1.1\r\nhost: abort\r\n\r\n".encode())
            deadline = time.monotonic() + 5
            while faulty.received["/v1/inject"] < i + 1:  # the lookup is pending at the backend
                assert time.monotonic() < deadline, "lookup never reached the backend"
                time.sleep(0.005)
        # closed here, while the backend still sleeps on the lookup
    assert faulty.answered["/v1/inject"] == 0
    faulty.mode = "miss"  # the sleeping lookups still answer (late, for gone streams)

    for i in range(50):
        n = 800 + i % 5
        reply = fetch(stack, f"/bytes/{n}?cache_control=max-age%3D60", timeout_s=10)
        assert (reply.status, reply.cache, reply.body) == (200, "MISS", generate(n, "0")), i
    deadline = time.monotonic() + 5
    while faulty.answered["/v1/inject"] < aborts + 50:  # every late answer has arrived
        assert time.monotonic() < deadline, faulty.answered
        time.sleep(0.02)
    for i in range(aborts):
        assert d.upstream(f"/bytes/{700 + i}") == 0  # an aborted request never went upstream
    # late answers for the aborted streams are ignored: no reason, no reply
    assert d.reasons() == {"not_found": 50}
    assert sum(d.upstream(f"/bytes/{800 + i}") for i in range(5)) == 50
    assert_healthy(stack)


def test_a_client_abort_while_a_hit_is_on_its_way(module_stacks):
    """The real backend, no L1: a stored entry, clients that vanish right after sending, then hits."""
    stack = module_stacks(plugin_config={"l1_max_bytes": 0})
    path = "/bytes/4096?seed=abort&cache_control=max-age%3D60"
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
