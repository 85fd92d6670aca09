"""What leaves the proxy, read from the callout bodies with opentelemetry-proto: the lookup span's
attributes, redaction (nothing redacted reaches any span), bytes that are not UTF-8, trace ids
(distinct span ids, no traceparent injected unless asked), and the backend call headers."""

from __future__ import annotations

import pytest

from sp_istio_cache.entry import span_name
from sp_istio_cache.fingerprint import request_fingerprint
from sp_istio_cache.testhost.headermap import text

from ._cache import hit_reason
from ._support import AUTHORITY, BACKEND_KEY, LOOKUP_PATH, assert_healthy, config, lookups, req, span_of, stores

SECRETS = {"authorization": "Bearer s3cr3t-auth", "cookie": "sid=s3cr3t-cookie",
           "proxy-authorization": "Basic s3cr3t-pa", "x-api-key": "s3cr3t-api", "x-public-key": "s3cr3t-public"}
STORED = (200, [("cache-control", "max-age=60"), ("content-type", "text/plain")], b"body")


def test_the_lookup_span_carries_the_request_as_docs_protocol_md_says(make_host):
    model = make_host(config(service_name="svc-a", traffic_direction="inbound"))
    s = model.new_stream()
    s.send_request_headers(req("GET", "/items?id=7", ("accept", "a/b"), ("x-multi", "1"), ("x-envoy-attempt", "1"),
                               ("x-multi", "2"), ("x-sp-session-id", "sess-1"), ("te", "trailers")), True)
    (call,) = model.pending_calls
    assert (call.cluster, call.path, call.timeout_ms) == ("sp_cache_backend", LOOKUP_PATH, 200)
    assert call.headers == [(":method", "POST"), (":path", LOOKUP_PATH), (":authority", "sp-cache-backend"),
                            ("content-type", "application/x-protobuf"), ("x-public-key", BACKEND_KEY)]
    sent = span_of(call)
    assert sent.service_name == "svc-a" and sent.span.name == "/items?id=7" and sent.span.kind == 2  # SERVER: inbound
    assert sent.attrs == {
        "sp.span.type": "inject", "http.request.method": "GET", "url.scheme": "http", "url.path": "/items?id=7",
        "server.address": AUTHORITY, "http.request.header.accept": ["a/b"], "http.request.header.x-multi": ["1", "2"],
        "http.request.header.x-sp-session-id": ["sess-1"], "sp.service.name": "svc-a",
        "sp.traffic.direction": "inbound", "sp.session.id": "sess-1",
        "sp.cache.key": request_fingerprint("GET", "http", AUTHORITY, "/items?id=7"),
    }
    model.respond_http_call(call, 404)
    assert_healthy(model, s)


def test_redacted_headers_never_reach_any_span(make_cache, tier):
    cache = make_cache(cache_authorized_requests=True, redact_headers=[*SECRETS, "set-cookie", "x-internal"])
    origin = (200, [("cache-control", "public, max-age=60"), ("x-internal", "s3cr3t-internal"), ("x-ok", "1")], b"b")
    cache.fetch("/r", *SECRETS.items(), origin=origin)
    cache.fetch("/r", method="POST", origin=(204, [], b""))  # an invalidation span too
    paths = {c.path for c in cache.model.calls}
    assert paths == {"/v1/inject", "/v1/traces", "/v1/invalidate"}
    for call in cache.model.calls:
        assert b"s3cr3t" not in call.body, f"a redacted value reached {call.path}"
        sent = span_of(call)
        assert not set(sent.headers("request")) & {*SECRETS, "x-internal"}
    stored = span_of(stores(cache.model)[0]).headers("response")
    assert "x-internal" not in stored and stored["x-ok"] == [b"1"]


@pytest.mark.parametrize("value", [b"caf\xe9", b"\xff\xfe", b"ok \x80 obs-text"])
def test_header_values_that_are_not_utf8_are_carried_as_bytes(make_cache, tier, value):
    cache = make_cache()
    origin = (200, [("cache-control", "max-age=60"), ("x-note", text(value))], b"stored")
    cache.fetch("/u", ("x-note", text(value)), origin=origin)
    lookup, store = span_of(lookups(cache.model)[0]), span_of(stores(cache.model)[0])
    assert lookup.attrs["http.request.header.x-note"] == [value]  # bytes_value, exact bytes
    assert store.attrs["http.response.header.x-note"] == [value]
    hit = cache.fetch("/u", ("x-note", text(value)))
    assert (hit.cache_status, hit.response_header_values("x-note")) == ("HIT", [text(value)])
    assert cache.metric(hit_reason(tier)) == 1 and cache.metric("lookup_error") == 0
    assert_healthy(cache.model, hit)


def test_a_path_that_is_not_utf8_is_carried_as_bytes_and_keyed_on_them(make_cache):
    cache = make_cache()
    path = b"/caf\xe9?q=\xff"
    cache.fetch(text(path), origin=STORED)
    sent = span_of(stores(cache.model)[0])
    assert sent.attrs["url.path"] == path and sent.span.name == span_name(path) == "/caf%E9?q=%FF"
    assert sent.key == request_fingerprint("GET", "http", AUTHORITY, path)
    assert cache.fetch(text(path)).cache_status == "HIT"


def test_no_traceparent_is_injected_by_default(make_cache):
    cache = make_cache()
    cache.fetch("/t", origin=STORED)
    cache.fetch("/t", method="POST", origin=(204, [], b""))
    for forwarded in cache.upstream:
        assert "traceparent" not in dict(forwarded)


def test_inject_traceparent_adds_one_to_requests_that_lack_it(make_cache):
    cache = make_cache(inject_traceparent=True)
    cache.fetch("/t", origin=STORED)
    tp = dict(cache.upstream[0])["traceparent"]
    version, trace_id, parent, flags = tp.split("-")
    lookup = span_of(lookups(cache.model)[0])
    assert (version, flags, len(parent)) == ("00", "01", 16)
    assert trace_id == lookup.span.trace_id.hex()  # the spans join the trace the upstream sees
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    cache.fetch("/u", ("traceparent", incoming), origin=STORED)
    assert [v for k, v in cache.upstream[1] if k == "traceparent"] == [incoming]


def test_the_lookup_and_store_spans_of_one_request_have_distinct_span_ids(make_cache):
    cache = make_cache()
    cache.fetch("/t", origin=STORED)
    lookup, store = span_of(lookups(cache.model)[0]).span, span_of(stores(cache.model)[0]).span
    assert len(lookup.span_id) == len(store.span_id) == 8 and lookup.span_id != store.span_id
    assert lookup.trace_id == store.trace_id and len(lookup.trace_id) == 16
    assert store.start_time_unix_nano <= store.end_time_unix_nano


def test_spans_join_an_incoming_trace_as_children_of_its_parent(make_cache):
    cache = make_cache()
    cache.fetch("/t", ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), origin=STORED)
    for call in cache.model.calls:
        span = span_of(call).span
        assert span.trace_id == bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
        assert span.parent_span_id == bytes.fromhex("b7ad6b7169203331") and span.span_id != span.parent_span_id


def test_store_span_carries_the_signed_entry_metadata(make_cache):
    cache = make_cache()
    cache.model.advance(250)
    cache.fetch("/t", origin=STORED)
    a = span_of(stores(cache.model)[0]).attrs
    t = 1_700_000_000_250
    assert (a["sp.span.type"], a["http.response.status_code"], a["http.response.body"]) == ("extract", 200, b"body")
    assert (a["sp.cache.request_time_ms"], a["sp.cache.response_time_ms"], a["sp.cache.variant"]) == (t, t, "")
    assert a["sp.cache.retain_seconds"] == 60 and len(a["sp.cache.signature"]) == 64
