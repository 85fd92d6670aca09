"""Age, staleness and validation (RFC 9111 §4.2.3, §4.3; RFC 5861) through the real Envoy, with
``allow_on_headers_stop_iteration`` on and off.

The upstream's request log (``/__requests``) shows what the cache forwarded: its own conditional
headers during a revalidation and nothing else. The upstream's counter shows each revalidation
and each full fetch; the filter's reason counters say which happened.
"""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest
from e2e_support import LAST_MODIFIED, Delta, fetch, header_names, query, upstream_requests

from sp_istio_cache.upstream.payload import generate

pytestmark = pytest.mark.envoy

FRESH = ("cache_control", "max-age=60")
STALE_AT_ONCE = ("cache_control", "max-age=0")


def aged_path(n: int, source: str, seconds: int) -> str:
    """A fresh-for-60-s response that arrives ``seconds`` old: by its Age header, or by a Date
    that far back (RFC 9111 §4.2.3 corrected_age_value / apparent_age)."""
    if source == "age":
        field = ("header", f"Age:{seconds}")
    else:
        field = ("header", "Date:" + formatdate(time.time() - seconds, usegmt=True))
    return f"/bytes/{n}?" + query(field, FRESH)


@pytest.mark.parametrize("source", ["age", "date"])
def test_the_current_age_counts_the_age_the_response_arrived_with(rule_stack, source):
    """§4.2.3: apparent age (Date) and the received Age both count; a hit's Age says so."""
    n = 201 if source == "age" else 202
    path = aged_path(n, source, 30)
    d = Delta(rule_stack)
    miss, hit = fetch(rule_stack, path), fetch(rule_stack, path)
    assert (miss.cache, hit.cache, hit.body) == ("MISS", "HIT", miss.body)
    ages = hit.header_values("age")
    assert len(ages) == 1 and 30 <= int(ages[0]) <= 33, ages
    assert d.upstream(f"/bytes/{n}") == 1


@pytest.mark.parametrize("source", ["age", "date"])
def test_a_response_older_than_its_lifetime_on_arrival_is_never_served(rule_stack, source):
    n = 211 if source == "age" else 212
    path = aged_path(n, source, 100)
    d = Delta(rule_stack)
    replies = [fetch(rule_stack, path) for _ in range(2)]
    assert [(r.status, r.cache) for r in replies] == [(200, "MISS"), (200, "MISS")]
    assert d.upstream(f"/bytes/{n}") == 2
    assert d.reasons() == {"not_found": 1, "miss_stale": 1}


def assert_forwarded_with_only(seen: list[dict], validator: str, value: str) -> None:
    """The revalidation (the second request the upstream saw) is the first one plus the
    cache's own validator."""
    assert len(seen) == 2
    first, second = seen
    assert validator not in [n.lower() for n, _ in first["headers"]]
    assert [v for n, v in second["headers"] if n.lower() == validator] == [value]
    assert header_names(second["headers"]) == sorted(header_names(first["headers"]) + [validator])


def test_a_stale_entry_with_an_etag_is_revalidated_with_if_none_match(rule_stack):
    path = "/bytes/203?" + query(STALE_AT_ONCE, ("etag", "1"), ("seed", "reval-etag"))
    client = [("X-Client", "one"), ("Accept", "*/*")]
    d = Delta(rule_stack)
    first = fetch(rule_stack, path, headers=client)
    second = fetch(rule_stack, path, headers=client)
    assert (first.cache, second.status, second.cache, second.body) == ("MISS", 200, "HIT", first.body)
    assert second.header("etag") == first.header("etag")
    assert d.upstream("/bytes/203") == 2  # the origin answered 304 to the revalidation
    assert d.reasons() == {"not_found": 1, "revalidated": 1}
    assert_forwarded_with_only(upstream_requests(rule_stack, path), "if-none-match", first.header("etag"))


def test_a_stale_entry_with_last_modified_is_revalidated_with_if_modified_since(rule_stack):
    path = "/bytes/204?" + query(STALE_AT_ONCE, ("last_modified", LAST_MODIFIED), ("seed", "reval-lm"))
    d = Delta(rule_stack)
    first, second = fetch(rule_stack, path), fetch(rule_stack, path)
    assert (first.cache, second.status, second.cache, second.body) == ("MISS", 200, "HIT", first.body)
    assert second.header("last-modified") == LAST_MODIFIED
    assert d.upstream("/bytes/204") == 2
    assert d.reasons() == {"not_found": 1, "revalidated": 1}
    assert_forwarded_with_only(upstream_requests(rule_stack, path), "if-modified-since", LAST_MODIFIED)


def test_a_changed_resource_replaces_the_entry(rule_stack):
    # an ETag the app never matches: the revalidation is answered with a full 200
    path = "/bytes/206?" + query(STALE_AT_ONCE, ("header", 'ETag:"v1"'), ("seed", "changed"))
    d = Delta(rule_stack)
    replies = [fetch(rule_stack, path) for _ in range(2)]
    assert [(r.status, r.cache, r.body) for r in replies] == [(200, "MISS", generate(206, "changed"))] * 2
    assert d.reasons() == {"not_found": 1, "miss_changed": 1}
    assert d.upstream("/bytes/206") == 2
    assert_forwarded_with_only(upstream_requests(rule_stack, path), "if-none-match", '"v1"')


def test_after_its_lifetime_an_entry_is_revalidated_served_stale_or_refetched(rule_stack):
    """One wait past a 1 s lifetime for three entries: with a validator the 304 freshens it
    (§4.3.4: the next request is an L1 hit again); with stale-while-revalidate it is served stale
    (RFC 5861 §3); with neither the origin is asked for the whole response."""
    etag = "/bytes/221?" + query(("cache_control", "max-age=1"), ("etag", "1"), ("seed", "freshen"))
    swr = "/bytes/222?" + query(("cache_control", "max-age=1, stale-while-revalidate=60"), ("seed", "swr"))
    plain = "/bytes/223?" + query(("cache_control", "max-age=1"), ("seed", "expire"))
    first = {p: fetch(rule_stack, p) for p in (etag, swr, plain)}
    assert {r.cache for r in first.values()} == {"MISS"}
    time.sleep(1.2)

    d = Delta(rule_stack)
    revalidated, again = fetch(rule_stack, etag), fetch(rule_stack, etag)
    assert [(r.cache, r.body) for r in (revalidated, again)] == [("HIT", first[etag].body)] * 2
    stale = fetch(rule_stack, swr)
    assert (stale.cache, stale.body) == ("HIT", first[swr].body)
    assert int(stale.header("age")) >= 1
    refetched = fetch(rule_stack, plain)
    assert (refetched.cache, refetched.body) == ("MISS", first[plain].body)
    assert (d.upstream("/bytes/221"), d.upstream("/bytes/223")) == (1, 1)
    reasons = d.reasons()
    assert (reasons.get("revalidated"), reasons.get("l1_hit"), reasons.get("stale_served"),
            reasons.get("miss_stale")) == (1, 1, 1, 1)


def test_a_request_with_no_cache_is_validated_with_the_origin(rule_stack):
    with_etag = "/bytes/207?" + query(FRESH, ("etag", "1"), ("seed", "req-no-cache"))
    without = "/bytes/208?" + query(FRESH, ("seed", "req-no-cache"))
    stored = {p: fetch(rule_stack, p) for p in (with_etag, without)}
    d = Delta(rule_stack)
    validated = fetch(rule_stack, with_etag, headers=[("Cache-Control", "no-cache")])
    assert (validated.status, validated.cache, validated.body) == (200, "HIT", stored[with_etag].body)
    refetched = fetch(rule_stack, without, headers=[("Cache-Control", "no-cache")])
    assert (refetched.status, refetched.cache) == (200, "MISS")
    assert (d.upstream("/bytes/207"), d.upstream("/bytes/208")) == (1, 1)
    assert d.reasons() == {"revalidated": 1, "miss_stale": 1}


def test_a_client_if_none_match_is_answered_304_from_a_fresh_entry(rule_stack):
    path = "/bytes/209?" + query(FRESH, ("etag", "1"), ("seed", "client-inm"))
    first = fetch(rule_stack, path)
    etag = first.header("etag")
    d = Delta(rule_stack)
    not_modified = fetch(rule_stack, path, headers=[("If-None-Match", etag)])
    assert (not_modified.status, not_modified.cache, not_modified.body) == (304, "HIT", b"")
    assert not_modified.header("etag") == etag
    other = fetch(rule_stack, path, headers=[("If-None-Match", '"other"')])
    assert (other.status, other.cache, other.body) == (200, "HIT", first.body)
    assert d.upstream("/bytes/209") == 0
    assert d.reasons() == {"not_modified": 1, "l1_hit": 1}


def test_a_client_if_modified_since_is_answered_304_from_a_fresh_entry(rule_stack):
    path = "/bytes/210?" + query(FRESH, ("last_modified", LAST_MODIFIED), ("seed", "client-ims"))
    first = fetch(rule_stack, path)
    d = Delta(rule_stack)
    not_modified = fetch(rule_stack, path, headers=[("If-Modified-Since", LAST_MODIFIED)])
    assert (not_modified.status, not_modified.cache, not_modified.body) == (304, "HIT", b"")
    modified = fetch(rule_stack, path, headers=[("If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT")])
    assert (modified.status, modified.cache, modified.body) == (200, "HIT", first.body)
    assert d.upstream("/bytes/210") == 0
    assert d.reasons() == {"not_modified": 1, "l1_hit": 1}


def test_only_if_cached_is_answered_from_the_cache_or_504(rule_stack):
    stored = "/bytes/230?" + query(FRESH, ("seed", "only-if-cached"))
    missing = "/bytes/231?" + query(FRESH, ("seed", "only-if-cached"))
    first = fetch(rule_stack, stored)
    d = Delta(rule_stack)
    only = [("Cache-Control", "only-if-cached")]
    hit = fetch(rule_stack, stored, headers=only)
    assert (hit.status, hit.cache, hit.body) == (200, "HIT", first.body)
    gateway_timeout = fetch(rule_stack, missing, headers=only)
    assert (gateway_timeout.status, gateway_timeout.cache) == (504, "MISS")
    assert (d.upstream("/bytes/230"), d.upstream("/bytes/231")) == (0, 0)
    assert d.reasons() == {"l1_hit": 1, "only_if_cached": 1}


LIFETIMES = [
    ("s-maxage-over-max-age", [("cache_control", "max-age=0, s-maxage=60")], True),   # §5.2.2.10
    ("s-maxage-zero", [("cache_control", "max-age=60, s-maxage=0")], False),
    ("expires-ahead", [("header", lambda: "Expires:" + formatdate(time.time() + 60, usegmt=True))], True),  # §5.3
    ("expires-behind", [("header", lambda: "Expires:" + formatdate(time.time() - 60, usegmt=True))], False),
    ("expires-invalid", [("header", "Expires:0")], False),  # "an invalid date ... in the past"
    ("max-age-beats-expires", [("cache_control", "max-age=60"), ("header", "Expires:0")], True),
    # RFC 9213
    ("cdn-cache-control", [("cache_control", "no-store"), ("header", "CDN-Cache-Control:max-age=60")], True),
    ("cdn-cache-control-no-store", [FRESH, ("header", "CDN-Cache-Control:no-store")], False),
]


@pytest.mark.parametrize("case,options,served", LIFETIMES, ids=[c[0] for c in LIFETIMES])
def test_the_freshness_lifetime_comes_from_the_field_the_rfc_says(rule_stack, case, options, served):
    n = 240 + [c[0] for c in LIFETIMES].index(case)
    options = [(k, v() if callable(v) else v) for k, v in options]  # dates relative to now, not to import
    path = f"/bytes/{n}?" + query(*options, ("seed", case))
    d = Delta(rule_stack)
    first, second = fetch(rule_stack, path), fetch(rule_stack, path)
    assert (first.cache, second.body) == ("MISS", first.body)
    assert (second.cache == "HIT", d.upstream(f"/bytes/{n}")) == (served, 1 if served else 2)
