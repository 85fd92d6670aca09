"""Response directives (RFC 9111 §5.2.2) and Authorization (§3.5), each on both tiers."""

from __future__ import annotations

import pytest

from ._cache import hit_reason
from ._support import STORE_BATCH_WAIT_MS, assert_healthy, span_of, stores

REFETCHED = (200, [("cache-control", "max-age=60")], b"refetched")
NOT_MODIFIED = (304, [("etag", '"v1"'), ("cache-control", "max-age=60")], b"")


@pytest.mark.parametrize("directive,counter", [
    ("no-store, max-age=60", "store_skipped_no_store"),
    ("private, max-age=60", "store_skipped_private"),
    ("no-cache, max-age=60", "store_skipped_no_freshness"),  # no validator: nothing a later request could use
])
def test_a_response_that_forbids_storing_is_neither_stored_nor_served(make_cache, directive, counter):
    cache = make_cache()
    first = cache.fetch("/p", origin=(200, [("cache-control", directive)], b"mine"))
    second = cache.fetch("/p", origin=(200, [("cache-control", directive)], b"yours"))
    assert (first.downstream_body, second.downstream_body) == (b"mine", b"yours")
    assert second.cache_status == "BYPASS" and cache.metric("hit_for_pass") == 1
    assert stores(cache.model) == [] and cache.backend.entries == {}
    assert cache.metric(counter) == 2
    assert_healthy(cache.model, first, second)


def test_no_cache_with_a_validator_is_stored_and_revalidated_on_every_use(make_cache):
    cache = make_cache()
    cache.fetch("/nc", origin=(200, [("cache-control", "no-cache, max-age=60"), ("etag", '"v1"')], b"body"))
    s = cache.fetch("/nc", origin=NOT_MODIFIED)
    assert dict(cache.upstream[-1])["if-none-match"] == '"v1"'
    assert (s.cache_status, s.downstream_body) == ("HIT", b"body")
    assert cache.metric("revalidated") == 1 and len(cache.upstream) == 2


def test_qualified_private_stores_the_response_without_the_named_field(make_cache, tier):
    cache = make_cache()
    headers = [("cache-control", 'private="x-user", max-age=60'), ("x-user", "alice"), ("x-shared", "yes")]
    cache.fetch("/q", origin=(200, headers, b"page"))
    hit = cache.fetch("/q")
    assert (hit.cache_status, hit.downstream_body) == ("HIT", b"page")
    assert hit.response_header_values("x-user") == [] and hit.response_header_values("x-shared") == ["yes"]
    assert "x-user" not in span_of(stores(cache.model)[0]).headers("response")
    assert cache.metric(hit_reason(tier)) == 1


def test_s_maxage_wins_over_max_age_in_a_shared_cache(make_cache):
    cache = make_cache()
    cache.fetch("/s", origin=(200, [("cache-control", "max-age=600, s-maxage=5")], b"short"))
    cache.model.advance(4_999 - STORE_BATCH_WAIT_MS)  # the fetch ended STORE_BATCH_WAIT_MS after the store
    assert cache.fetch("/s").cache_status == "HIT"
    cache.model.advance(1)  # age > 5 s = lifetime: stale (fresh only while lifetime > age, RFC 9111 §4.2)
    s = cache.fetch("/s", origin=REFETCHED)
    assert (s.cache_status, s.downstream_body) == ("MISS", b"refetched")


def test_s_maxage_forbids_serving_stale_even_with_max_stale(make_cache):
    cache = make_cache()
    cache.fetch("/s", origin=(200, [("cache-control", "s-maxage=5")], b"short"))
    cache.model.advance(6_000)
    s = cache.fetch("/s", ("cache-control", "max-stale=60"), origin=REFETCHED)
    assert (s.cache_status, s.downstream_body) == ("MISS", b"refetched")


@pytest.mark.parametrize("directive", ["must-revalidate", "proxy-revalidate"])
def test_revalidate_directives_forbid_serving_stale(make_cache, directive):
    cache = make_cache()
    cache.fetch("/m", origin=(200, [("cache-control", f"max-age=5, {directive}"), ("etag", '"v1"')], b"body"))
    cache.model.advance(1_000)
    assert cache.fetch("/m", ("cache-control", "max-stale=60")).cache_status == "HIT"  # still fresh
    cache.model.advance(5_000)
    s = cache.fetch("/m", ("cache-control", "max-stale=60"), origin=NOT_MODIFIED)
    assert dict(cache.upstream[-1])["if-none-match"] == '"v1"'  # validated with the origin first
    assert (s.cache_status, s.downstream_body) == ("HIT", b"body")
    assert cache.metric("revalidated") == 1 and cache.metric("stale_served") == 0


def test_without_revalidate_directives_max_stale_serves_stale(make_cache):
    cache = make_cache()
    cache.fetch("/m", origin=(200, [("cache-control", "max-age=5")], b"body"))
    cache.model.advance(6_000)
    s = cache.fetch("/m", ("cache-control", "max-stale=60"))
    assert (s.cache_status, s.downstream_body) == ("HIT", b"body") and cache.metric("stale_served") == 1


def test_authorization_is_bypassed_and_never_served_a_stored_entry(make_cache):
    cache = make_cache()
    cache.fetch("/doc", origin=(200, [("cache-control", "public, max-age=60")], b"public copy"))
    lookups_before = len(cache.backend.calls)
    s = cache.fetch("/doc", ("authorization", "Bearer alice"), origin=(200, [], b"alice's copy"))
    assert (s.cache_status, s.downstream_body) == ("BYPASS", b"alice's copy")
    assert cache.metric("bypass_authorization") == 1 and len(cache.backend.calls) == lookups_before
    assert cache.fetch("/doc").downstream_body == b"public copy"  # alice's answer was not stored


@pytest.mark.parametrize("directive,stored", [
    ("max-age=60", False), ("public, max-age=60", True), ("s-maxage=60", True), ("max-age=60, must-revalidate", True),
])
def test_authorized_requests_store_only_what_rfc_9111_3_5_allows(make_cache, tier, directive, stored):
    cache = make_cache(cache_authorized_requests=True)
    cache.fetch("/doc", ("authorization", "Bearer alice"), origin=(200, [("cache-control", directive)], b"shared"))
    s = cache.fetch("/doc", ("authorization", "Bearer bob"), origin=(200, [], b"other"))
    assert (s.cache_status == "HIT") is stored
    assert s.downstream_body == (b"shared" if stored else b"other")
    if stored:
        assert cache.metric(hit_reason(tier)) == 1
    else:
        assert cache.metric("store_skipped_authorization") >= 1
    # authorization itself never reaches a span
    for _, sent in cache.backend.calls:
        assert "authorization" not in sent.headers("request")


def test_public_makes_an_authorized_response_storable(make_cache):
    cache = make_cache(cache_authorized_requests=True)
    cache.fetch("/pub", ("authorization", "Bearer a"), origin=(200, [("cache-control", "public, max-age=60")], b"p"))
    assert len(stores(cache.model)) == 1


def test_stale_while_revalidate_serves_stale_within_its_window(make_cache):
    cache = make_cache()
    cache.fetch("/w", origin=(200, [("cache-control", "max-age=5, stale-while-revalidate=30")], b"old"))
    cache.model.advance(20_000)
    s = cache.fetch("/w", origin=REFETCHED)
    assert (s.cache_status, s.downstream_body, s.response_header_values("age")) == ("HIT", b"old", ["20"])
    cache.model.advance(16_000)  # 31 s stale: past the window
    late = cache.fetch("/w", origin=REFETCHED)
    assert (late.cache_status, late.downstream_body) == ("MISS", b"refetched")
    assert cache.metric("stale_served") == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_stale_if_error_answers_an_origin_error_with_the_stale_entry(make_cache, status):
    cache = make_cache()
    cache.fetch("/e", origin=(200, [("cache-control", "max-age=5, stale-if-error=60"), ("etag", '"1"')], b"old"))
    cache.model.advance(10_000)
    s = cache.fetch("/e", origin=(status, [("content-type", "text/plain")], b"origin down"))
    assert (s.cache_status, s.downstream_body) == ("HIT", b"old")
    assert s.response_headers_after[0] == (":status", "200") and cache.metric("stale_if_error") == 1
    cache.model.advance(60_000)  # past the window: the error reaches the client
    late = cache.fetch("/e", origin=(status, [], b"origin down"))
    assert (late.downstream_body, late.response_headers_after[0]) == (b"origin down", (":status", str(status)))


def test_stale_if_error_does_not_override_must_revalidate(make_cache):
    cache = make_cache()
    cc = "max-age=5, stale-if-error=60, must-revalidate"
    cache.fetch("/e", origin=(200, [("cache-control", cc)], b"old"))
    cache.model.advance(10_000)
    s = cache.fetch("/e", origin=(503, [], b"origin down"))
    assert s.downstream_body == b"origin down" and cache.metric("stale_if_error") == 0
