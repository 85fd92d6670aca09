"""Serving stale entries (RFC 9111 §4.2.4, RFC 5861 §4) through the real Envoy with
``allow_on_headers_stop_iteration`` on and off, when the origin is gone: the module's fixture
stores entries with a 1 s lifetime, waits past it, then stops the upstream, so Envoy's router
answers every forwarded request 503 (with a body).
"""

from __future__ import annotations

import time

import pytest
from e2e_support import Delta, fetch, query

from sp_istio_cache.upstream.payload import generate

pytestmark = pytest.mark.envoy

SIE = ("cache_control", "max-age=1, stale-if-error=60")
PATHS = {
    "body": "/bytes/900?" + query(SIE, ("seed", "sie")),
    "etag": "/bytes/901?" + query(SIE, ("etag", "1"), ("seed", "sie")),
    "empty": "/bytes/0?" + query(SIE, ("seed", "sie-empty")),
    "no-sie": "/bytes/903?" + query(("cache_control", "max-age=1"), ("seed", "no-sie")),
    "max-stale": "/bytes/904?" + query(("cache_control", "max-age=1"), ("seed", "max-stale")),
    "must-revalidate": "/bytes/905?" + query(("cache_control", "max-age=1, must-revalidate, stale-if-error=60"),
                                             ("seed", "must-revalidate")),
}


@pytest.fixture(scope="module")
def origin_gone(module_stacks, allow_stop_iteration):
    stack = module_stacks(allow_on_headers_stop_iteration=allow_stop_iteration)
    stored = {name: fetch(stack, path) for name, path in PATHS.items()}
    assert {r.cache for r in stored.values()} == {"MISS"}
    time.sleep(1.2)  # every entry is stale now
    stack.upstream.stop()
    return stack, stored


@pytest.mark.parametrize("name", ["body", "etag"])
def test_a_stale_entry_within_stale_if_error_answers_when_the_origin_fails(origin_gone, name):
    stack, stored = origin_gone
    d = Delta(stack)
    reply = fetch(stack, PATHS[name])
    assert (reply.status, reply.cache, reply.body) == (200, "HIT", stored[name].body)
    assert int(reply.header("age")) >= 1
    assert reply.header_values("content-length") == [str(len(stored[name].body))]
    assert d.reasons() == {"stale_if_error": 1}


def test_a_stale_empty_entry_keeps_its_content_type_when_served_on_error(origin_gone):
    """FILTER BUG: from the response path the stale entry goes out as a local reply (the 503 has
    a body, so it cannot be rewritten in place), Envoy drops Content-Type from a local reply
    without a body, and that reply never passes the filter again to restore it."""
    stack, stored = origin_gone
    reply = fetch(stack, PATHS["empty"])
    assert (reply.status, reply.cache, reply.body) == (200, "HIT", b"")
    assert reply.header_values("content-type") == ["application/octet-stream"]


def test_without_stale_if_error_the_origins_failure_reaches_the_client(origin_gone):
    stack, _ = origin_gone
    d = Delta(stack)
    reply = fetch(stack, PATHS["no-sie"])
    assert (reply.status, reply.cache) == (503, "MISS")
    assert generate(903, "no-sie") not in reply.body
    assert d.reasons() == {"miss_stale": 1}


def test_a_client_max_stale_is_served_from_the_cache_without_the_origin(origin_gone):
    stack, stored = origin_gone
    d = Delta(stack)
    reply = fetch(stack, PATHS["max-stale"], headers=[("Cache-Control", "max-stale=30")])
    assert (reply.status, reply.cache, reply.body) == (200, "HIT", stored["max-stale"].body)
    assert d.reasons() == {"stale_served": 1}


@pytest.mark.parametrize("request_headers", [[], [("Cache-Control", "max-stale=30")]], ids=["on-error", "max-stale"])
def test_must_revalidate_forbids_serving_the_stale_entry(origin_gone, request_headers):
    """RFC 9111 §4.2.4, §5.2.2.2: no stale response when must-revalidate says so, whatever
    stale-if-error or the client's max-stale allow."""
    stack, stored = origin_gone
    reply = fetch(stack, PATHS["must-revalidate"], headers=request_headers)
    assert reply.cache == "MISS" and reply.status >= 500
    assert reply.body != stored["must-revalidate"].body
