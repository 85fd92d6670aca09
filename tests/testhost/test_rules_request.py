"""Request directives (RFC 9111 §5.2.1, Pragma §5.4), each on both tiers (L1 and backend answer)."""

from __future__ import annotations

import pytest

from ._cache import hit_reason
from ._support import STORE_BATCH_WAIT_MS, assert_healthy, lookups, stores

STORED = (200, [("cache-control", "max-age=60"), ("content-type", "text/plain")], b"stored")
VALIDATED = (200, [("cache-control", "max-age=60"), ("etag", '"v1"')], b"stored")
REFETCHED = (200, [("cache-control", "max-age=60")], b"refetched")


def _stored_at_age(make_cache, age_ms: int, origin=STORED, **cfg):
    cache = make_cache(**cfg)
    cache.fetch("/r", origin=origin)  # ends by letting the store batch out: STORE_BATCH_WAIT_MS later
    cache.model.advance(age_ms - STORE_BATCH_WAIT_MS)
    return cache


@pytest.mark.parametrize("max_age,served", [(20, True), (10, True), (9, False), (0, False)])
def test_request_max_age_refuses_an_older_entry(make_cache, tier, max_age, served):
    cache = _stored_at_age(make_cache, 10_000)
    s = cache.fetch("/r", ("cache-control", f"max-age={max_age}"), origin=REFETCHED)
    assert s.downstream_body == (b"stored" if served else b"refetched")
    assert s.cache_status == ("HIT" if served else "MISS")
    assert cache.metric(hit_reason(tier) if served else "miss_stale") == 1


@pytest.mark.parametrize("min_fresh,served", [(5, True), (10, True), (11, False)])
def test_request_min_fresh_needs_that_much_freshness_left(make_cache, tier, min_fresh, served):
    cache = _stored_at_age(make_cache, 50_000)  # 10 s of freshness left
    s = cache.fetch("/r", ("cache-control", f"min-fresh={min_fresh}"), origin=REFETCHED)
    assert s.downstream_body == (b"stored" if served else b"refetched")
    assert cache.metric(hit_reason(tier) if served else "miss_stale") == 1


@pytest.mark.parametrize("directive,served", [("max-stale=10", True), ("max-stale=4", False), ("max-stale", True)])
def test_request_max_stale_accepts_a_stale_entry_within_its_bound(make_cache, directive, served):
    cache = _stored_at_age(make_cache, 65_000)  # 5 s stale
    s = cache.fetch("/r", ("cache-control", directive), origin=REFETCHED)
    assert s.downstream_body == (b"stored" if served else b"refetched")
    assert s.cache_status == ("HIT" if served else "MISS")
    if served:
        assert cache.metric("stale_served") == 1 and s.response_header_values("age") == ["65"]


def test_a_stale_entry_is_not_served_without_max_stale(make_cache):
    cache = _stored_at_age(make_cache, 60_001)
    s = cache.fetch("/r", origin=REFETCHED)
    assert (s.cache_status, s.downstream_body) == ("MISS", b"refetched") and cache.metric("miss_stale") == 1


@pytest.mark.parametrize("header", [("cache-control", "no-cache"), ("pragma", "no-cache")])
def test_request_no_cache_goes_to_the_origin_even_when_fresh(make_cache, header):
    cache = _stored_at_age(make_cache, 1_000)
    s = cache.fetch("/r", header, origin=REFETCHED)
    assert (s.cache_status, s.downstream_body) == ("MISS", b"refetched")
    assert len(cache.upstream) == 2
    # the origin's new response replaced the entry
    assert cache.fetch("/r").downstream_body == b"refetched"


@pytest.mark.parametrize("header", [("cache-control", "no-cache"), ("pragma", "no-cache")])
def test_request_no_cache_revalidates_an_entry_with_a_validator(make_cache, header):
    cache = _stored_at_age(make_cache, 1_000, origin=VALIDATED)
    s = cache.fetch("/r", header, origin=(304, [("etag", '"v1"'), ("cache-control", "max-age=60")], b""))
    assert cache.upstream[-1][-1] == ("if-none-match", '"v1"')
    assert (s.cache_status, s.downstream_body) == ("HIT", b"stored")
    assert cache.metric("revalidated") == 1


def test_pragma_is_ignored_when_cache_control_is_present(make_cache, tier):
    cache = _stored_at_age(make_cache, 1_000)
    s = cache.fetch("/r", ("pragma", "no-cache"), ("cache-control", "max-stale=5"), origin=REFETCHED)
    assert (s.cache_status, s.downstream_body) == ("HIT", b"stored")  # RFC 9111 §5.4
    assert cache.metric(hit_reason(tier)) == 1


def test_request_no_store_bypasses_and_stores_nothing(make_cache):
    cache = _stored_at_age(make_cache, 1_000)
    lookups_before, stores_before = len(lookups(cache.model)), len(stores(cache.model))
    s = cache.fetch("/r", ("cache-control", "no-store"), origin=REFETCHED)
    assert (s.cache_status, s.downstream_body) == ("BYPASS", b"refetched")
    assert cache.metric("bypass_no_store") == 1
    assert (len(lookups(cache.model)), len(stores(cache.model))) == (lookups_before, stores_before)
    # the earlier entry is untouched and still served
    assert cache.fetch("/r").downstream_body == b"stored"
    assert_healthy(cache.model, s)


def test_request_no_store_response_is_not_stored(make_cache):
    cache = make_cache()
    cache.fetch("/n", ("cache-control", "no-store"), origin=STORED)
    s = cache.fetch("/n", origin=REFETCHED)
    assert (s.cache_status, s.downstream_body) == ("MISS", b"refetched")
    assert len(stores(cache.model)) <= 1 and span_keys_stored(cache) == {"/n": b"refetched"}


def span_keys_stored(cache) -> dict[str, bytes]:
    """Path -> body of every entry the fake backend holds."""
    out = {}
    for variants in cache.backend.entries.values():
        for span in variants.values():
            attrs = {a.key: a.value for a in span.attributes}
            out[attrs["url.path"].string_value] = attrs["http.response.body"].bytes_value
    return out


def test_only_if_cached_with_nothing_stored_is_a_504_and_never_reaches_the_origin(make_cache):
    cache = make_cache()
    s = cache.fetch("/none", ("cache-control", "only-if-cached"))
    assert s.local_response is not None and s.local_response.status == 504
    assert s.cache_status == "MISS" and cache.upstream == []
    assert cache.metric("only_if_cached") == 1
    assert_healthy(cache.model, s)



@pytest.mark.parametrize("age_ms,directive,served", [
    (1_000, "only-if-cached", "fresh"), (61_000, "only-if-cached, max-stale", "stale_served")])
def test_only_if_cached_serves_a_usable_entry(make_cache, tier, request, age_ms, directive, served):
    cache = _stored_at_age(make_cache, age_ms)
    s = cache.fetch("/r", ("cache-control", directive))
    assert (s.cache_status, s.downstream_body) == ("HIT", b"stored") and len(cache.upstream) == 1
    assert cache.metric(hit_reason(tier) if served == "fresh" else served) == 1


def test_only_if_cached_with_a_stale_entry_is_a_504(make_cache):
    cache = _stored_at_age(make_cache, 61_000, origin=VALIDATED)
    s = cache.fetch("/r", ("cache-control", "only-if-cached"))
    assert s.local_response.status == 504 and len(cache.upstream) == 1
    assert cache.metric("only_if_cached") == 1
