"""The wire format: encode/decode round trips and precise errors for malformed spans."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from sp_istio_cache import otlp
from sp_istio_cache.otlp import (
    CachedRequest,
    CachedResponse,
    MalformedSpan,
    SpanType,
    decode_hit,
    decode_span,
    encode_hit,
    encode_span,
)
from sp_istio_cache.paths import FILTER_DIR


def sample_request(**kw) -> CachedRequest:
    fields = dict(
        method="GET",
        scheme="http",
        authority="upstream:8080",
        path="/bytes/16?seed=1",
        headers={"accept": ["text/html", "application/json"], "x-sp-session-id": ["s1"]},
        body=b"",
        service_name="svc",
        direction="outbound",
        session_id="s1",
        key="0" * 64,
        vary=["accept"],
    )
    fields.update(kw)
    return CachedRequest(**fields)


def sample_response() -> CachedResponse:
    return CachedResponse(
        status=200,
        headers={"content-type": ["application/octet-stream"], "x-multi": ["2", "1", "2"]},
        body=bytes(range(256)) + b"\x00\xff",
    )


def traces_with(attributes: list[KeyValue], spans: int = 1) -> bytes:
    traces = TracesData()
    scope = traces.resource_spans.add().scope_spans.add()
    for _ in range(spans):
        scope.spans.append(Span(name="/", attributes=attributes))
    return traces.SerializeToString()


def s(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


REQUIRED = [
    s("sp.span.type", "inject"),
    s("http.request.method", "GET"),
    s("url.scheme", "http"),
    s("url.path", "/p"),
    s("server.address", "h"),
]


def test_store_round_trip_multi_valued_headers_and_binary_body():
    request = sample_request(method="POST", body=b"\x00\x01binary\xff")
    data = encode_span(SpanType.EXTRACT, request, sample_response(), ttl_seconds=120)
    span_type, got_request, got_response, ttl = decode_span(data)
    assert span_type is SpanType.EXTRACT
    assert got_request == request
    assert got_response == sample_response()
    assert list(got_response.headers) == ["content-type", "x-multi"]
    assert got_response.headers["x-multi"] == ["2", "1", "2"]
    assert ttl == 120


def test_lookup_round_trip_without_response_or_key():
    request = sample_request(key=None, vary=[])
    decoded = decode_span(encode_span("inject", request))
    assert decoded.span_type is SpanType.INJECT
    assert decoded.request == request
    assert decoded.request.key is None
    assert decoded.response is None
    assert decoded.ttl_seconds is None


def test_encoded_envelope_matches_the_contract():
    data = encode_span(SpanType.INJECT, sample_request(), trace_id=b"t" * 16, span_id=b"s" * 8)
    traces = TracesData.FromString(data)
    assert len(traces.resource_spans) == 1
    resource_spans = traces.resource_spans[0]
    assert [(a.key, a.value.string_value) for a in resource_spans.resource.attributes] == [
        ("service.name", "svc")
    ]
    scope_spans = resource_spans.scope_spans[0]
    assert scope_spans.scope.name == "sp-istio-cache"
    span = scope_spans.spans[0]
    assert span.name == "/bytes/16?seed=1"
    assert span.kind == Span.SPAN_KIND_CLIENT == 3
    assert span.trace_id == b"t" * 16
    assert span.span_id == b"s" * 8
    attrs = {kv.key: kv.value for kv in span.attributes}
    assert attrs["sp.span.type"].string_value == "inject"
    assert attrs["server.address"].string_value == "upstream:8080"
    assert [v.string_value for v in attrs["http.request.header.accept"].array_value.values] == [
        "text/html",
        "application/json",
    ]
    assert "http.request.body" not in attrs  # empty body is omitted


def test_random_ids_have_contract_lengths():
    span = TracesData.FromString(encode_span("inject", sample_request())).resource_spans[0].scope_spans[0].spans[0]
    assert len(span.trace_id) == 16
    assert len(span.span_id) == 8


def test_hit_round_trip():
    data = encode_hit(sample_response(), 42)
    response, age = decode_hit(data)
    assert response == sample_response()
    assert age == 42
    span = TracesData.FromString(data).resource_spans[0].scope_spans[0].spans[0]
    attrs = {kv.key: kv.value for kv in span.attributes}
    assert attrs["http.response.status_code"].int_value == 200
    assert attrs["sp.cache.age_seconds"].int_value == 42
    assert attrs["http.response.body"].bytes_value == sample_response().body


def test_hit_age_is_clamped_and_empty_body_omitted():
    response, age = decode_hit(encode_hit(CachedResponse(204, {}, b""), -3))
    assert response == CachedResponse(204, {}, b"")
    assert age == 0


def test_unknown_attributes_are_ignored():
    decoded = decode_span(traces_with(REQUIRED + [s("future.thing", "x")]))
    assert decoded.request.path == "/p"
    assert decoded.request.scheme == "http"
    assert decoded.request.session_id == ""
    assert decoded.request.vary == []


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xff\xff\xff", "body is not an OTLP TracesData protobuf"),
        (b"", "expected exactly one span, found 0 (in 0 resource_spans)"),
        (traces_with(REQUIRED, spans=2), "expected exactly one span, found 2 (in 1 resource_spans)"),
        (traces_with(REQUIRED[:3] + REQUIRED[4:]), "missing required attribute 'url.path'"),
        (traces_with(REQUIRED[1:]), "missing required attribute 'sp.span.type'"),
        (traces_with(REQUIRED + [s("url.path", "/q")]), "attribute 'url.path' appears more than once"),
        (
            traces_with(REQUIRED[:3] + [KeyValue(key="url.path", value=AnyValue(int_value=1))] + REQUIRED[4:]),
            "attribute 'url.path' must be string_value, got int_value",
        ),
        (traces_with([s("sp.span.type", "other")] + REQUIRED[1:]), "attribute 'sp.span.type' is 'other'"),
        (traces_with(REQUIRED + [s("http.request.header.accept", "x")]),
         "attribute 'http.request.header.accept' must be array_value, got string_value"),
        (
            traces_with(REQUIRED + [KeyValue(key="http.request.header.a", value=AnyValue(
                array_value=ArrayValue(values=[AnyValue(string_value="ok"), AnyValue(int_value=3)])))]),
            "attribute 'http.request.header.a' element 1 must be string_value, got int_value",
        ),
        (traces_with(REQUIRED + [s("http.request.body", "text")]),
         "attribute 'http.request.body' must be bytes_value, got string_value"),
        (traces_with(REQUIRED + [KeyValue(key="http.request.header.", value=AnyValue(array_value=ArrayValue()))]),
         "attribute 'http.request.header.' has an empty header name"),
        (traces_with(REQUIRED + [KeyValue(key="http.response.body", value=AnyValue(bytes_value=b"x"))]),
         "response headers or body without 'http.response.status_code'"),
        (traces_with(REQUIRED + [KeyValue(key="http.response.status_code", value=AnyValue(int_value=99))]),
         "attribute 'http.response.status_code' is 99, outside 100..599"),
        (traces_with(REQUIRED + [s("http.response.status_code", "200")]),
         "attribute 'http.response.status_code' must be int_value, got string_value"),
        (traces_with(REQUIRED + [KeyValue(key="sp.cache.ttl_seconds", value=AnyValue(int_value=-1))]),
         "attribute 'sp.cache.ttl_seconds' is -1, must be >= 0"),
        (traces_with(REQUIRED + [KeyValue(key="sp.cache.vary", value=AnyValue())]),
         "attribute 'sp.cache.vary' must be array_value, got empty"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformed_spans_name_the_problem(data, message):
    with pytest.raises(MalformedSpan) as info:
        decode_span(data)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_span_is_malformed():
    data = encode_span(SpanType.EXTRACT, sample_request(), sample_response(), 60)
    for cut in (1, 5, len(data) // 2):
        with pytest.raises(MalformedSpan, match="not an OTLP TracesData protobuf"):
            decode_span(data[:-cut])


def test_decode_hit_requires_status_and_age():
    with pytest.raises(MalformedSpan, match="missing required attribute 'sp.cache.age_seconds'"):
        decode_hit(traces_with([KeyValue(key="http.response.status_code", value=AnyValue(int_value=200))]))
    with pytest.raises(MalformedSpan, match="missing required attribute 'http.response.status_code'"):
        decode_hit(traces_with([]))


def test_encode_span_rejects_unknown_type():
    with pytest.raises(ValueError, match="'lookup' is not a valid SpanType"):
        encode_span("lookup", sample_request())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_decode_span_on_arbitrary_bytes_only_raises_malformed(data):
    try:
        decoded = decode_span(data)
    except MalformedSpan:
        return
    assert decoded.span_type in (SpanType.INJECT, SpanType.EXTRACT)


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    return st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_decode_span_on_corrupted_valid_spans_only_raises_malformed(data):
    valid = encode_span(SpanType.EXTRACT, sample_request(), sample_response(), 60)
    buf = bytearray(valid)
    for index, byte in data.draw(_mutations(valid)):
        buf[index] = byte
    try:
        decode_span(bytes(buf))
    except MalformedSpan:
        pass


header_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12)
header_maps = st.dictionaries(header_names, st.lists(st.text(max_size=20), max_size=4), max_size=6)


@settings(max_examples=100, deadline=None)
@given(req_headers=header_maps, req_body=st.binary(max_size=300), resp_headers=header_maps,
       resp_body=st.binary(max_size=300), status=st.integers(100, 599), ttl=st.integers(0, 2**40))
def test_round_trip_property(req_headers, req_body, resp_headers, resp_body, status, ttl):
    request = sample_request(headers=req_headers, body=req_body)
    response = CachedResponse(status, resp_headers, resp_body)
    decoded = decode_span(encode_span(SpanType.EXTRACT, request, response, ttl))
    assert decoded == (SpanType.EXTRACT, request, response, ttl)
    assert list(decoded.response.headers.items()) == list(resp_headers.items())


def test_attribute_names_match_the_contract():
    assert (otlp.ATTR_METHOD, otlp.ATTR_SCHEME, otlp.ATTR_PATH, otlp.ATTR_AUTHORITY) == (
        "http.request.method", "url.scheme", "url.path", "server.address")
    assert (otlp.ATTR_CACHE_KEY, otlp.ATTR_CACHE_VARY, otlp.ATTR_TTL, otlp.ATTR_AGE) == (
        "sp.cache.key", "sp.cache.vary", "sp.cache.ttl_seconds", "sp.cache.age_seconds")


GOLDEN = json.loads((FILTER_DIR / "testdata" / "protocol_golden.json").read_text())


def test_golden_hit_answer_decodes_as_the_filter_expects():
    response, age = decode_hit(bytes.fromhex(GOLDEN["hit_answer_hex"]))
    expect = GOLDEN["hit_expect"]
    assert response.status == expect["status"]
    assert [(n, v) for n, vs in response.headers.items() for v in vs] == [tuple(p) for p in expect["headers"]]
    assert response.body == expect["body"].encode()
    assert age == expect["age_seconds"]


def test_encode_hit_carries_the_golden_attributes_in_order():
    expect = GOLDEN["hit_expect"]
    headers: dict[str, list[str]] = {}
    for name, value in expect["headers"]:
        headers.setdefault(name, []).append(value)
    ours = encode_hit(CachedResponse(expect["status"], headers, expect["body"].encode()), expect["age_seconds"])

    def attributes(data: bytes) -> list[bytes]:
        span = TracesData.FromString(data).resource_spans[0].scope_spans[0].spans[0]
        return [kv.SerializeToString() for kv in span.attributes]

    golden = attributes(bytes.fromhex(GOLDEN["hit_answer_hex"]))
    assert [a for a in attributes(ours) if a in golden] == golden
