"""Invalidation after unsafe methods (RFC 9111 §4.4), on both tiers: a non-error response to
POST/PUT/DELETE/PATCH invalidates the target URI and the same-origin Location and
Content-Location; the L1 keeps a tombstone that refuses older entries from the backend."""

from __future__ import annotations

import pytest

from sp_istio_cache.fingerprint import request_fingerprint

from ._cache import hit_reason
from ._support import AUTHORITY, INVALIDATE_PATH, assert_healthy, calls_to, req, span_of

STORED = (200, [("cache-control", "max-age=600")], b"stored")


def _get_key(path: str) -> str:
    return request_fingerprint("GET", "http", AUTHORITY, path)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_a_successful_unsafe_request_invalidates_its_target(make_cache, tier, method):
    cache = make_cache()
    cache.fetch("/doc", origin=STORED)
    assert cache.fetch("/doc").cache_status == "HIT"
    unsafe = cache.fetch("/doc", method=method, origin=(204, [], b""))
    assert unsafe.cache_status == "BYPASS" and cache.metric("invalidate_sent") == 1
    (call,) = calls_to(cache.model, INVALIDATE_PATH)
    sent = span_of(call)
    assert sent.attrs["sp.span.type"] == "invalidate" and sent.attrs["http.request.method"] == method
    assert sent.attrs["sp.cache.invalidate.keys"] == [_get_key("/doc")]
    after = cache.fetch("/doc", origin=(200, [("cache-control", "max-age=600")], b"changed"))
    assert (after.cache_status, after.downstream_body) == ("MISS", b"changed")
    assert cache.metric(hit_reason(tier)) == 1
    assert_healthy(cache.model, unsafe, after)


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_an_error_response_invalidates_nothing(make_cache, status):
    cache = make_cache()
    cache.fetch("/doc", origin=STORED)
    cache.fetch("/doc", method="POST", origin=(status, [], b"failed"))
    assert calls_to(cache.model, INVALIDATE_PATH) == []
    assert cache.fetch("/doc").downstream_body == b"stored"


@pytest.mark.parametrize("field", ["location", "content-location"])
@pytest.mark.parametrize("value,target", [
    ("/other", "/other"),
    ("other?x=1", "/items/other?x=1"),
    ("http://svc.example:8080/other", "/other"),
    ("http://SVC.example:8080/a/../other#frag", "/other"),
])
def test_same_origin_location_and_content_location_are_invalidated(make_cache, tier, field, value, target):
    cache = make_cache()
    cache.fetch(target, origin=STORED)
    cache.fetch("/items/new", method="POST", origin=(201, [(field, value)], b""))
    keys = span_of(calls_to(cache.model, INVALIDATE_PATH)[0]).attrs["sp.cache.invalidate.keys"]
    assert keys == [_get_key("/items/new"), _get_key(target)]
    after = cache.fetch(target, origin=(200, [("cache-control", "max-age=600")], b"changed"))
    assert after.downstream_body == b"changed"


@pytest.mark.parametrize("value", ["http://other.example/other", "https://svc.example:8080/other",
                                   "http://svc.example:9090/other", "http://user@svc.example:8080/other"])
def test_another_origins_location_is_never_invalidated(make_cache, value):
    cache = make_cache()
    cache.fetch("/other", origin=STORED)
    cache.fetch("/items/new", method="POST", origin=(201, [("location", value)], b""))
    keys = span_of(calls_to(cache.model, INVALIDATE_PATH)[0]).attrs["sp.cache.invalidate.keys"]
    assert keys == [_get_key("/items/new")]
    assert cache.fetch("/other").downstream_body == b"stored"


def _post_without_backend_invalidation(cache, path: str) -> None:
    """A POST whose invalidation callout fails: the backend keeps the old entry."""
    s = cache.model.new_stream()
    s.request(req("POST", path), b"{}")
    s.respond(200, [], b"ok")
    s.done()
    (call,) = [c for c in cache.model.pending_calls if c.path == INVALIDATE_PATH]
    cache.model.fail_http_call(call)


def test_the_l1_tombstone_refuses_an_older_entry_from_the_backend(make_host):
    from ._cache import Cache
    from ._support import config

    cache = Cache(make_host(config()))
    cache.fetch("/doc", origin=STORED)
    cache.model.advance(1_000)
    _post_without_backend_invalidation(cache, "/doc")
    assert cache.metric("invalidate_failed") == 1 and cache.backend.entries  # the backend still has it
    cache.model.advance(1_000)
    after = cache.fetch("/doc", origin=(200, [("cache-control", "max-age=600")], b"changed"))
    assert (after.cache_status, after.downstream_body) == ("MISS", b"changed")
    assert cache.metric("entry_rejected_invalidated") == 1
    # the response that came after the invalidation is stored over the tombstone and served
    cache.model.advance(1_000)
    again = cache.fetch("/doc")
    assert (again.cache_status, again.downstream_body) == ("HIT", b"changed") and cache.metric("l1_hit") == 1


def test_an_entry_stored_in_the_same_millisecond_as_the_invalidation_is_refused(make_host):
    from ._cache import Cache
    from ._support import config

    cache = Cache(make_host(config()))
    cache.fetch("/doc", origin=STORED)
    _post_without_backend_invalidation(cache, "/doc")  # no time passed: response_time == tombstone time
    after = cache.fetch("/doc", origin=(200, [], b"changed"))
    assert after.downstream_body == b"changed" and cache.metric("entry_rejected_invalidated") == 1
