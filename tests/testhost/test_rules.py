"""Issue 3's rules, one test each, against the built filter in the test host (Envoy semantics)."""

from __future__ import annotations

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from sp_istio_cache.fingerprint import request_fingerprint
from sp_istio_cache.otlp import CachedResponse, decode_hit, encode_hit
from sp_istio_cache.testhost import Action, ProxyWasmHost
from sp_istio_cache.testhost.fakes import FakeBackend, fake_answer_hit, fake_answer_miss, fake_decode

from ._support import AUTHORITY, assert_healthy, counters, lookups, req, stores

BACKEND_HEADERS = [(":method", "POST"), (":path", "/v1/inject"), (":authority", "sp-cache-backend"),
                   ("content-type", "application/x-protobuf")]


def miss_and_continue(host: ProxyWasmHost, headers, body: b"" = b""):
    """A request whose lookup is answered 404; returns the stream (request now upstream)."""
    s = host.new_stream()
    s.request(headers, body)
    (call,) = [c for c in host.pending_calls if c.path == "/v1/inject"]
    fake_answer_miss(host, call)
    assert not s.request_paused, "the lookup answer did not resume the request"
    return s


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize("config,key", [
    ({"lookup_timout_ms": 10}, "lookup_timout_ms"),
    ({"max_response_body_bytes": "big"}, "max_response_body_bytes"),
    ({"lookup_methods": ["GET", 3]}, "lookup_methods"),
    ({"cache_enabled": "yes"}, "cache_enabled"),
])
def test_config_error_refuses_and_names_the_key(make_host, config, key):
    host = make_host(config, start=False)
    assert host.start() is False
    errors = host.log_messages(min_level=4)
    assert len(errors) == 1 and f'"{key}"' in errors[0], errors


# ------------------------------------------------------------------ lookup


def test_get_miss_lookup_span_is_exact(host):
    s = host.new_stream()
    action = s.send_request_headers(req("GET", "/items?id=7", ("accept", "a/b"), ("x-multi", "1"), ("cookie", "c=1"),
                                        ("x-api-key", "k"), ("x-multi", "2"), ("x-sp-session-id", "sess-1")), True)
    assert action == Action.PAUSE
    (call,) = host.pending_calls
    assert (call.cluster, call.headers, call.timeout_ms) == ("sp_cache_backend", BACKEND_HEADERS, 200)
    span_type, request, response, ttl = fake_decode(call)
    headers = {"accept": ["a/b"], "x-multi": ["1", "2"], "x-sp-session-id": ["sess-1"]}
    assert (span_type.value, request.method, request.scheme, request.path, request.authority) == (
        "inject", "GET", "http", "/items?id=7", AUTHORITY)
    assert request.headers == headers  # cookie and x-api-key redacted, pseudo-headers absent
    assert (request.body, request.session_id, request.service_name, request.direction, request.vary) == (
        b"", "sess-1", "sp-istio-cache", "outbound", [])
    assert request.key == request_fingerprint("GET", AUTHORITY, "/items?id=7", headers, [], b"")
    assert (response, ttl) == (None, None)


def test_lookup_answer_arrives_on_the_root_context_as_in_envoy(make_host):
    """Envoy makes every proxy_http_call from the root context and answers it there
    (proxy-wasm-cpp-host http_call uses root_context()); the filter must route it to the stream."""
    host = make_host(callout_context="root")
    s = host.new_stream()
    s.send_request_headers(req(), True)
    (call,) = host.pending_calls
    assert call.owner_context == ProxyWasmHost.ROOT_ID
    fake_answer_miss(host, call)
    assert not s.request_paused, "lookup answered 404 but the request is still held (it would hang in Envoy)"
    assert counters(host) == {"sp_cache.miss": 1}


def test_hit_replies_locally_with_the_cached_response(host):
    s = host.new_stream()
    s.send_request_headers(req(), True)
    cached = {"content-type": ["text/plain"], "x-multi": ["1", "2"], "connection": ["close"],
              "transfer-encoding": ["chunked"], "keep-alive": ["5"], "content-length": ["999"], "age": ["9"]}
    fake_answer_hit(host, host.pending_calls[0], 200, cached, b"hello world", age=42)
    lr = s.local_response
    assert lr is not None and (lr.status, lr.body, lr.details) == (200, b"hello world", "sp_cache_hit")
    assert lr.headers == [(":status", "200"), ("content-type", "text/plain"), ("x-multi", "1"), ("x-multi", "2"),
                          ("age", "42"), ("x-sp-cache", "HIT"), ("content-length", "11")]
    assert s.request_headers_after is None  # nothing went upstream
    s.done()
    assert stores(host) == []  # a hit is never stored
    assert counters(host) == {"sp_cache.hit": 1}
    assert_healthy(host, s)


def test_404_continues_as_miss_and_stores_at_response_end_with_exact_body(host):
    s = miss_and_continue(host, req())
    body = bytes(range(256)) * 10
    s.send_response_headers([(":status", "200"), ("content-type", "application/octet-stream"),
                             ("x-multi", "1"), ("x-multi", "2"), ("connection", "keep-alive")], False)
    assert s.cache_status == "MISS"
    s.send_response_body(body[:1000], False)
    assert stores(host) == []
    s.send_response_body(body[1000:], True)
    assert bytes(s.downstream_body) == body
    (store,) = stores(host)
    assert store.effective_context == ProxyWasmHost.ROOT_ID  # survives the end of the stream
    span_type, request, response, ttl = fake_decode(store)
    assert span_type.value == "extract"
    assert (response.status, response.body, ttl) == (200, body, 300)
    assert response.headers == {"content-type": ["application/octet-stream"], "x-multi": ["1", "2"]}
    assert request.key == fake_decode(lookups(host)[0]).request.key
    s.done()
    host.respond_http_call(store, 202)
    assert counters(host) == {"sp_cache.miss": 1, "sp_cache.store_sent": 1}
    assert_healthy(host, s)


def test_miss_store_hit_round_trip_through_fake_backend(host):
    backend = FakeBackend(host)
    first = host.new_stream()
    first.send_request_headers(req(), True)
    backend.serve()
    first.respond(200, [("content-type", "text/plain")], b"payload")
    first.done()
    backend.serve()
    second = host.new_stream()
    second.send_request_headers(req(), True)
    backend.serve()
    assert second.cache_status == "HIT" and second.local_response.body == b"payload"
    second.done()
    assert counters(host) == {"sp_cache.miss": 1, "sp_cache.store_sent": 1, "sp_cache.hit": 1}
    assert_healthy(host, first, second)


# ------------------------------------------------------------------ request bypass


@pytest.mark.parametrize("headers,counter", [
    (req("GET", "/a", ("authorization", "Bearer t")), "sp_cache.bypass_authorization"),
    (req("GET", "/a", ("cache-control", "no-store")), "sp_cache.bypass_no_store"),
    (req("GET", "/a", ("if-none-match", '"v1"')), "sp_cache.bypass_conditional"),
    (req("GET", "/a", ("if-modified-since", "Tue, 14 Nov 2023 22:13:20 GMT")), "sp_cache.bypass_conditional"),
    (req("GET", "/a", ("upgrade", "websocket"), ("connection", "upgrade")), "sp_cache.bypass_upgrade"),
    (req("CONNECT", "/a"), "sp_cache.bypass_upgrade"),
    (req("GET", "/a", ("content-type", "application/grpc")), "sp_cache.bypass_grpc"),
    (req("DELETE", "/a"), "sp_cache.bypass_method"),
    (req("POST", "/a"), "sp_cache.bypass_method"),
])
def test_request_bypass(host, headers, counter):
    s = host.new_stream()
    assert s.send_request_headers(headers, True) == Action.CONTINUE
    assert host.calls == []
    assert s.request_headers_after is not None
    s.respond(200, [("content-type", "text/plain")], b"x")
    assert s.cache_status == "BYPASS"
    s.done()
    assert host.calls == []
    assert counters(host) == {counter: 1, "sp_cache.store_skipped_not_looked_up": 1}
    assert_healthy(host, s)


def test_cache_disabled_bypasses_everything(make_host):
    host = make_host({"cache_enabled": False})
    s = host.new_stream()
    assert s.send_request_headers(req(), True) == Action.CONTINUE
    s.respond(200, [], b"x")
    assert (host.calls, s.cache_status) == ([], "BYPASS")
    assert counters(host) == {"sp_cache.bypass_disabled": 1}


def test_authorization_is_looked_up_when_configured(make_host):
    host = make_host({"cache_authorized_requests": True})
    s = host.new_stream()
    s.send_request_headers(req("GET", "/a", ("authorization", "Bearer t")), True)
    (call,) = host.pending_calls
    assert "authorization" not in fake_decode(call).request.headers  # still redacted


# ------------------------------------------------------------------ response rules


@pytest.mark.parametrize("status,headers,counter", [
    (500, [], "sp_cache.store_skipped_status"),
    (200, [("cache-control", "no-store")], "sp_cache.store_skipped_no_store"),
    (200, [("cache-control", "private, max-age=60")], "sp_cache.store_skipped_private"),
    (200, [("set-cookie", "a=1")], "sp_cache.store_skipped_set_cookie"),
    (200, [("vary", "*")], "sp_cache.store_skipped_vary"),
    (200, [("vary", "accept-language")], "sp_cache.store_skipped_vary"),
])
def test_response_not_stored(host, status, headers, counter):
    s = miss_and_continue(host, req())
    s.respond(status, headers, b"body")
    assert s.cache_status == "MISS"
    s.done()
    assert stores(host) == []
    assert counters(host) == {"sp_cache.miss": 1, counter: 1}
    assert_healthy(host, s)


def test_vary_inside_the_configured_list_is_stored(make_host):
    host = make_host({"vary_headers": ["accept-language"]})
    s = miss_and_continue(host, req("GET", "/a", ("accept-language", "de")))
    s.respond(200, [("vary", "Accept-Language")], b"body")
    (store,) = stores(host)
    req_half = fake_decode(store).request
    assert req_half.vary == ["accept-language"]
    assert req_half.key == request_fingerprint("GET", AUTHORITY, "/a", {"accept-language": ["de"]}, ["accept-language"])


@pytest.mark.parametrize("headers,ttl", [
    ([("cache-control", "max-age=30, s-maxage=60"), ("expires", "Tue, 14 Nov 2023 23:13:20 GMT")], 60),
    ([("cache-control", "max-age=30"), ("expires", "Tue, 14 Nov 2023 23:13:20 GMT")], 30),
    ([("date", "Tue, 14 Nov 2023 22:13:20 GMT"), ("expires", "Tue, 14 Nov 2023 22:15:20 GMT")], 120),
    ([("expires", "Tue, 14 Nov 2023 22:23:20 GMT")], 600),  # against the host clock (22:13:20Z)
    ([], 77),
])
def test_ttl_from_s_maxage_then_max_age_then_expires_then_default(make_host, headers, ttl):
    host = make_host({"default_ttl_seconds": 77})
    s = miss_and_continue(host, req())
    s.respond(200, headers, b"b")
    (store,) = stores(host)
    assert fake_decode(store).ttl_seconds == ttl


# ------------------------------------------------------------------ HEAD and headers-only


def test_head_reads_the_get_entry_and_gets_no_body(host):
    backend = FakeBackend(host)
    get = host.new_stream()
    get.send_request_headers(req("GET", "/doc"), True)
    backend.serve()
    get.respond(200, [("content-type", "text/plain")], b"0123456789")
    get.done()
    backend.serve()
    head = host.new_stream()
    head.send_request_headers(req("HEAD", "/doc"), True)
    lookup = fake_decode(host.pending_calls[0]).request
    assert lookup.method == "HEAD"
    assert lookup.key == backend.lookups[0].request.key == request_fingerprint("GET", AUTHORITY, "/doc", {}, [])
    backend.serve()
    assert head.cache_status == "HIT"
    assert head.local_response.body == b""
    assert head.response_header_values("content-length") == ["10"]
    head.done()
    assert_healthy(host, get, head)


def test_head_miss_is_never_stored(host):
    s = miss_and_continue(host, req("HEAD", "/doc"))
    s.send_response_headers([(":status", "200"), ("content-length", "10")], True)
    s.done()
    assert stores(host) == []
    assert counters(host) == {"sp_cache.miss": 1, "sp_cache.store_skipped_head": 1}


@pytest.mark.parametrize("status,headers", [(204, []), (200, [("content-length", "0")])])
def test_headers_only_response_is_stored_from_the_headers_callback(make_host, status, headers):
    host = make_host({"cacheable_statuses": [200, 204]})
    s = miss_and_continue(host, req())
    s.send_response_headers([(":status", str(status)), *headers], True)
    (store,) = stores(host)  # before the stream ends
    response = fake_decode(store).response
    assert (response.status, response.body) == (status, b"")
    s.done()
    assert_healthy(host, s)


# ------------------------------------------------------------------ size limits


def test_request_body_over_limit_streams_through_intact(make_host):
    host = make_host({"lookup_methods": ["GET", "POST"], "max_request_body_bytes": 1024})
    s = host.new_stream()
    body = bytes(i % 251 for i in range(1500))
    assert s.send_request_headers(req("POST", "/rpc", ("content-type", "application/json")), False) == Action.PAUSE
    assert s.send_request_body(body[:700], False) == Action.PAUSE_WATERMARK
    assert host.metric("sp_cache.buffered_body_bytes") == 700
    assert s.send_request_body(body[700:], True) == Action.CONTINUE
    assert bytes(s.upstream_body) == body and s.request_end_sent
    assert host.calls == []
    s.respond(200, [], b"ok")
    assert s.cache_status == "BYPASS"
    s.done()
    assert counters(host) == {"sp_cache.bypass_request_too_large": 1, "sp_cache.store_skipped_not_looked_up": 1}
    assert_healthy(host, s)


def test_request_body_within_limit_is_looked_up_with_the_body(make_host):
    host = make_host({"lookup_methods": ["POST"], "max_request_body_bytes": 1024})
    s = host.new_stream()
    body = b'{"q": 1}'
    s.send_request_headers(req("POST", "/rpc"), False)
    assert s.send_request_body(body, True) == Action.PAUSE_WATERMARK
    request = fake_decode(host.pending_calls[0]).request
    assert request.body == body
    assert request.key == request_fingerprint("POST", AUTHORITY, "/rpc", {}, [], body)
    fake_answer_miss(host, host.pending_calls[0])
    assert bytes(s.upstream_body) == body and s.request_end_sent
    s.done()
    assert_healthy(host, s)


def test_response_body_over_limit_is_not_stored(make_host):
    host = make_host({"max_response_body_bytes": 1000})
    s = miss_and_continue(host, req())
    body = b"z" * 1200
    s.respond(200, [], body, chunk=400)
    assert bytes(s.downstream_body) == body
    s.done()
    assert stores(host) == []
    assert counters(host) == {"sp_cache.miss": 1, "sp_cache.store_skipped_response_too_large": 1}
    assert_healthy(host, s)


def test_declared_content_length_over_limit_is_skipped_at_headers(make_host):
    host = make_host({"max_response_body_bytes": 1000})
    s = miss_and_continue(host, req())
    s.respond(200, [("content-length", "1001")], b"y" * 1001)
    s.done()
    assert stores(host) == []
    assert counters(host) == {"sp_cache.miss": 1, "sp_cache.store_skipped_response_too_large": 1}
    assert_healthy(host, s)


# ------------------------------------------------------------------ fail open


def _next_request_works(host):
    s = miss_and_continue(host, req("GET", "/next"))
    s.respond(200, [], b"n")
    assert s.cache_status == "MISS"
    s.done()


def test_unknown_cluster_fails_open(make_host):
    host = make_host({"backend_cluster": "no_such_cluster"})
    s = host.new_stream()
    assert s.send_request_headers(req(), True) == Action.CONTINUE
    s.respond(200, [], b"x")
    assert s.cache_status == "MISS"
    s.done()
    assert host.calls == []
    assert counters(host) == {"sp_cache.lookup_error": 1, "sp_cache.store_failed": 1}
    assert_healthy(host, s)


GARBAGE = b"\xff\xfe\x00garbage"
TRUNCATED = encode_hit(CachedResponse(200, {"a": ["b"]}, b"x" * 100), 0)[:-7]


@pytest.mark.parametrize("answer,counter", [
    ("fail", "sp_cache.lookup_error"),
    ("timeout", "sp_cache.lookup_timeout"),
    ((500, b""), "sp_cache.lookup_error"),
    ((200, b""), "sp_cache.lookup_error"),
    ((200, GARBAGE), "sp_cache.lookup_error"),
    ((200, TRUNCATED), "sp_cache.lookup_error"),
])
def test_lookup_fault_fails_open(host, answer, counter):
    s = host.new_stream()
    s.send_request_headers(req(), True)
    call = host.pending_calls[0]
    if answer == "fail":
        host.fail_http_call(call)
    elif answer == "timeout":
        host.timeout_http_call(call)
    else:
        host.respond_http_call(call, answer[0], answer[1])
    assert not s.request_paused and s.local_response is None
    s.respond(200, [], b"x")
    assert s.cache_status == "MISS"
    s.done()
    assert host.metric(counter) == 1 and host.metric("sp_cache.miss") == 0
    _next_request_works(host)
    assert_healthy(host, s)


def test_stream_gone_while_lookup_pending_then_answer_is_ignored(host):
    s = host.new_stream()
    s.send_request_headers(req(), True)
    call = host.pending_calls[0]
    s.done()
    fake_answer_hit(host, call, 200, {}, b"late")
    assert s.local_response is None and host.local_replies == []
    assert host.metric("sp_cache.hit") == 0
    _next_request_works(host)
    assert_healthy(host)


def test_stores_bounded_in_flight(make_host):
    host = make_host({"max_stores_in_flight": 2})
    streams = []
    for i in range(3):
        s = miss_and_continue(host, req("GET", f"/s{i}"))
        s.respond(200, [], b"v")
        s.done()
        streams.append(s)
    assert len(stores(host)) == 2
    assert counters(host) == {"sp_cache.miss": 3, "sp_cache.store_sent": 2, "sp_cache.store_dropped": 1}
    host.respond_http_call(stores(host)[0], 200)
    host.fail_http_call(stores(host)[1])
    s = miss_and_continue(host, req("GET", "/s3"))
    s.respond(200, [], b"v")
    s.done()
    assert len(stores(host)) == 3
    assert host.metric("sp_cache.store_failed") == 1
    assert_healthy(host, *streams, s)


# ------------------------------------------------------------------ trace context


def _span(call):
    traces = TracesData.FromString(call.body)
    return traces.resource_spans[0].scope_spans[0].spans[0]


def test_traceparent_injected_upstream_when_absent(host):
    s = host.new_stream()
    s.send_request_headers(req(), True)
    span = _span(host.pending_calls[0])
    fake_answer_miss(host, host.pending_calls[0])
    (tp,) = s.request_header_values("traceparent")
    assert tp == f"00-{span.trace_id.hex()}-{span.span_id.hex()}-01"
    assert span.parent_span_id == b"" and len(span.trace_id) == 16 and len(span.span_id) == 8


def test_traceparent_parent_preserved_new_span_id(host):
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    s = host.new_stream()
    s.send_request_headers(req("GET", "/t", ("traceparent", incoming)), True)
    span = _span(host.pending_calls[0])
    assert span.trace_id == bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    assert span.parent_span_id == bytes.fromhex("b7ad6b7169203331")
    assert len(span.span_id) == 8 and span.span_id != span.parent_span_id
    fake_answer_miss(host, host.pending_calls[0])
    assert s.request_header_values("traceparent") == [incoming]


def test_request_body_in_several_chunks_is_keyed_on_every_byte(make_host):
    # Envoy shows a StopIterationAndWatermark filter only the current chunk: the filter must keep
    # its own copy, or the key and the inject span would carry the last chunk alone
    host = make_host({"lookup_methods": ["POST"], "max_request_body_bytes": 4096})
    s = host.new_stream()
    body = bytes(i % 251 for i in range(3000))
    s.send_request_headers(req("POST", "/rpc"), False)
    assert s.send_request_body(body[:1000], False) == Action.PAUSE_WATERMARK
    assert s.send_request_body(body[1000:2000], False) == Action.PAUSE_WATERMARK
    assert host.metric("sp_cache.buffered_body_bytes") == 2000
    assert s.send_request_body(body[2000:], True) == Action.PAUSE_WATERMARK
    request = fake_decode(host.pending_calls[0]).request
    assert request.body == body
    assert request.key == request_fingerprint("POST", AUTHORITY, "/rpc", {}, [], body)
    fake_answer_miss(host, host.pending_calls[0])
    assert bytes(s.upstream_body) == body and s.request_end_sent
    s.respond(200, [], b"ok")
    s.done()
    assert host.metric("sp_cache.buffered_body_bytes") == 0
