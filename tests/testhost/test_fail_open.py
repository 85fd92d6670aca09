"""The filter fails open: a backend that is down, slow, refusing or lying is a miss, the request
goes to the origin and the VM stays healthy; bodies past the limits stream through untouched."""

from __future__ import annotations

import socket

import pytest

from sp_istio_cache.entry import Envelope, traces_data
from sp_istio_cache.testhost import Action, EnvoyModel
from sp_istio_cache.testhost.callouts import TIMEOUT_BODY

from ._cache import Cache
from ._entries import candidate, entry_for, request_for
from ._support import (
    AUTHORITY,
    STORE_BATCH_WAIT_MS,
    assert_healthy,
    config,
    lookups,
    req,
    span_of,
    spans_of,
    stores,
)

CACHEABLE = [("cache-control", "max-age=60")]


def _next_request_works(model: EnvoyModel) -> None:
    cache = Cache(model)
    s = cache.fetch("/next", origin=(200, CACHEABLE, b"n"))
    assert s.cache_status == "MISS" and s.downstream_body == b"n"


def _valid_answer(model) -> bytes:
    request = request_for("/items?id=7")
    return traces_data([candidate(request, entry_for(model, request))], Envelope())


@pytest.mark.parametrize("fault,counter", [
    ("reset", "lookup_error"),
    ("timeout", "lookup_timeout"),
    # Envoy arms the callout timer from its loop's cached time, so on a loaded worker its 504
    # arrives before the filter's own clock says lookup_timeout_ms passed: still a timeout
    ("early timeout", "lookup_timeout"),
    ("504", "lookup_error"),  # a 504 of the backend's own (or a proxy's) is not our timeout
    ("500", "lookup_error"),
    ("401", "lookup_error"),
    ("empty 200", "lookup_error"),
    ("garbage 200", "lookup_error"),  # an answer whose framing cannot be decoded: the backend failed
    ("truncated 200", "lookup_error"),
])
def test_a_lookup_fault_is_a_miss_and_the_request_goes_upstream(make_host, fault, counter):
    model = make_host(config())
    s = model.new_stream()
    s.send_request_headers(req(), True)
    (call,) = model.pending_calls
    if fault == "reset":
        model.fail_http_call(call)
    elif fault == "timeout":
        model.timeout_http_call(call)
    elif fault == "early timeout":
        model.advance(150)
        model.respond_http_call(call, 504, TIMEOUT_BODY)
    elif fault in ("504", "500", "401"):
        model.respond_http_call(call, int(fault), b"no")
    elif fault == "empty 200":
        model.respond_http_call(call, 200, b"")
    elif fault == "garbage 200":
        model.respond_http_call(call, 200, b"\xff\xfe\x00garbage")
    else:
        model.respond_http_call(call, 200, _valid_answer(model)[:-7])
    assert not s.request_paused and s.local_response is None and s.request_headers_after is not None
    s.respond(200, CACHEABLE, b"origin")
    assert s.cache_status == "MISS" and s.downstream_body == b"origin"
    s.done()
    assert model.metric(f"sp_cache.{counter}") == 1
    _next_request_works(model)
    assert_healthy(model, s)


def test_the_lookup_timeout_fires_on_the_virtual_clock(make_host):
    model = make_host(config(lookup_timeout_ms=150))
    s = model.new_stream()
    s.send_request_headers(req(), True)
    (call,) = model.pending_calls
    assert call.timeout_ms == 150
    model.advance(149)
    assert call.state == "pending" and s.request_paused
    model.advance(1)
    assert call.state == "timed_out" and not s.request_paused
    s.respond(200, [], b"x")
    assert model.metric("sp_cache.lookup_timeout") == 1
    assert model.histogram("sp_cache.lookup_duration_us") == [150_000]


def test_a_refused_connection_is_envoys_503_and_a_miss(filter_module):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with EnvoyModel(plugin_config=config(), module=filter_module, callouts="upstream",
                    clusters={"sp_cache_backend": ("127.0.0.1", closed_port)}) as model:
        assert model.start()
        s = model.new_stream()
        s.send_request_headers(req(), end_of_stream=True)
        (call,) = model.calls
        assert call.answer.headers[0] == (":status", "503")
        s.respond(200, [], b"x")
        assert s.cache_status == "MISS" and model.metric("sp_cache.lookup_error") == 1


def test_an_unknown_backend_cluster_fails_open(make_host):
    model = make_host(config(backend_cluster="no_such_cluster"))
    s = model.new_stream()
    assert s.send_request_headers(req(), True) == Action.CONTINUE
    s.respond(200, CACHEABLE, b"x")
    s.done()
    model.advance(STORE_BATCH_WAIT_MS)  # the queued store goes out on the tick
    assert s.cache_status == "MISS" and model.calls == []
    assert model.metric("sp_cache.lookup_error") == 1 and model.metric("sp_cache.store_failed") == 1
    assert_healthy(model, s)


def test_a_lookup_answer_after_the_stream_is_gone_is_ignored(make_host):
    model = make_host(config())
    s = model.new_stream()
    s.send_request_headers(req(), True)
    call = model.pending_calls[0]
    s.done()
    model.respond_http_call(call, [(":status", "200")], _valid_answer(model))
    assert model.local_replies == [] and model.metric("sp_cache.hit") == 0
    _next_request_works(model)
    assert_healthy(model)


def test_stores_in_flight_are_bounded_and_failures_counted(make_host):
    model = make_host(config(max_stores_in_flight=2))
    for i in range(3):
        s = model.new_stream()
        s.send_request_headers(req("GET", f"/s{i}"), True)
        model.respond_http_call(lookups(model)[-1], 404)  # stores stay pending
        s.respond(200, CACHEABLE, b"v")
        s.done()
        model.advance(STORE_BATCH_WAIT_MS)  # each store its own batch
    assert len(stores(model)) == 2 and model.metric("sp_cache.store_dropped") == 1
    pending = [c for c in model.pending_calls if c.path == "/v1/traces"]
    model.respond_http_call(pending[0], 200)
    model.respond_http_call(pending[1], 503)
    assert model.metric("sp_cache.store_failed") == 1 and model.metric("sp_cache.store_sent") == 2
    assert all(span_of(c).attrs["sp.span.type"] == "extract" for c in stores(model))
    assert stores(model)[0].effective_context == model.root_context_id()  # survives its stream


def test_stores_go_out_batched_on_the_tick_and_before_an_invalidation(make_host):
    model = make_host(config())
    for i in range(3):
        s = model.new_stream()
        s.send_request_headers(req("GET", f"/b{i}"), True)
        model.respond_http_call(lookups(model)[-1], 404)
        s.respond(200, CACHEABLE, bytes([i]) * 10)
        s.done()
    assert stores(model) == []  # queued until the tick
    model.advance(STORE_BATCH_WAIT_MS)
    (call,) = stores(model)
    assert [x.attrs["url.path"] for x in spans_of(call)] == ["/b0", "/b1", "/b2"]
    assert model.metric("sp_cache.store_sent") == 3
    model.respond_http_call(call, 503)
    assert model.metric("sp_cache.store_failed") == 3  # counted per store it carried
    # a store queued before an unsafe request's invalidation reaches the backend before it
    s = model.new_stream()
    s.send_request_headers(req("GET", "/c"), True)
    model.respond_http_call(lookups(model)[-1], 404)
    s.respond(200, CACHEABLE, b"c")
    s.done()
    p = model.new_stream()
    p.send_request_headers(req("POST", "/c"), True)
    p.respond(204, [], b"")
    p.done()
    paths = [c.path for c in model.calls if c.path != "/v1/inject"]
    assert paths == ["/v1/traces", "/v1/traces", "/v1/invalidate"]


def test_a_full_batch_goes_out_at_once(make_host):
    model = make_host(config())
    for i in range(32):  # filter/src/root.zig batch_max_count
        s = model.new_stream()
        s.send_request_headers(req("GET", f"/f{i}"), True)
        model.respond_http_call(lookups(model)[-1], 404)
        s.respond(200, CACHEABLE, b"v")
        s.done()
    (call,) = stores(model)
    assert len(spans_of(call)) == 32


def test_a_store_the_l1_cannot_hold_goes_out_at_once(make_host):
    # other workers find no L1 entry and ask the backend, which must hold it
    model = make_host(config(l1_max_bytes=0))
    s = model.new_stream()
    s.send_request_headers(req("GET", "/big"), True)
    model.respond_http_call(lookups(model)[-1], 404)
    s.respond(200, CACHEABLE, b"v")
    s.done()
    (call,) = stores(model)
    assert span_of(call).attrs["url.path"] == "/big"


# ------------------------------------------------------------------ body limits


def test_a_request_body_over_the_limit_streams_through_intact(make_host):
    model = make_host(config(lookup_methods=["GET", "POST"], max_request_body_bytes=1024))
    s = model.new_stream()
    body = bytes(i % 251 for i in range(1500))
    assert s.send_request_headers(req("POST", "/rpc"), False) == Action.PAUSE
    assert s.send_request_body(body[:700], False) == Action.PAUSE_WATERMARK
    assert model.metric("sp_cache.buffered_body_bytes") == 700
    assert s.send_request_body(body[700:], True) == Action.CONTINUE
    assert s.upstream_body == body and s.request_end_sent and model.calls == []
    s.respond(200, CACHEABLE, b"ok")
    assert s.cache_status == "BYPASS" and model.metric("sp_cache.bypass_request_too_large") == 1
    s.done()
    assert_healthy(model, s)


def test_a_post_lookup_is_keyed_on_every_byte_of_a_chunked_body(make_host):
    model = make_host(config(lookup_methods=["POST"], max_request_body_bytes=4096))
    s = model.new_stream()
    body = bytes(i % 251 for i in range(3000))
    s.send_request_headers(req("POST", "/rpc"), False)
    for i in range(0, 3000, 1000):
        s.send_request_body(body[i:i + 1000], i + 1000 >= 3000)
    sent = span_of(lookups(model)[0])
    assert sent.attrs["http.request.body"] == body and sent.attrs["http.request.method"] == "POST"
    from sp_istio_cache.fingerprint import request_fingerprint

    assert sent.key == request_fingerprint("POST", "http", AUTHORITY, "/rpc", body)
    model.respond_http_call(lookups(model)[0], 404)
    assert s.upstream_body == body and s.request_end_sent
    s.respond(200, CACHEABLE, b"ok")
    s.done()
    assert_healthy(model, s)


def test_a_response_body_over_the_limit_is_not_stored(make_host):
    cache = Cache(make_host(config(max_response_body_bytes=1000)))
    body = b"z" * 1200
    s = cache.model.new_stream()
    s.send_request_headers(req(), True)
    cache.backend.serve()
    s.respond(200, CACHEABLE, body, chunk=400)
    s.done()
    assert s.downstream_body == body and stores(cache.model) == []
    assert cache.metric("store_skipped_too_large") == 1
    assert_healthy(cache.model, s)


def test_a_declared_content_length_over_the_limit_is_skipped_at_the_headers(make_host):
    cache = Cache(make_host(config(max_response_body_bytes=1000)))
    s = cache.fetch("/big", origin=(200, [*CACHEABLE, ("content-length", "1001")], b"y" * 1001))
    assert s.downstream_body == b"y" * 1001 and stores(cache.model) == []
    assert cache.metric("store_skipped_too_large") == 1


def test_a_response_that_ends_short_of_its_content_length_is_not_stored(make_host):
    cache = Cache(make_host(config()))
    s = cache.fetch("/short", origin=(200, [*CACHEABLE, ("content-length", "10")], b"12345"))
    assert stores(cache.model) == [] and cache.metric("store_skipped_incomplete") == 1
    assert_healthy(cache.model, s)


def test_the_buffer_budget_bounds_response_copies(make_host):
    model = make_host(config(max_buffered_body_bytes=65536))
    streams = []
    for i in range(3):
        s = model.new_stream()
        s.send_request_headers(req("GET", f"/b{i}"), True)
        model.respond_http_call([c for c in model.pending_calls if c.path == "/v1/inject"][0], 404)
        s.send_response_headers([(":status", "200"), *CACHEABLE], False)
        s.send_response_body(b"x" * 30000, False)
        streams.append(s)
    assert model.metric("sp_cache.buffered_body_bytes") <= 65536
    assert model.metric("sp_cache.store_skipped_buffer_budget") == 1
    for s in streams:
        s.send_response_body(b"", True)
        s.done()
    assert_healthy(model, *streams)
