"""HTTP caching rules (RFC 9111) as the real Envoy applies them with the filter.

Ground truth is outside the filter: the upstream's own request counter proves a bypass or a hit,
the backend's store counter proves what was stored, and the filter's metrics name the reason.
Every test starts its own stack, so every counter starts from zero.
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request

import pytest

from sp_istio_cache.httpclient import request

pytestmark = pytest.mark.envoy

CACHEABLE = "cache_control=max-age%3D60"


def direct(stack, path: str, method: str = "GET") -> bytes:
    """The upstream's answer body for ``path``, fetched from the upstream itself."""
    req = urllib.request.Request(stack.upstream.url + path, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def stores_settle(stack, pause_s: float = 0.3) -> None:
    """Give a (wrongly) dispatched store time to reach the backend before counting stores."""
    time.sleep(pause_s)


@pytest.mark.parametrize("header,value,counter", [
    ("Authorization", "Bearer secret", "sp_cache.bypass_authorization"),
    ("Cache-Control", "no-store", "sp_cache.bypass_no_store"),
    ("If-None-Match", '"abc"', "sp_cache.bypass_conditional"),
    ("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT", "sp_cache.bypass_conditional"),
    ("Cache-Control", "no-cache", "sp_cache.bypass_no_cache"),
    ("Cache-Control", "max-age=0", "sp_cache.bypass_no_cache"),
    ("Pragma", "no-cache", "sp_cache.bypass_no_cache"),
], ids=["authorization", "no-store", "if-none-match", "if-modified-since", "no-cache", "max-age-0", "pragma"])
def test_request_bypasses_reach_the_upstream_and_store_nothing(make_stack, header, value, counter):
    stack = make_stack(variant="filter")
    path = f"/bytes/300?{CACHEABLE}"
    expected = direct(stack, path)
    for _ in range(2):
        reply = request(stack.listener_url + path, headers={header: value})
        assert (reply.status, reply.cache, reply.body) == (200, "BYPASS", expected)
    assert stack.upstream_count("/bytes/300") == 1 + 2  # direct + both bypasses
    stores_settle(stack)
    f = stack.filter_stats()
    assert f[counter] == 2
    assert f["sp_cache.store_skipped_not_looked_up"] == 2
    assert (f["sp_cache.store_sent"], f["sp_cache.miss"], f["sp_cache.hit"]) == (0, 0, 0)
    backend = stack.backend_stats()
    assert (backend["lookups"], backend["stores"], backend["entries"]) == (0, 0, 0)

    # the same request without the header was never cached by the bypasses: a MISS, then stored
    plain = request(stack.listener_url + path)
    assert (plain.status, plain.cache, plain.body) == (200, "MISS", expected)
    stack.wait_for_stores(1)
    assert stack.upstream_count("/bytes/300") == 4


@pytest.mark.parametrize("query,counter", [
    ("cache_control=no-store", "sp_cache.store_skipped_no_store"),
    ("cache_control=no-cache", "sp_cache.store_skipped_no_store"),
    ("cache_control=max-age%3D0", "sp_cache.store_skipped_no_store"),
    ("cache_control=private%2C%20max-age%3D60", "sp_cache.store_skipped_private"),
    (f"set_cookie=session%3Dabc&{CACHEABLE}", "sp_cache.store_skipped_set_cookie"),
    (f"vary=*&{CACHEABLE}", "sp_cache.store_skipped_vary"),
    (f"vary=Accept-Language&{CACHEABLE}", "sp_cache.store_skipped_vary"),
    (f"status=203&{CACHEABLE}", "sp_cache.store_skipped_status"),
], ids=["no-store", "no-cache", "max-age-0", "private", "set-cookie", "vary-star", "vary-unlisted",
        "status-203"])
def test_uncacheable_responses_are_not_stored(make_stack, query, counter):
    stack = make_stack(variant="filter")
    path = f"/bytes/400?{query}"
    expected = direct(stack, path)
    for _ in range(2):
        reply = request(stack.listener_url + path)
        assert (reply.cache, reply.body) == ("MISS", expected)
        assert reply.status == (203 if "status=203" in query else 200)
    assert stack.upstream_count("/bytes/400") == 1 + 2
    stores_settle(stack)
    f = stack.filter_stats()
    assert f[counter] == 2
    assert (f["sp_cache.miss"], f["sp_cache.hit"], f["sp_cache.store_sent"]) == (2, 0, 0)
    backend = stack.backend_stats()
    assert (backend["misses"], backend["stores"], backend["entries"]) == (2, 0, 0)


def test_set_cookie_response_is_never_sent_to_the_backend_even_with_multiple_cookies(make_stack):
    stack = make_stack(variant="filter")
    path = f"/bytes/401?set_cookie=a%3D1&set_cookie=b%3D2&{CACHEABLE}"
    reply = request(stack.listener_url + path)
    assert reply.header_values("set-cookie") == ["a=1", "b=2"]  # the client gets them untouched
    assert reply.cache == "MISS"
    assert stack.filter_stats()["sp_cache.store_skipped_set_cookie"] == 1


def test_cacheable_204_is_stored_once_and_served_as_a_204_hit(make_stack):
    stack = make_stack(variant="filter", plugin_config={"cacheable_statuses": [200, 204]})
    path = f"/status/204?{CACHEABLE}&header=X-Kind:empty"
    first = request(stack.listener_url + path)
    assert (first.status, first.cache, first.body) == (204, "MISS", b"")
    stack.wait_for_stores(1)  # stored from the headers callback: the body callbacks never run

    for i in range(10):
        hit = request(stack.listener_url + path)
        assert (hit.status, hit.cache, hit.body) == (204, "HIT", b""), i
        assert hit.header("x-kind") == "empty"
        assert hit.header("cache-control") == "max-age=60"
    assert stack.upstream_count("/status/204") == 1
    stores_settle(stack)
    f = stack.filter_stats()
    assert (f["sp_cache.miss"], f["sp_cache.hit"], f["sp_cache.store_sent"]) == (1, 10, 1)
    backend = stack.backend_stats()
    assert (backend["stores"], backend["entries"], backend["hits"]) == (1, 1, 10)


def test_204_is_not_stored_when_not_a_configured_status(make_stack):
    stack = make_stack(variant="filter")  # cacheable_statuses default [200]
    path = f"/status/204?{CACHEABLE}"
    for _ in range(2):
        reply = request(stack.listener_url + path)
        assert (reply.status, reply.cache) == (204, "MISS")
    assert stack.upstream_count("/status/204") == 2
    f = stack.filter_stats()
    assert (f["sp_cache.store_skipped_status"], f["sp_cache.store_sent"]) == (2, 0)


def test_head_after_get_is_a_hit_with_the_get_headers_and_no_body(make_stack):
    stack = make_stack(variant="filter")
    path = f"/bytes/1000?{CACHEABLE}"
    get = request(stack.listener_url + path)
    assert (get.status, get.cache, len(get.body), get.header("content-length")) == (200, "MISS", 1000, "1000")
    stack.wait_for_stores(1)

    head = request(stack.listener_url + path, method="HEAD")
    assert (head.status, head.cache, head.body) == (200, "HIT", b"")
    assert head.header("content-length") == "1000"
    assert head.header("content-type") == "application/octet-stream"
    by_method = stack.upstream.get_json("/__stats")["by_method_path"]
    assert by_method == {"GET /bytes/1000": 1}  # the HEAD never reached the upstream
    f = stack.filter_stats()
    assert (f["sp_cache.hit"], f["sp_cache.miss"], f["sp_cache.store_sent"]) == (1, 1, 1)


def test_head_miss_is_never_stored_as_the_get_entry(make_stack):
    stack = make_stack(variant="filter")
    path = f"/bytes/1001?{CACHEABLE}"
    head = request(stack.listener_url + path, method="HEAD")
    assert (head.status, head.cache, head.body) == (200, "MISS", b"")
    stores_settle(stack)
    f = stack.filter_stats()
    assert (f["sp_cache.store_skipped_head"], f["sp_cache.store_sent"]) == (1, 0)
    assert stack.backend_stats()["entries"] == 0

    get = request(stack.listener_url + path)
    assert (get.status, get.cache, len(get.body)) == (200, "MISS", 1001)  # not the HEAD's empty body
    stack.wait_for_stores(1)
    again = request(stack.listener_url + path)
    assert (again.status, again.cache, again.body) == (200, "HIT", get.body)
    by_method = stack.upstream.get_json("/__stats")["by_method_path"]
    assert by_method == {"HEAD /bytes/1001": 1, "GET /bytes/1001": 1}


def test_hit_replays_multi_valued_headers_in_order_and_drops_hop_by_hop(make_stack):
    stack = make_stack(variant="filter")
    query = urllib.parse.urlencode([
        ("header", "X-Multi:one"), ("header", "X-Other:a"), ("header", "X-Multi:two"),
        ("header", "X-Multi:three"), ("header", "Link:</a>; rel=preload"), ("header", "Link:</b>; rel=preload"),
        # hop-by-hop headers that Envoy itself forwards from the upstream (Keep-Alive and
        # Proxy-Connection it strips on its own, so they prove nothing about the filter)
        ("header", "Proxy-Authenticate:Basic realm=x"), ("header", "Trailer:X-Checksum"), ("header", "TE:trailers"),
        ("cache_control", "max-age=60"),
    ])
    path = f"/bytes/1500?{query}"
    miss = request(stack.listener_url + path)
    assert miss.cache == "MISS"
    # baseline: the upstream's headers as the client sees them through Envoy on a miss
    assert miss.header_values("x-multi") == ["one", "two", "three"]
    assert miss.header("proxy-authenticate") == "Basic realm=x"
    assert miss.header("trailer") == "X-Checksum"
    assert miss.header("te") == "trailers"
    stack.wait_for_stores(1)

    hit = request(stack.listener_url + path)
    assert (hit.status, hit.cache, hit.body) == (200, "HIT", miss.body)
    assert hit.header_values("x-multi") == ["one", "two", "three"]
    assert hit.header_values("x-other") == ["a"]
    assert hit.header_values("link") == ["</a>; rel=preload", "</b>; rel=preload"]
    for hop in ("proxy-authenticate", "trailer", "te", "keep-alive", "transfer-encoding", "upgrade"):
        assert hit.header(hop) is None, hop
    assert hit.header_values("content-length") == [str(len(hit.body))] == ["1500"]
    assert hit.header_values("x-sp-cache") == ["HIT"]
    assert hit.header("age") is not None and int(hit.header("age")) >= 0
    assert hit.header("x-envoy-upstream-service-time") is None  # nothing came from the upstream


def test_local_reply_is_never_stored_and_never_answered_twice(make_stack):
    stack = make_stack(variant="filter")
    path = f"/bytes/2048?{CACHEABLE}"
    first = request(stack.listener_url + path)
    stack.wait_for_stores(1)
    for i in range(30):
        hit = request(stack.listener_url + path)
        assert (hit.status, hit.cache, hit.body) == (200, "HIT", first.body), i
        assert hit.header_values("content-length") == ["2048"]
    stores_settle(stack, 0.5)
    f = stack.filter_stats()
    assert (f["sp_cache.hit"], f["sp_cache.miss"], f["sp_cache.store_sent"]) == (30, 1, 1)
    assert sum(v for k, v in f.items() if k.startswith("sp_cache.store_skipped_")) == 0
    backend = stack.backend_stats()
    assert (backend["stores"], backend["entries"], backend["hits"]) == (1, 1, 30)
    assert stack.upstream_count("/bytes/2048") == 1
    assert f["sp_cache.buffered_body_bytes"] == 0


@pytest.mark.xfail(strict=True, reason="Envoy limit: a HEAD local reply with an empty body leaves "
                   "Content-Length out (transfer-encoding: chunked) even when the filter sets it to 0; "
                   "the GET hit has content-length: 0")
def test_head_hit_on_an_empty_entry_keeps_the_get_content_length(make_stack):
    stack = make_stack(variant="filter")
    path = f"/bytes/0?{CACHEABLE}"
    get = request(stack.listener_url + path)
    assert (get.status, get.cache, get.header("content-length")) == (200, "MISS", "0")
    stack.wait_for_stores(1)
    get_hit = request(stack.listener_url + path)
    assert (get_hit.cache, get_hit.header_values("content-length")) == ("HIT", ["0"])
    head = request(stack.listener_url + path, method="HEAD")
    assert (head.status, head.cache, head.body) == (200, "HIT", b"")
    assert head.header("content-length") == "0"
