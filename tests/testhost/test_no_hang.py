"""Issue 11 #6: no request hangs under Istio's WasmPlugin, which has no
``allow_on_headers_stop_iteration`` (a StopIteration from the headers callback then becomes
StopAllIteration: the body callbacks never run until the filter continues)."""

from __future__ import annotations

import pytest

from sp_istio_cache.testhost import Action

from ._cache import Cache
from ._support import assert_healthy, config, lookups, req


@pytest.mark.parametrize("allow", [True, False])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_bodiless_method_with_a_body_is_bypassed_not_held(make_host, allow, method):
    model = make_host(config(), allow_on_headers_stop_iteration=allow)
    s = model.new_stream()
    assert s.send_request_headers(req(method, "/chunked", ("transfer-encoding", "chunked")), False) == Action.CONTINUE
    s.send_request_body(b"abc", False)
    s.send_request_body(b"def", True)
    assert not s.hung and s.upstream_body == b"abcdef" and s.request_end_sent
    assert model.calls == []
    s.respond(200, [("cache-control", "max-age=60")], b"ok")
    assert s.cache_status == "BYPASS" and model.metric("sp_cache.bypass_request_body") == 1
    s.done()
    assert_healthy(model, s)


@pytest.mark.parametrize("allow", [True, False])
def test_a_plain_get_is_looked_up_from_the_headers_callback(make_host, allow):
    cache = Cache(make_host(config(), allow_on_headers_stop_iteration=allow))
    first = cache.fetch("/g")
    second = cache.fetch("/g")
    assert (first.cache_status, second.cache_status) == ("MISS", "HIT")
    assert_healthy(cache.model, first, second)


def test_a_post_lookup_holds_its_body_with_allow_on_headers_stop_iteration(make_host):
    model = make_host(config(lookup_methods=["POST"]), allow_on_headers_stop_iteration=True)
    s = model.new_stream()
    s.send_request_headers(req("POST", "/rpc"), False)
    s.send_request_body(b'{"q": 1}', True)
    assert len(lookups(model)) == 1 and not s.hung
    model.respond_http_call(lookups(model)[0], 404)
    assert s.upstream_body == b'{"q": 1}' and s.request_end_sent


def test_a_post_lookup_without_allow_on_headers_stop_iteration_does_not_hang(make_host):
    """What happens to POST lookups (``lookup_methods: [POST]``) under Istio's WasmPlugin: Envoy
    never delivers the body of a request paused at its headers; the tick releases it within 250 ms
    (fail open) and the worker stops pausing for bodies."""
    model = make_host(config(lookup_methods=["POST"]), allow_on_headers_stop_iteration=False)
    s = model.new_stream()
    s.send_request_headers(req("POST", "/rpc"), False)
    s.send_request_body(b'{"q": 1}', True)
    model.advance(300)
    assert not s.hung and s.request_end_sent and s.upstream_body == b'{"q": 1}'
    later = model.new_stream()
    later.send_request_headers(req("POST", "/rpc"), False)  # this worker no longer pauses for a body
    later.send_request_body(b'{"q": 2}', True)
    assert not later.hung and later.request_end_sent and model.pending_calls == []
    for stream in (s, later):
        stream.respond(200, [], b"answer")
        assert stream.cache_status == "BYPASS"
    assert model.metric("sp_cache.bypass_request_body") == 2
