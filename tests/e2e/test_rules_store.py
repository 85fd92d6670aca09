"""What the cache stores and serves with its default configuration (RFC 9111 §3, §4.2: explicit
freshness only), through the real Envoy with ``allow_on_headers_stop_iteration`` on and off.

Ground truth outside the filter: the upstream's request counter, the backend's ``/stats``
(lookups, stores, hits). The filter's reason counters say why. One stack per parameter; every
test has its own paths and counts deltas.
"""

from __future__ import annotations

import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from e2e_support import Delta, fetch, query, settle

from sp_istio_cache.upstream.payload import generate

pytestmark = pytest.mark.envoy

FRESH = ("cache_control", "max-age=60")


def test_a_response_without_freshness_is_never_served_from_cache(rule_stack):
    d = Delta(rule_stack)
    path = "/bytes/101?seed=no-freshness"
    replies = [fetch(rule_stack, path) for _ in range(3)]
    assert [(r.status, r.cache, r.body) for r in replies] == [
        (200, "MISS", generate(101, "no-freshness")),
        (200, "BYPASS", generate(101, "no-freshness")),  # hit-for-pass: not even looked up
        (200, "BYPASS", generate(101, "no-freshness")),
    ]
    assert d.upstream("/bytes/101") == 3
    settle(rule_stack)
    assert (d.backend("stores"), d.backend("lookups")) == (0, 1)
    assert d.filter("store_skipped_no_freshness") == 3
    assert d.reasons() == {"not_found": 1, "hit_for_pass": 2}


def test_a_validator_without_freshness_is_stored_but_every_reuse_asks_the_origin(rule_stack):
    d = Delta(rule_stack)
    path = "/bytes/102?seed=etag-only&etag=1"
    replies = [fetch(rule_stack, path) for _ in range(3)]
    assert [(r.status, r.cache) for r in replies] == [(200, "MISS"), (200, "HIT"), (200, "HIT")]
    assert {r.body for r in replies} == {generate(102, "etag-only")}
    assert d.upstream("/bytes/102") == 3  # each reuse was validated by the origin (304)
    assert d.reasons() == {"not_found": 1, "revalidated": 2}


def test_explicit_freshness_is_served_from_the_l1_without_a_backend_lookup(rule_stack):
    d = Delta(rule_stack)
    path = "/bytes/103?" + query(FRESH, ("seed", "l1"))
    first = fetch(rule_stack, path)
    assert (first.status, first.cache, first.body) == (200, "MISS", generate(103, "l1"))
    settle(rule_stack)
    assert (d.backend("lookups"), d.backend("stores")) == (1, 1)

    hits = Delta(rule_stack)
    for i in range(5):
        hit = fetch(rule_stack, path)
        assert (hit.status, hit.cache, hit.body) == (200, "HIT", first.body), i
        assert hit.header_values("content-length") == ["103"]
        assert hit.header("cache-control") == "max-age=60"
        assert hit.header("age") in ("0", "1")
    assert hits.backend("lookups") == 0  # no callout on an L1 hit
    assert hits.reasons() == {"l1_hit": 5}
    assert d.upstream("/bytes/103") == 1


def test_a_second_envoy_on_the_same_backend_gets_a_backend_hit(rule_stack, module_stacks,
                                                                allow_stop_iteration):
    second = module_stacks(backend_port=rule_stack.backend.port,
                           allow_on_headers_stop_iteration=allow_stop_iteration,
                           plugin_config={"backend_key": rule_stack.backend_key,
                                          "signing_key": rule_stack.signing_key})
    host = [("Host", "shared.example")]  # the same authority (and so the same key) on both
    path = "/bytes/104?" + query(FRESH, ("seed", "two-envoys"))
    first = fetch(rule_stack, path, headers=host)
    assert (first.status, first.cache) == (200, "MISS")
    settle(rule_stack)

    backend, other = Delta(rule_stack), Delta(second, wait=False)
    replies = [fetch(second, path, headers=host) for _ in range(2)]
    assert [(r.status, r.cache, r.body) for r in replies] == [(200, "HIT", first.body)] * 2
    assert other.reasons() == {"backend_hit": 1, "l1_hit": 1}  # the backend's answer fills its L1
    assert (backend.backend("lookups"), backend.backend("hits")) == (1, 1)
    assert other.upstream("/bytes/104") == 0


NEVER_STORED = [
    ("no-store", [("cache_control", "no-store, max-age=60")], "store_skipped_no_store", 200),
    ("private", [("cache_control", "private, max-age=60")], "store_skipped_private", 200),
    ("set-cookie", [FRESH, ("set_cookie", "session=abc")], "store_skipped_set_cookie", 200),
    ("vary-star", [FRESH, ("vary", "*")], "store_skipped_vary_star", 200),
    ("no-cache-without-validator", [("cache_control", "no-cache, max-age=60")], "store_skipped_no_freshness", 200),
    ("max-age-0", [("cache_control", "max-age=0")], "store_skipped_no_freshness", 200),
    ("status-206", [FRESH, ("status", "206")], "store_skipped_status", 206),
]


@pytest.mark.parametrize("case,options,counter,status", NEVER_STORED, ids=[c[0] for c in NEVER_STORED])
def test_responses_that_must_not_be_stored_never_are(rule_stack, case, options, counter, status):
    n = 110 + [c[0] for c in NEVER_STORED].index(case)
    path = f"/bytes/{n}?" + query(*options, ("seed", case))
    d = Delta(rule_stack)
    replies = [fetch(rule_stack, path) for _ in range(2)]
    assert [(r.status, r.cache, r.body) for r in replies] == [
        (status, "MISS", generate(n, case)), (status, "BYPASS", generate(n, case))]
    if case == "set-cookie":
        assert [r.header_values("set-cookie") for r in replies] == [["session=abc"]] * 2
    assert d.upstream(f"/bytes/{n}") == 2
    settle(rule_stack)
    assert d.filter(counter) == 2
    assert (d.backend("stores"), d.backend("lookups")) == (0, 1)  # the second skipped its lookup
    assert d.reasons() == {"not_found": 1, "hit_for_pass": 1}


REQUEST_BYPASSES = [
    ("authorization", ("Authorization", "Bearer secret"), "bypass_authorization"),
    ("no-store", ("Cache-Control", "no-store"), "bypass_no_store"),
    ("range", ("Range", "bytes=0-9"), "bypass_range"),
]


@pytest.mark.parametrize("case,header,counter", REQUEST_BYPASSES, ids=[c[0] for c in REQUEST_BYPASSES])
def test_requests_the_cache_must_not_answer_reach_the_origin_and_store_nothing(rule_stack, case, header, counter):
    n = 130 + [c[0] for c in REQUEST_BYPASSES].index(case)
    path = f"/bytes/{n}?" + query(FRESH, ("seed", case))
    stored = fetch(rule_stack, path)
    assert stored.cache == "MISS"
    d = Delta(rule_stack)
    bypassed = fetch(rule_stack, path, headers=[header])
    assert (bypassed.cache, bypassed.status, bypassed.body) == ("BYPASS", 200, stored.body)  # the app ignores Range
    assert d.upstream(f"/bytes/{n}") == 1
    settle(rule_stack)
    assert (d.backend("lookups"), d.backend("stores")) == (0, 0)
    assert d.reasons() == {counter: 1}
    again = fetch(rule_stack, path)  # the stored entry is untouched
    assert (again.cache, again.body) == ("HIT", stored.body)


def test_hit_for_pass_skips_the_backend_lookup_under_load(rule_stack):
    path = "/bytes/120?cache_control=no-store&seed=hit-for-pass"
    first = fetch(rule_stack, path)
    assert first.cache == "MISS"
    d = Delta(rule_stack)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: fetch(rule_stack, path), range(100)))
    assert {(r.status, r.cache, r.body) for r in replies} == {(200, "BYPASS", first.body)}
    assert d.backend("lookups") / 100 <= 0.05
    assert d.reasons() == {"hit_for_pass": 100}
    assert d.upstream("/bytes/120") == 100


def test_head_after_get_is_served_from_the_get_entry(rule_stack):
    path = "/bytes/1000?" + query(FRESH, ("seed", "head"))
    get = fetch(rule_stack, path)
    assert (get.status, get.cache, len(get.body)) == (200, "MISS", 1000)
    d = Delta(rule_stack)
    head = fetch(rule_stack, path, method="HEAD")
    assert (head.status, head.cache, head.body) == (200, "HIT", b"")
    assert head.header_values("content-length") == ["1000"]
    assert head.header("content-type") == "application/octet-stream"
    assert (d.upstream("/bytes/1000", "HEAD"), d.upstream("/bytes/1000")) == (0, 0)
    assert d.reasons() == {"l1_hit": 1}


def test_a_head_miss_is_never_stored_as_the_get_entry(rule_stack):
    path = "/bytes/1001?" + query(FRESH, ("seed", "head-first"))
    d = Delta(rule_stack)
    head = fetch(rule_stack, path, method="HEAD")
    assert (head.status, head.cache, head.body) == (200, "MISS", b"")
    get = fetch(rule_stack, path)
    assert (get.status, get.cache, get.body) == (200, "MISS", generate(1001, "head-first"))
    again = fetch(rule_stack, path)
    assert (again.cache, again.body) == ("HIT", get.body)
    assert (d.upstream("/bytes/1001", "HEAD"), d.upstream("/bytes/1001")) == (1, 1)
    settle(rule_stack)
    assert d.backend("stores") == 1


@pytest.mark.parametrize("path,content_type", [
    ("/bytes/0?" + query(FRESH, ("seed", "empty")), "application/octet-stream"),
    ("/status/200?" + query(FRESH, ("header", "Content-Type:application/problem+json")), "application/problem+json"),
], ids=["bytes-0", "status-200"])
def test_an_empty_body_entry_keeps_its_content_type_and_length(rule_stack, path, content_type):
    miss = fetch(rule_stack, path)
    assert (miss.status, miss.cache, miss.header("content-type")) == (200, "MISS", content_type)
    d = Delta(rule_stack)
    for method in ("GET", "HEAD", "GET"):
        hit = fetch(rule_stack, path, method=method)
        assert (hit.status, hit.cache, hit.body) == (200, "HIT", b""), method
        assert hit.header_values("content-type") == [content_type], method
        assert hit.header_values("content-length") == ["0"], method
    assert d.upstream(urllib.parse.urlsplit(path).path) == 0


def test_a_cacheable_204_is_stored_once_and_served_as_a_204(rule_stack):
    path = "/status/204?" + query(FRESH, ("header", "X-Kind:empty"))
    d = Delta(rule_stack)
    first = fetch(rule_stack, path)
    assert (first.status, first.cache, first.body) == (204, "MISS", b"")
    for i in range(3):
        hit = fetch(rule_stack, path)
        assert (hit.status, hit.cache, hit.body, hit.header("x-kind")) == (204, "HIT", b"", "empty"), i
    assert d.upstream("/status/204") == 1
    assert d.reasons() == {"not_found": 1, "l1_hit": 3}


def test_a_hit_replays_multi_valued_headers_in_order_and_no_hop_by_hop_header(rule_stack):
    path = "/bytes/1500?" + query(
        ("header", "X-Multi:one"), ("header", "X-Other:a"), ("header", "X-Multi:two"),
        ("header", "X-Multi:three"), ("header", "Link:</a>; rel=preload"), ("header", "Link:</b>; rel=preload"),
        # hop-by-hop fields that Envoy itself forwards from the upstream
        ("header", "Proxy-Authenticate:Basic realm=x"), ("header", "TE:trailers"), FRESH)
    miss = fetch(rule_stack, path)
    assert miss.cache == "MISS"
    assert miss.header_values("x-multi") == ["one", "two", "three"]
    assert miss.header("proxy-authenticate") == "Basic realm=x"
    hit = fetch(rule_stack, path)
    assert (hit.status, hit.cache, hit.body) == (200, "HIT", miss.body)
    assert hit.header_values("x-multi") == ["one", "two", "three"]
    assert hit.header_values("x-other") == ["a"]
    assert hit.header_values("link") == ["</a>; rel=preload", "</b>; rel=preload"]
    for hop in ("proxy-authenticate", "te", "keep-alive", "transfer-encoding", "upgrade"):
        assert hit.header(hop) is None, hop
    assert hit.header_values("content-length") == ["1500"]
    assert hit.header_values("x-sp-cache") == ["HIT"]
    assert hit.header("x-envoy-upstream-service-time") is None  # nothing came from the upstream


def test_a_response_declaring_a_trailer_is_stored_and_replayed_without_the_field(rule_stack):
    """FILTER BUG: storage keeps `Trailer` (http/fields.zig isConnectionSpecific lacks it) while
    replay validation refuses it as hop-by-hop (headers.zig isHopByHop), so the filter refuses to
    store its own entry: every such response is a miss, counted as store_skipped_incomplete."""
    path = "/bytes/1501?" + query(("header", "Trailer:X-Checksum"), FRESH)
    d = Delta(rule_stack)
    miss = fetch(rule_stack, path)
    assert (miss.cache, miss.header("trailer")) == ("MISS", "X-Checksum")
    hit = fetch(rule_stack, path)
    assert (d.filter("store_skipped_incomplete"), d.upstream("/bytes/1501")) == (0, 1)
    assert (hit.status, hit.cache, hit.body, hit.header("trailer")) == (200, "HIT", miss.body, None)


def test_a_local_reply_is_never_stored_or_answered_twice(rule_stack):
    path = "/bytes/2048?" + query(FRESH, ("seed", "replies"))
    d = Delta(rule_stack)
    first = fetch(rule_stack, path)
    for i in range(30):
        hit = fetch(rule_stack, path)
        assert (hit.status, hit.cache, hit.body) == (200, "HIT", first.body), i
        assert hit.header_values("content-length") == ["2048"]
    settle(rule_stack)
    assert d.filter("store_sent") == 1
    assert d.backend("stores") == 1
    assert d.reasons() == {"not_found": 1, "l1_hit": 30}
    assert d.upstream("/bytes/2048") == 1
    assert rule_stack.filter_stats()["sp_cache.buffered_body_bytes"] == 0
