"""Validation (RFC 9111 §4.3), each on both tiers: the cache revalidates its own stale entries with
conditional requests it adds itself (and only then), a 304 freshens the stored headers (§4.3.4)
and the stored body is served, a 200 replaces the entry; a client's conditional request is
answered from a fresh entry (§4.3.2) and forwarded untouched otherwise."""

from __future__ import annotations

import pytest

from ._cache import hit_reason
from ._support import assert_healthy, http_date, span_of, stores

CONDITIONALS = ("if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range")


def _validated(cache, **extra_headers):
    headers = [("cache-control", "max-age=10"), ("etag", '"v1"'), ("last-modified", http_date(cache.model, -3600)),
               ("content-type", "text/plain"), ("x-version", "1"), *extra_headers.items()]
    return 200, headers, b"stored body"


def _conditionals(forwarded) -> dict[str, str]:
    return {k: v for k, v in forwarded if k in CONDITIONALS}


def test_the_cache_adds_no_conditional_header_to_a_plain_miss(make_cache):
    cache = make_cache()
    cache.fetch("/v", origin=_validated(cache))
    assert _conditionals(cache.upstream[0]) == {}


def test_a_stale_entry_is_revalidated_with_its_own_validators(make_cache):
    cache = make_cache()
    lm = http_date(cache.model, -3600)
    cache.fetch("/v", origin=_validated(cache))
    cache.model.advance(11_000)
    cache.fetch("/v", origin=(304, [("etag", '"v1"')], b""))
    assert _conditionals(cache.upstream[1]) == {"if-none-match": '"v1"', "if-modified-since": lm}


def test_a_304_freshens_the_stored_headers_and_serves_the_stored_body(make_cache, tier):
    cache = make_cache()
    cache.fetch("/v", origin=_validated(cache))
    cache.model.advance(11_000)
    answer = [("etag", '"v1"'), ("cache-control", "max-age=100"), ("x-version", "2"), ("content-length", "0")]
    s = cache.fetch("/v", origin=(304, answer, b""))
    assert (s.cache_status, s.downstream_body) == ("HIT", b"stored body")
    assert s.response_headers_after[0] == (":status", "200")
    assert s.response_header_values("x-version") == ["2"]  # §4.3.4: the 304's fields replace the stored ones
    assert s.response_header_values("cache-control") == ["max-age=100"]
    assert s.response_header_values("content-type") == ["text/plain"]  # kept from the stored response
    assert s.response_header_values("content-length") == ["11"]  # never the 304's framing
    assert cache.metric("revalidated") == 1
    # the freshened entry is stored again and now fresh for 100 s, on this tier too
    assert len(stores(cache.model)) == 2
    assert span_of(stores(cache.model)[1]).headers("response")["x-version"] == [b"2"]
    cache.model.advance(99_000)
    later = cache.fetch("/v")
    assert (later.cache_status, later.downstream_body, later.response_header_values("x-version")) == (
        "HIT", b"stored body", ["2"])
    assert cache.metric(hit_reason(tier)) == 1 and len(cache.upstream) == 2
    assert_healthy(cache.model, s, later)


def test_a_200_to_a_revalidation_replaces_the_entry(make_cache, tier):
    cache = make_cache()
    cache.fetch("/v", origin=_validated(cache))
    cache.model.advance(11_000)
    s = cache.fetch("/v", origin=(200, [("cache-control", "max-age=60"), ("etag", '"v2"')], b"new body"))
    assert (s.cache_status, s.downstream_body) == ("MISS", b"new body")
    assert cache.metric("miss_changed") == 1
    later = cache.fetch("/v")
    assert (later.cache_status, later.downstream_body) == ("HIT", b"new body")
    assert cache.metric(hit_reason(tier)) == 1


def test_a_304_whose_validator_selects_nothing_is_not_used_to_freshen(make_cache):
    cache = make_cache()
    cache.fetch("/v", origin=_validated(cache))
    cache.model.advance(11_000)
    s = cache.fetch("/v", origin=(304, [("etag", '"other"')], b""))
    # the 304 is not for the stored response (§4.3.4): it is not turned into the stored one
    assert s.downstream_body == b"" and s.response_headers_after[0] == (":status", "304")
    assert cache.metric("revalidated") == 0


def test_an_entry_without_validators_is_refetched_unconditionally(make_cache):
    cache = make_cache()
    cache.fetch("/nv", origin=(200, [("cache-control", "max-age=10")], b"old"))
    cache.model.advance(11_000)
    s = cache.fetch("/nv", origin=(200, [("cache-control", "max-age=10")], b"new"))
    assert _conditionals(cache.upstream[1]) == {} and s.downstream_body == b"new"


# ------------------------------------------------------------------ the client's conditional requests


def test_a_matching_if_none_match_gets_a_304_from_a_fresh_entry(make_cache, tier):
    cache = make_cache()
    cache.fetch("/c", origin=_validated(cache))
    s = cache.fetch("/c", ("if-none-match", '"v1"'))
    assert s.local_response is not None and s.local_response.status == 304 and s.downstream_body == b""
    assert s.response_header_values("etag") == ['"v1"'] and s.cache_status == "HIT"
    assert cache.metric("not_modified") == 1 and len(cache.upstream) == 1


def test_a_matching_if_modified_since_gets_a_304_from_a_fresh_entry(make_cache):
    cache = make_cache()
    cache.fetch("/c", origin=_validated(cache))
    s = cache.fetch("/c", ("if-modified-since", http_date(cache.model, -60)))
    assert s.local_response.status == 304 and len(cache.upstream) == 1


@pytest.mark.parametrize("header", [("if-none-match", '"v0"'), ("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")])
def test_validators_that_differ_get_the_full_stored_response(make_cache, tier, header):
    cache = make_cache()
    cache.fetch("/c", origin=_validated(cache))
    s = cache.fetch("/c", header)
    assert (s.local_response.status, s.downstream_body) == (200, b"stored body")
    assert cache.metric(hit_reason(tier)) == 1 and len(cache.upstream) == 1


def test_a_client_conditional_on_a_stale_entry_is_forwarded_with_the_clients_validators(make_cache):
    cache = make_cache()
    cache.fetch("/c", origin=_validated(cache))
    cache.model.advance(11_000)
    s = cache.fetch("/c", ("if-none-match", '"v0"'), origin=(304, [("etag", '"v0"')], b""))
    assert _conditionals(cache.upstream[1]) == {"if-none-match": '"v0"'}  # the client's, not the cache's
    assert s.response_headers_after[0] == (":status", "304") and s.cache_status == "MISS"


@pytest.mark.parametrize("header", [("if-match", '"v1"'), ("if-unmodified-since", "Sat, 01 Jan 2000 00:00:00 GMT")])
def test_preconditions_only_the_origin_evaluates_are_forwarded(make_cache, header):
    cache = make_cache()
    cache.fetch("/c", origin=_validated(cache))
    s = cache.fetch("/c", header, origin=(412, [], b""))
    assert _conditionals(cache.upstream[1]) == dict([header])
    assert s.response_headers_after[0] == (":status", "412")


def test_a_304_to_a_clients_own_conditional_does_not_mark_the_key_hit_for_pass(make_cache, tier, request):
    cache = make_cache()
    cache.fetch("/c", origin=_validated(cache))
    cache.model.advance(11_000)
    cache.fetch("/c", ("if-none-match", '"v1"'), origin=(304, [("etag", '"v1"'), ("cache-control", "max-age=60")], b""))
    after = cache.fetch("/c", origin=(200, [("cache-control", "max-age=60")], b"again"))
    assert cache.metric("hit_for_pass") == 0 and after.cache_status != "BYPASS"
