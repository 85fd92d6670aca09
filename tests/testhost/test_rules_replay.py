"""What a hit replays, on both tiers: HEAD reads the GET entry, empty bodies keep Content-Type,
Set-Cookie is never stored unless configured (and then replayed), Range and Authorization
bypass, the upstream's ``x-sp-cache`` never reaches the client, connection fields never replay."""

from __future__ import annotations

import pytest

from ._cache import hit_reason
from ._support import assert_healthy, config, span_of, stores

PAGE = (200, [("cache-control", "max-age=60"), ("content-type", "text/html"), ("x-multi", "1"), ("x-multi", "2")],
        b"0123456789")


def test_head_reads_the_get_entry_headers_and_length_without_a_body(make_cache, tier):
    cache = make_cache()
    cache.fetch("/doc", origin=PAGE)
    head = cache.fetch("/doc", method="HEAD")
    assert (head.cache_status, head.downstream_body) == ("HIT", b"")
    assert head.response_header_values("content-length") == ["10"]
    assert head.response_header_values("content-type") == ["text/html"]
    assert head.response_header_values("x-multi") == ["1", "2"]
    assert cache.metric(hit_reason(tier)) == 1 and len(cache.upstream) == 1
    assert_healthy(cache.model, head)


def test_a_head_miss_is_never_stored(make_cache):
    cache = make_cache()
    s = cache.model.new_stream()
    s.request([(":method", "HEAD"), (":path", "/doc"), (":authority", "svc.example:8080"), (":scheme", "http")])
    cache.backend.serve()
    s.send_response_headers([(":status", "200"), ("cache-control", "max-age=60"), ("content-length", "10")], True)
    s.done()
    cache.backend.serve()
    assert stores(cache.model) == [] and cache.metric("store_skipped_status") == 1
    get = cache.fetch("/doc", origin=PAGE)  # the GET still goes to the origin: a HEAD has no body to store
    assert get.cache_status == "MISS" and get.downstream_body == b"0123456789"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_an_empty_body_entry_keeps_its_content_type(make_cache, tier, method):
    cache = make_cache()
    headers = [("cache-control", "max-age=60"), ("content-type", "application/json"), ("content-length", "0")]
    origin = (200, headers, b"")
    cache.fetch("/empty", origin=origin)
    hit = cache.fetch("/empty", method=method)
    assert (hit.cache_status, hit.downstream_body) == ("HIT", b"")
    assert hit.response_header_values("content-type") == ["application/json"]
    if method == "HEAD":  # for GET, Envoy's HTTP/1 codec frames an empty end-of-stream reply itself
        assert hit.response_header_values("content-length") == ["0"]
    assert cache.metric(hit_reason(tier)) == 1


def test_a_204_entry_replays_its_headers(make_cache, tier):
    cache = make_cache()
    cache.fetch("/nc", origin=(204, [("cache-control", "max-age=60"), ("x-a", "b")], b""))
    hit = cache.fetch("/nc")
    assert (hit.cache_status, hit.response_headers_after[0], hit.response_header_values("x-a")) == (
        "HIT", (":status", "204"), ["b"])


def test_set_cookie_responses_are_never_stored_by_default(make_cache):
    cache = make_cache()
    origin = (200, [("cache-control", "max-age=60"), ("set-cookie", "session=abc")], b"personal")
    first = cache.fetch("/login", origin=origin)
    assert first.response_header_values("set-cookie") == ["session=abc"]  # the client still gets it
    again = cache.fetch("/login", origin=(200, [("cache-control", "max-age=60")], b"next"))
    assert again.downstream_body == b"next" and again.response_header_values("set-cookie") == []
    assert cache.metric("store_skipped_set_cookie") == 1
    for call in cache.model.calls:
        assert b"session=abc" not in call.body


def test_store_set_cookie_responses_stores_and_replays_set_cookie(make_cache, tier):
    redact = ["authorization", "cookie", "proxy-authorization", "x-api-key", "x-public-key"]
    cache = make_cache(store_set_cookie_responses=True, redact_headers=redact)
    origin = (200, [("cache-control", "max-age=60"), ("set-cookie", "a=1"), ("set-cookie", "b=2")], b"shared")
    cache.fetch("/c", origin=origin)
    assert span_of(stores(cache.model)[0]).headers("response")["set-cookie"] == [b"a=1", b"b=2"]
    hit = cache.fetch("/c")
    assert (hit.cache_status, hit.response_header_values("set-cookie")) == ("HIT", ["a=1", "b=2"])
    assert cache.metric(hit_reason(tier)) == 1


def test_store_set_cookie_responses_with_set_cookie_redacted_is_refused(make_host):
    model = make_host(config(store_set_cookie_responses=True), start=False)
    assert model.start() is False
    assert any('"store_set_cookie_responses"' in m for m in model.log_messages(min_level=4))


def test_a_range_request_bypasses_the_cache(make_cache):
    cache = make_cache()
    cache.fetch("/doc", origin=PAGE)
    calls_before = len(cache.model.calls)
    s = cache.fetch("/doc", ("range", "bytes=0-3"), origin=(206, [("content-range", "bytes 0-3/10")], b"0123"))
    assert (s.cache_status, s.downstream_body) == ("BYPASS", b"0123")
    assert cache.metric("bypass_range") == 1 and len(cache.model.calls) == calls_before
    assert stores(cache.model)[1:] == []


def test_the_upstreams_x_sp_cache_is_stripped_and_never_stored(make_cache, tier):
    cache = make_cache()
    origin = (200, [("cache-control", "max-age=60"), ("x-sp-cache", "HIT"), ("x-sp-cache", "forged")], b"x")
    first = cache.fetch("/s", origin=origin)
    assert first.response_header_values("x-sp-cache") == ["MISS"]
    assert "x-sp-cache" not in span_of(stores(cache.model)[0]).headers("response")
    hit = cache.fetch("/s")
    assert hit.response_header_values("x-sp-cache") == ["HIT"]


def test_an_upstreams_x_sp_cache_is_stripped_on_a_bypass_too(make_cache):
    cache = make_cache()
    s = cache.fetch("/s", method="POST", origin=(200, [("x-sp-cache", "HIT")], b"x"))
    assert s.response_header_values("x-sp-cache") == ["BYPASS"]


def test_connection_specific_fields_are_not_stored_or_replayed(make_cache):
    cache = make_cache()
    origin = (200, [("cache-control", "max-age=60"), ("connection", "x-hop"), ("x-hop", "1"), ("keep-alive", "5"),
                    ("x-envoy-upstream-service-time", "3"), ("x-end", "kept")], b"x")
    cache.fetch("/h", origin=origin)
    stored = span_of(stores(cache.model)[0]).headers("response")
    assert set(stored) == {"cache-control", "x-end"}
    hit = cache.fetch("/h")
    assert [k for k, _ in hit.response_headers_after] == [":status", "cache-control", "x-end", "age", "x-sp-cache",
                                                         "content-length", "content-type"]
