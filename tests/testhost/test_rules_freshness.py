"""Freshness rules (RFC 9111 §4.2), each on both tiers: the entry served from the in-proxy L1
(``l1``) and from the backend's lookup answer (``backend``, L1 off).

Safe defaults: only explicit freshness is stored; ``default_ttl_seconds`` and heuristic freshness
are opt-in. Age: computed from the received Age and Date and the time in transit (§4.2.3), sent
on every hit (§5.1).
"""

from __future__ import annotations

from ._cache import hit_reason
from ._support import assert_healthy, http_date, stores

MAX_AGE_60 = (200, [("cache-control", "max-age=60"), ("content-type", "text/plain")], b"fresh body")


def test_a_response_without_explicit_freshness_is_neither_stored_nor_served(make_cache):
    cache = make_cache()
    origin = (200, [("content-type", "application/json")], b'{"n": 1}')
    first = cache.fetch("/api", origin=origin)
    second = cache.fetch("/api", origin=(200, [], b'{"n": 2}'))
    assert (first.cache_status, first.downstream_body) == ("MISS", b'{"n": 1}')
    # the first answer marked the key hit-for-pass: no lookup, and still judged for storing
    assert (second.cache_status, second.downstream_body) == ("BYPASS", b'{"n": 2}')
    assert len(cache.upstream) == 2 and stores(cache.model) == []
    assert cache.metric("store_skipped_no_freshness") == 2 and cache.metric("hit_for_pass") == 1
    assert_healthy(cache.model, first, second)


def test_default_ttl_is_an_opt_in_lifetime_for_responses_without_one(make_cache, tier):
    cache = make_cache(default_ttl_seconds=30)
    cache.fetch("/api", origin=(200, [("content-type", "application/json")], b"v1"))
    cache.model.advance(29_000)
    hit = cache.fetch("/api")
    assert (hit.cache_status, hit.downstream_body, hit.response_header_values("age")) == ("HIT", b"v1", ["29"])
    cache.model.advance(1_001)
    stale = cache.fetch("/api", origin=(200, [], b"v2"))
    assert (stale.cache_status, stale.downstream_body) == ("MISS", b"v2")
    assert cache.metric(hit_reason(tier)) == 1 and cache.metric("miss_stale") == 1
    assert len(cache.upstream) == 2


def test_default_ttl_never_overrides_an_explicit_zero(make_cache):
    cache = make_cache(default_ttl_seconds=300)
    cache.fetch("/z", origin=(200, [("cache-control", "max-age=0")], b"v1"))
    again = cache.fetch("/z", origin=(200, [("cache-control", "max-age=0")], b"v2"))
    assert (again.cache_status, again.downstream_body) == ("BYPASS", b"v2")  # hit-for-pass after the first
    assert stores(cache.model) == [] and cache.metric("store_skipped_no_freshness") == 2


def _last_modified_origin(cache, age_of_document_s: int):
    # RFC 9111 §4.2.2: 10 % of Date - Last-Modified
    return (200, [("date", http_date(cache.model)), ("last-modified", http_date(cache.model, -age_of_document_s))],
            b"document")


def test_heuristic_freshness_is_off_by_default(make_cache):
    cache = make_cache()
    cache.fetch("/doc", origin=_last_modified_origin(cache, 1000))
    again = cache.fetch("/doc", origin=(200, [], b"again"))
    assert again.cache_status != "HIT" and len(cache.upstream) == 2


def test_heuristic_freshness_opt_in_gives_ten_percent_of_the_last_modified_age(make_cache, tier):
    cache = make_cache(heuristic_freshness=True)
    cache.fetch("/doc", origin=_last_modified_origin(cache, 1000))  # lifetime 100 s
    cache.model.advance(99_000)
    hit = cache.fetch("/doc")
    assert (hit.cache_status, hit.downstream_body) == ("HIT", b"document")
    cache.model.advance(2_000)
    # stale now; it has Last-Modified, so the cache revalidates: the origin's 200 replaces it
    late = cache.fetch("/doc", origin=(200, [("cache-control", "max-age=5")], b"new"))
    assert (late.cache_status, late.downstream_body) == ("MISS", b"new")
    assert cache.metric(hit_reason(tier)) == 1


def test_heuristic_lifetime_is_capped_by_heuristic_max_seconds(make_cache):
    cache = make_cache(heuristic_freshness=True, heuristic_max_seconds=10)
    cache.fetch("/doc", origin=_last_modified_origin(cache, 10**6))  # 10 % would be 100,000 s
    cache.model.advance(11_000)
    late = cache.fetch("/doc", origin=(200, [], b"refetched"))
    assert late.cache_status == "MISS" and late.downstream_body == b"refetched"


def test_age_header_on_a_hit_counts_the_time_in_the_cache(make_cache):
    cache = make_cache()
    cache.fetch("/a", origin=MAX_AGE_60)
    cache.model.advance(7_400)
    hit = cache.fetch("/a")
    assert hit.cache_status == "HIT" and hit.response_header_values("age") == ["7"]


def test_received_age_is_added_and_shortens_the_freshness(make_cache, tier):
    cache = make_cache()
    cache.fetch("/a", origin=(200, [("cache-control", "max-age=60"), ("age", "50")], b"aged"))
    cache.model.advance(5_000)
    hit = cache.fetch("/a")
    assert (hit.cache_status, hit.response_header_values("age")) == ("HIT", ["55"])
    cache.model.advance(5_001)  # current age 60.001 s > 60 s
    stale = cache.fetch("/a", origin=(200, [("cache-control", "max-age=60")], b"refetched"))
    assert (stale.cache_status, stale.downstream_body) == ("MISS", b"refetched")
    assert cache.metric(hit_reason(tier)) == 1 and cache.metric("miss_stale") == 1


def test_apparent_age_from_an_old_date_shortens_the_freshness(make_cache):
    cache = make_cache()
    cache.fetch("/a", origin=(200, [("cache-control", "max-age=60"), ("date", http_date(cache.model, -30))], b"old"))
    hit = cache.fetch("/a")
    assert (hit.cache_status, hit.response_header_values("age")) == ("HIT", ["30"])
    cache.model.advance(30_001)
    stale = cache.fetch("/a", origin=(200, [("cache-control", "max-age=60")], b"refetched"))
    assert stale.cache_status == "MISS" and stale.downstream_body == b"refetched"


def test_time_in_transit_is_added_to_the_received_age(make_cache):
    cache = make_cache()

    def slow_origin(_forwarded):
        cache.model.advance(4_000)  # the origin takes 4 s: response_time - request_time
        return 200, [("cache-control", "max-age=60"), ("age", "10")], b"slow"

    cache.fetch("/slow", origin=slow_origin)
    hit = cache.fetch("/slow")
    assert (hit.cache_status, hit.response_header_values("age")) == ("HIT", ["14"])  # 10 + 4 (RFC 9111 §4.2.3)


def test_a_stored_age_header_is_replaced_not_repeated(make_cache):
    cache = make_cache()
    cache.fetch("/a", origin=(200, [("cache-control", "max-age=60"), ("age", "3")], b"x"))
    cache.model.advance(1_000)
    hit = cache.fetch("/a")
    assert hit.response_header_values("age") == ["4"]


def test_expires_minus_date_is_the_lifetime(make_cache):
    cache = make_cache()
    headers = [("date", http_date(cache.model)), ("expires", http_date(cache.model, 20))]
    cache.fetch("/e", origin=(200, headers, b"expiring"))
    cache.model.advance(19_000)
    assert cache.fetch("/e").cache_status == "HIT"
    cache.model.advance(1_001)
    assert cache.fetch("/e", origin=(200, [], b"n")).cache_status == "MISS"


def test_an_invalid_expires_means_already_expired(make_cache):
    cache = make_cache()
    cache.fetch("/e", origin=(200, [("expires", "0")], b"expired"))
    assert cache.fetch("/e", origin=(200, [], b"n")).cache_status != "HIT"
    assert stores(cache.model) == []


def test_max_age_wins_over_expires(make_cache):
    cache = make_cache()
    headers = [("cache-control", "max-age=5"), ("date", http_date(cache.model)),
               ("expires", http_date(cache.model, 600))]
    cache.fetch("/e", origin=(200, headers, b"short"))
    cache.model.advance(5_001)
    assert cache.fetch("/e", origin=(200, [], b"n")).cache_status == "MISS"
