"""Vary (RFC 9111 §4.1) with no configuration, and content-coding safety (RFC 9110 §12.5.3),
each on both tiers: every variant is stored under one key, told apart by the hash of the request
values Vary nominates; a variant is never served to another variant's request."""

from __future__ import annotations

import pytest

from sp_istio_cache.entry import variant_hash

from ._cache import hit_reason
from ._support import assert_healthy, span_of, stores


def _by_language(forwarded):
    lang = dict(forwarded).get("accept-language", "none")
    return 200, [("cache-control", "max-age=60"), ("vary", "Accept-Language"), ("content-language", lang)], \
        f"text in {lang}".encode()


def test_each_variant_is_stored_and_served_only_to_its_own_requests(make_cache, tier):
    cache = make_cache()
    de = cache.fetch("/t", ("accept-language", "de"), origin=_by_language)
    fr = cache.fetch("/t", ("accept-language", "fr"), origin=_by_language)
    assert (de.cache_status, fr.cache_status) == ("MISS", "MISS")  # fr never got the de variant
    none = cache.fetch("/t", origin=_by_language)  # a request without the header is a variant too
    assert (none.cache_status, none.downstream_body) == ("MISS", b"text in none")
    for lang in ("de", "fr", "de", "fr"):
        s = cache.fetch("/t", ("accept-language", lang), origin=_by_language)
        assert (s.cache_status, s.downstream_body) == ("HIT", f"text in {lang}".encode())
    plain = cache.fetch("/t", origin=_by_language)
    assert (plain.cache_status, plain.downstream_body) == ("HIT", b"text in none")
    assert len(cache.upstream) == 3 and cache.metric(hit_reason(tier)) == 5
    keys = {span_of(c).key for c in stores(cache.model)}
    assert len(keys) == 1  # one primary key: variants are not part of it
    assert_healthy(cache.model, de, fr, none, plain)


def test_the_variant_attribute_is_the_hash_of_the_nominated_request_values(make_cache):
    cache = make_cache()
    cache.fetch("/t", ("accept-language", "de"), ("accept", "text/html"), origin=_by_language)
    sent = span_of(stores(cache.model)[0])
    assert sent.attrs["sp.cache.variant"] == variant_hash(["accept-language"], [("accept-language", "de")])


def test_vary_normalises_whitespace_and_case_of_case_insensitive_fields(make_cache):
    cache = make_cache()
    cache.fetch("/t", ("accept-language", "de, fr"), origin=_by_language)
    s = cache.fetch("/t", ("accept-language", "DE,fr"), origin=_by_language)
    assert s.cache_status == "HIT"


def test_vary_on_several_headers_needs_every_value_to_match(make_cache):
    cache = make_cache()
    origin = (200, [("cache-control", "max-age=60"), ("vary", "accept-language, x-tenant")], b"a")
    cache.fetch("/t", ("accept-language", "de"), ("x-tenant", "a"), origin=origin)
    other = cache.fetch("/t", ("accept-language", "de"), ("x-tenant", "b"), origin=(200, origin[1], b"b"))
    same = cache.fetch("/t", ("x-tenant", "a"), ("accept-language", "de"))
    assert (other.cache_status, other.downstream_body) == ("MISS", b"b")
    assert (same.cache_status, same.downstream_body) == ("HIT", b"a")


def test_one_variants_unstorable_response_does_not_stop_the_others_being_served(make_cache, tier, request):
    cache = make_cache()
    cache.fetch("/t", ("accept-language", "de"), origin=_by_language)
    private = (200, [("cache-control", "private"), ("vary", "Accept-Language")], b"private fr")
    cache.fetch("/t", ("accept-language", "fr"), origin=private)
    de = cache.fetch("/t", ("accept-language", "de"), origin=_by_language)
    assert (de.cache_status, de.downstream_body) == ("HIT", b"text in de")


def test_vary_star_is_never_stored(make_cache):
    cache = make_cache()
    cache.fetch("/t", origin=(200, [("cache-control", "max-age=60"), ("vary", "*")], b"x"))
    again = cache.fetch("/t", origin=(200, [("cache-control", "max-age=60"), ("vary", "*")], b"y"))
    assert again.downstream_body == b"y" and stores(cache.model) == []
    assert cache.metric("store_skipped_vary_star") == 2


def test_a_redacted_header_nominated_by_vary_is_hashed_and_never_sent(make_cache, tier):
    cache = make_cache()
    origin = (200, [("cache-control", "max-age=60"), ("vary", "Cookie")], b"for session 1")
    cache.fetch("/me", ("cookie", "session=secret-one"), origin=origin)
    same = cache.fetch("/me", ("cookie", "session=secret-one"))
    other = cache.fetch("/me", ("cookie", "session=secret-two"), origin=(200, [], b"for session 2"))
    assert (same.cache_status, same.downstream_body) == ("HIT", b"for session 1")
    assert (other.cache_status, other.downstream_body) == ("MISS", b"for session 2")
    for call in cache.model.calls:
        assert b"secret-one" not in call.body and b"secret-two" not in call.body


# ------------------------------------------------------------------ content coding


GZIPPED = (200, [("cache-control", "max-age=60"), ("content-encoding", "gzip")], b"\x1f\x8b compressed")


@pytest.mark.parametrize("accept", ["identity", "br", "gzip;q=0", "*;q=0"])
def test_a_coding_the_client_does_not_accept_is_never_served(make_cache, accept):
    cache = make_cache()
    cache.fetch("/z", ("accept-encoding", "gzip"), origin=GZIPPED)  # the response has no Vary
    s = cache.fetch("/z", ("accept-encoding", accept), origin=(200, [("cache-control", "max-age=60")], b"plain"))
    assert (s.cache_status, s.downstream_body) == ("MISS", b"plain")
    assert cache.metric("encoding_mismatch") == 1


@pytest.mark.parametrize("accept", ["gzip", "x-gzip", "br, gzip;q=0.5", "*"])
def test_an_accepted_coding_is_served(make_cache, tier, accept):
    cache = make_cache()
    cache.fetch("/z", ("accept-encoding", "gzip"), origin=GZIPPED)
    s = cache.fetch("/z", ("accept-encoding", accept))
    assert (s.cache_status, s.downstream_body) == ("HIT", GZIPPED[2])
    assert cache.metric(hit_reason(tier)) == 1


def test_a_request_without_accept_encoding_accepts_any_coding(make_cache):
    cache = make_cache()
    cache.fetch("/z", ("accept-encoding", "gzip"), origin=GZIPPED)
    assert cache.fetch("/z").cache_status == "HIT"  # RFC 9110 §12.5.3: no field, any coding
