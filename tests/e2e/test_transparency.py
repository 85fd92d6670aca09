"""The filter is transparent and never stalls a request, through the real Envoy with
``allow_on_headers_stop_iteration`` on and off (issue 11): the forwarded request is the client's
(no ``traceparent`` unless asked), an upstream's ``x-sp-cache`` never reaches the client, a
request whose headers do not end the stream is never held, concurrent misses share one origin
fetch (issue 13), and every request moves exactly one reason and its outcome counter.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from e2e_support import (
    ENVOY_ADDED,
    OUTCOMES,
    Delta,
    authority,
    fetch,
    query,
    raw_exchange,
    split_wire,
    upstream_requests,
)

from sp_istio_cache.upstream.payload import generate

pytestmark = pytest.mark.envoy

FRESH = ("cache_control", "max-age=60")
CLIENT = [("X-Note", "one"), ("Accept", "application/json"), ("X-Multi", "a"), ("X-Multi", "b")]


@pytest.mark.parametrize("case,path,extra,method", [
    ("cacheable-miss", "/bytes/500?" + query(FRESH, ("seed", "fwd")), [], "GET"),
    ("uncacheable", "/bytes/501?cache_control=no-store", [], "GET"),
    ("bypassed", "/bytes/502?" + query(FRESH), [("Authorization", "Bearer t")], "GET"),
    ("unsafe", "/bytes/503", [], "POST"),
    ("client-traceparent", "/bytes/504?" + query(FRESH),
     [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")], "GET"),
], ids=["cacheable-miss", "uncacheable", "bypassed", "unsafe", "client-traceparent"])
def test_the_forwarded_request_is_the_clients(rule_stack, case, path, extra, method):
    sent = CLIENT + extra
    reply = fetch(rule_stack, path, method=method, headers=sent, body=b"payload" if method == "POST" else None)
    assert reply.status == 200
    [seen] = upstream_requests(rule_stack, path)
    assert seen["method"] == method
    received = [(n.lower(), v) for n, v in seen["headers"]]
    expected = [(n.lower(), v) for n, v in sent] + [("host", authority(rule_stack))]
    if method == "POST":
        expected.append(("content-length", "7"))
    ours = [(n, v) for n, v in received if n not in ENVOY_ADDED]
    assert sorted(ours) == sorted(expected)  # nothing added (no traceparent), nothing changed
    assert [v for n, v in received if n == "x-multi"] == ["a", "b"]


def test_an_upstream_x_sp_cache_header_never_reaches_the_client(rule_stack):
    planted = ("header", "X-Sp-Cache:HIT")
    stored = "/bytes/510?" + query(planted, FRESH)
    uncacheable = "/bytes/511?" + query(planted, ("cache_control", "no-store"))
    cases = [(stored, [], "MISS"), (stored, [], "HIT"), (uncacheable, [], "MISS"),
             (uncacheable, [], "BYPASS"), ("/bytes/512?" + query(planted, FRESH), [("Authorization", "x")], "BYPASS")]
    for path, headers, outcome in cases:
        reply = fetch(rule_stack, path, headers=headers)
        assert reply.header_values("x-sp-cache") == [outcome], (path, headers)


def chunked_get(stack, path: str) -> bytes:
    """A GET whose headers do not end the stream (a chunked body follows), on the wire."""
    return raw_exchange(stack, (
        f"GET {path} HTTP/1.1\r\nhost: {authority(stack)}\r\ntransfer-encoding: chunked\r\n"
        "connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n").encode(), timeout_s=5)


def test_a_get_whose_headers_do_not_end_the_stream_is_never_held(rule_stack):
    """Holding it would hang under Istio's WasmPlugin (no allow_on_headers_stop_iteration)."""
    path = "/bytes/520?" + query(FRESH, ("seed", "chunked-get"))
    d = Delta(rule_stack)
    for _ in range(2):
        status, fields, body = split_wire(chunked_get(rule_stack, path))
        assert (status, body) == (200, generate(520, "chunked-get"))
        assert (b"x-sp-cache", b"BYPASS") in fields
    length = raw_exchange(rule_stack, (
        f"GET {path} HTTP/1.1\r\nhost: {authority(rule_stack)}\r\ncontent-length: 3\r\n"
        "connection: close\r\n\r\nabc").encode(), timeout_s=5)
    assert split_wire(length)[0] == 200
    assert d.reasons() == {"bypass_request_body": 3}
    assert d.upstream("/bytes/520") == 3


@pytest.fixture(scope="module")
def post_stack(module_stacks, allow_stop_iteration):
    """POST looked up (keyed with its body): the one case where the filter holds a request body."""
    return module_stacks(allow_on_headers_stop_iteration=allow_stop_iteration,
                         plugin_config={"lookup_methods": ["GET", "HEAD", "POST"]})


def test_a_post_looked_up_with_its_body_is_never_stalled(post_stack, allow_stop_iteration):
    """With allow_on_headers_stop_iteration, a POST in lookup_methods is held, keyed with its body,
    looked up and stored. Without it (Istio's WasmPlugin) Envoy never delivers the body of a request
    paused at its headers: the filter notices within 250 ms, lets the request go (fail open) and
    stops pausing for bodies on that worker, so no request ever stalls."""
    path = "/bytes/530?" + query(FRESH, ("seed", "post-lookup"))
    d = Delta(post_stack)
    replies = [fetch(post_stack, path, method="POST", body=b"query-1", timeout_s=5) for _ in range(4)]
    assert {(r.status, r.body) for r in replies} == {(200, generate(530, "post-lookup"))}
    if allow_stop_iteration:
        assert [r.cache for r in replies] == ["MISS", "HIT", "HIT", "HIT"]
        assert d.upstream("/bytes/530", "POST") == 1
    else:
        assert [r.cache for r in replies] == ["BYPASS"] * 4
        assert d.reasons() == {"bypass_request_body": 4}
        assert d.upstream("/bytes/530", "POST") == 4


def test_concurrent_misses_for_one_key_send_one_request_upstream(rule_stack):
    path = "/bytes/4096?" + query(FRESH, ("delay_ms", "300"), ("seed", "coalesce"))
    d = Delta(rule_stack)
    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(lambda _: fetch(rule_stack, path), range(50)))
    assert {(r.status, r.body) for r in replies} == {(200, generate(4096, "coalesce"))}
    assert d.upstream("/bytes/4096") == 1, f"reasons {d.reasons()}"
    assert sorted(r.cache for r in replies) == ["HIT"] * 49 + ["MISS"]
    assert d.reasons() == {"not_found": 1, "coalesced": 49}


def test_concurrent_misses_for_an_uncacheable_response_each_get_their_own(rule_stack):
    path = "/bytes/4097?" + query(("cache_control", "private"), ("delay_ms", "200"), ("echo_headers", "1"))
    d = Delta(rule_stack)
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda i: fetch(rule_stack, path, headers=[("X-Client", str(i))]), range(20)))
    for i, reply in enumerate(replies):  # a private response is never handed to another client
        assert reply.status == 200
        assert ["x-client", str(i)] in json.loads(reply.body)["headers"]
    assert d.upstream("/bytes/4097") == 20
    assert "HIT" not in {r.cache for r in replies}


def test_every_request_moves_exactly_one_reason_and_its_outcome_counter(rule_stack):
    fresh = "/bytes/540?" + query(FRESH, ("seed", "counters"))
    stale = "/bytes/541?" + query(("header", "Age:100"), FRESH)
    d = Delta(rule_stack)
    fetch(rule_stack, fresh)                                            # not_found
    fetch(rule_stack, fresh)                                            # l1_hit
    fetch(rule_stack, fresh, headers=[("Authorization", "Bearer x")])   # bypass_authorization
    fetch(rule_stack, stale)                                            # not_found
    fetch(rule_stack, stale)                                            # miss_stale
    assert d.reasons() == {"not_found": 2, "l1_hit": 1, "bypass_authorization": 1, "miss_stale": 1}
    assert {o: d.filter(o) for o in OUTCOMES} == {"hit": 1, "miss": 3, "bypass": 1}  # five requests
