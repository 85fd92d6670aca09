"""The wire format, protocol version 2: round trips, bytes-safe values, verbatim span framing, and
precise errors for malformed spans."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, TracesData

from sp_istio_cache import otlp
from sp_istio_cache.otlp import (
    CachedRequest,
    CachedResponse,
    EntryMeta,
    MalformedSpan,
    SpanType,
    decode_candidates,
    decode_span,
    encode_candidates,
    encode_span,
    span_name,
    text_value,
)
from sp_istio_cache.otlpwire import WireError, frame_spans, span_slices
from sp_istio_cache.paths import REPO_ROOT as ROOT

VARIANT, SIGNATURE = "c" * 64, "d" * 64


def sample_request(**kw) -> CachedRequest:
    fields = dict(method="GET", scheme="http", authority="upstream:8080", path="/bytes/16?seed=1",
                  headers={"accept": ["text/html", "application/json"], "x-sp-session-id": ["s1"]},
                  body=b"", service_name="svc", direction="outbound", session_id="s1", key=None)
    fields.update(kw)
    return CachedRequest(**fields)


def sample_response() -> CachedResponse:
    return CachedResponse(200, {"content-type": ["application/octet-stream"], "x-multi": ["2", "1", "2"]},
                          bytes(range(256)) + b"\x00\xff")


ENTRY = EntryMeta(VARIANT, 1_700_000_000_000, 1_700_000_000_042, SIGNATURE)


def store(request=None, response=None, retain=120, **kw) -> bytes:
    return encode_span(SpanType.EXTRACT, request or sample_request(), response=response or sample_response(),
                       entry=ENTRY, retain_seconds=retain, **kw)


def the_span(data: bytes) -> Span:
    return TracesData.FromString(data).resource_spans[0].scope_spans[0].spans[0]


def test_store_round_trip():
    request = sample_request(method="POST", body=b"\x00\x01binary\xff")
    decoded = decode_span(store(request))
    assert decoded.span_type is SpanType.EXTRACT
    assert decoded.request == CachedRequest(**{**request.__dict__, "key": request.fingerprint()})
    assert decoded.response == sample_response()
    assert decoded.response.headers["x-multi"] == ["2", "1", "2"]
    assert decoded.entry == ENTRY
    assert decoded.retain_seconds == 120
    assert decoded.invalidate_keys == []


def test_raw_is_the_exact_span_bytes_of_the_body():
    data = store(trace_id=b"t" * 16, span_id=b"s" * 8, start_time_unix_nano=1, end_time_unix_nano=2)
    raw = decode_span(data).raw
    assert raw == the_span(data).SerializeToString()
    assert data.endswith(raw)  # the span is the last field of the last message: a slice, not a re-encoding


def test_lookup_and_invalidate_round_trip():
    request = sample_request()
    lookup = decode_span(encode_span("inject", request))
    assert (lookup.span_type, lookup.response, lookup.entry, lookup.raw) == (SpanType.INJECT, None, None, b"")
    assert lookup.request.key == request.fingerprint()
    keys = ["a" * 64, "b" * 64]
    invalidate = decode_span(encode_span("invalidate", sample_request(method="DELETE"), invalidate_keys=keys))
    assert (invalidate.span_type, invalidate.invalidate_keys) == (SpanType.INVALIDATE, keys)


def test_encoding_is_the_protobuf_serialization():
    data = store(trace_id=b"t" * 16, span_id=b"s" * 8, start_time_unix_nano=5, end_time_unix_nano=6)
    assert TracesData.FromString(data).SerializeToString() == data
    traces = TracesData.FromString(data)
    resource_spans = traces.resource_spans[0]
    assert [(a.key, a.value.string_value) for a in resource_spans.resource.attributes] == [("service.name", "svc")]
    scope = resource_spans.scope_spans[0].scope
    assert (scope.name, scope.version) == ("sp-istio-cache", "0.1.0")
    span = the_span(data)
    assert (span.name, span.kind, span.trace_id, span.span_id) == ("/bytes/16?seed=1", 3, b"t" * 16, b"s" * 8)
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (5, 6)
    attrs = {kv.key: kv.value for kv in span.attributes}
    assert [v.string_value for v in attrs["http.request.header.accept"].array_value.values] == [
        "text/html", "application/json"]
    assert "http.request.body" not in attrs  # an empty body is omitted
    assert attrs["sp.cache.variant"].string_value == VARIANT
    assert attrs["sp.cache.retain_seconds"].int_value == 120
    inbound = the_span(encode_span("inject", sample_request(direction="inbound")))
    assert inbound.kind == Span.SPAN_KIND_SERVER == 2


def test_random_ids_are_distinct_per_span():
    first, second = the_span(encode_span("inject", sample_request())), the_span(store())
    assert (len(first.trace_id), len(first.span_id)) == (16, 8)
    assert first.span_id != second.span_id


def test_text_and_bytes_values():
    assert text_value("café") == AnyValue(string_value="café")
    assert text_value("café".encode()) == AnyValue(string_value="café")
    assert text_value(b"caf\xe9") == AnyValue(bytes_value=b"caf\xe9")
    request = sample_request(path=b"/caf\xe9", authority=b"h\xff", headers={"x-note": [b"caf\xe9", "ok", b"\x80"]},
                             session_id=b"\xfe")
    decoded = decode_span(encode_span("inject", request)).request
    assert (decoded.path, decoded.authority, decoded.session_id) == (b"/caf\xe9", b"h\xff", b"\xfe")
    assert decoded.headers["x-note"] == [b"caf\xe9", "ok", b"\x80"]
    assert decoded.key == request.fingerprint()
    assert the_span(encode_span("inject", request)).name == "/caf%E9"


def test_span_names():
    assert span_name("/a b") == "/a b"
    assert span_name(b"/ok?x=1") == "/ok?x=1"
    assert span_name(b"/caf\xe9 \x01") == "/caf%E9%20%01"


def test_bytes_value_for_utf8_text_is_accepted_and_keys_alike():
    as_text = TracesData.FromString(encode_span("inject", sample_request()))
    span = as_text.resource_spans[0].scope_spans[0].spans[0]
    for kv in span.attributes:
        if kv.key in ("url.path", "server.address"):
            kv.value.CopyFrom(AnyValue(bytes_value=kv.value.string_value.encode()))
    decoded = decode_span(as_text.SerializeToString()).request
    assert decoded.path == b"/bytes/16?seed=1"
    assert decoded.fingerprint() == sample_request().fingerprint()


def test_candidates_frame_stored_spans_verbatim():
    raws = [decode_span(store(sample_request(path=f"/{i}"))).raw for i in range(3)]
    answer = encode_candidates(raws)
    traces = TracesData.FromString(answer)
    assert traces.SerializeToString() == answer  # identical to protobuf's own serialization
    assert [s.SerializeToString() for s in traces.resource_spans[0].scope_spans[0].spans] == raws
    candidates = decode_candidates(answer)
    assert [c.raw for c in candidates] == raws
    assert [c.entry for c in candidates] == [ENTRY] * 3
    assert candidates[1].key == sample_request(path="/1").fingerprint()
    assert candidates[0].response == sample_response()


def test_span_slices_and_frame_spans_at_varint_boundaries():
    for size in (0, 1, 126, 127, 128, 16383, 16384, 2_100_000):
        span = Span(name="x", attributes=[KeyValue(key="b", value=AnyValue(bytes_value=b"\x07" * size))])
        raw = span.SerializeToString()
        framed = frame_spans(otlp.resource_bytes("svc"), otlp.scope_bytes(), [raw, raw])
        expected = TracesData(resource_spans=[ResourceSpans(
            resource=Resource.FromString(otlp.resource_bytes("svc")),
            scope_spans=[ScopeSpans(scope=InstrumentationScope.FromString(otlp.scope_bytes()), spans=[span, span])])])
        assert framed == expected.SerializeToString()
        assert [bytes(s) for s in span_slices(framed)] == [raw, raw]
    assert span_slices(b"") == []


@pytest.mark.parametrize("data, message", [
    (b"\x0a", "truncated varint at byte 1"),
    (b"\x0a\x05ab", "field 1 runs past the end of its message (byte 7 > 4)"),
    (b"\x0b", "unsupported wire type 3 (field 1) at byte 1"),
    (b"\x00", "field number 0 at byte 1"),
    (b"\x08" + b"\xff" * 11, "varint longer than 10 bytes"),
])
def test_span_slices_name_the_framing_error(data, message):
    with pytest.raises(WireError, match=re.escape(message)):
        span_slices(data)


def s(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def i(key: str, value: int) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(int_value=value))


KEY = sample_request(path="/p", authority="h").fingerprint()
LOOKUP = [s("sp.span.type", "inject"), s("http.request.method", "GET"), s("url.scheme", "http"),
          s("url.path", "/p"), s("server.address", "h"), s("sp.cache.key", KEY)]
STORE = [s("sp.span.type", "extract")] + LOOKUP[1:] + [
    i("http.response.status_code", 200), s("sp.cache.variant", ""), i("sp.cache.request_time_ms", 1),
    i("sp.cache.response_time_ms", 2), i("sp.cache.retain_seconds", 3), s("sp.cache.signature", SIGNATURE)]


def traces_with(attributes: list[KeyValue], spans: int = 1) -> bytes:
    scope = ScopeSpans(spans=[Span(name="/", attributes=attributes) for _ in range(spans)])
    return TracesData(resource_spans=[ResourceSpans(scope_spans=[scope])]).SerializeToString()


def replaced(attrs: list[KeyValue], key: str, value: AnyValue | None) -> list[KeyValue]:
    out = [kv for kv in attrs if kv.key != key]
    return out if value is None else out + [KeyValue(key=key, value=value)]


ARRAY = AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="ok"), AnyValue(int_value=3)]))


@pytest.mark.parametrize("data, message", [
    (b"\xff\xff\xff", "body is not an OTLP TracesData protobuf"),
    (b"", "expected exactly one span, found 0"),
    (traces_with(LOOKUP, spans=2), "expected exactly one span, found 2"),
    (traces_with(replaced(LOOKUP, "url.path", None)), "missing required attribute 'url.path'"),
    (traces_with(LOOKUP[1:]), "missing required attribute 'sp.span.type'"),
    (traces_with(LOOKUP + [s("url.path", "/q")]), "attribute 'url.path' appears more than once"),
    (traces_with(replaced(LOOKUP, "url.path", AnyValue(int_value=1))),
     "attribute 'url.path' must be string_value or bytes_value, got int_value"),
    (traces_with(replaced(LOOKUP, "http.request.method", AnyValue(bytes_value=b"GET"))),
     "attribute 'http.request.method' must be string_value, got bytes_value"),
    (traces_with(replaced(LOOKUP, "sp.span.type", AnyValue(string_value="other"))),
     "attribute 'sp.span.type' is 'other', expected one of 'inject', 'extract', 'invalidate'"),
    (traces_with(LOOKUP + [s("http.request.header.accept", "x")]),
     "attribute 'http.request.header.accept' must be array_value, got string_value"),
    (traces_with(LOOKUP + [KeyValue(key="http.request.header.a", value=ARRAY)]),
     "attribute 'http.request.header.a' element 1 must be string_value or bytes_value, got int_value"),
    (traces_with(LOOKUP + [s("http.request.body", "text")]),
     "attribute 'http.request.body' must be bytes_value, got string_value"),
    (traces_with(LOOKUP + [KeyValue(key="http.request.header.", value=AnyValue(array_value=ArrayValue()))]),
     "attribute 'http.request.header.' has an empty header name"),
    (traces_with(replaced(LOOKUP, "sp.cache.key", AnyValue(string_value="A" * 64))),
     "attribute 'sp.cache.key' must be 64 lower-case hex characters, got 'AAAA"),
    (traces_with(replaced(STORE, "http.response.status_code", AnyValue(int_value=199))),
     "attribute 'http.response.status_code' is 199, outside 200..599"),
    (traces_with(replaced(STORE, "http.response.status_code", AnyValue(string_value="200"))),
     "attribute 'http.response.status_code' must be int_value, got string_value"),
    (traces_with(replaced(STORE, "sp.cache.retain_seconds", AnyValue(int_value=-1))),
     "attribute 'sp.cache.retain_seconds' is -1, outside 0..9223372036854775807"),
    (traces_with(replaced(STORE, "sp.cache.variant", AnyValue(string_value="abc"))),
     "attribute 'sp.cache.variant' must be 64 lower-case hex characters or empty, got 'abc'"),
    (traces_with(replaced(STORE, "sp.cache.signature", AnyValue(string_value=""))),
     "attribute 'sp.cache.signature' must be 64 lower-case hex characters, got ''"),
    (traces_with(replaced(STORE, "sp.cache.request_time_ms", AnyValue())),
     "attribute 'sp.cache.request_time_ms' must be int_value, got empty"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_malformed_spans_name_the_problem(data, message):
    with pytest.raises(MalformedSpan) as info:
        decode_span(data)
    assert message in str(info.value)


def test_unknown_attributes_and_other_calls_attributes_are_ignored():
    decoded = decode_span(traces_with(LOOKUP + [s("future.thing", "x"), i("http.response.status_code", 1)]))
    assert (decoded.request.path, decoded.response, decoded.request.session_id) == ("/p", None, "")
    assert decode_span(traces_with(STORE)).retain_seconds == 3


def test_span_type_must_be_the_expected_one():
    with pytest.raises(MalformedSpan, match="span type 'inject' where 'extract' was expected"):
        decode_span(traces_with(LOOKUP), SpanType.EXTRACT)


def test_truncated_span_is_malformed():
    data = store()
    for cut in (1, 5, len(data) // 2):
        with pytest.raises(MalformedSpan, match="not an OTLP TracesData protobuf"):
            decode_span(data[:-cut])


def test_encode_span_refuses_an_incomplete_store_and_unknown_types():
    with pytest.raises(ValueError, match="'lookup' is not a valid SpanType"):
        encode_span("lookup", sample_request())
    with pytest.raises(ValueError, match="a store span needs response, entry and retain_seconds"):
        encode_span("extract", sample_request(), response=sample_response())


def test_attribute_names_are_the_contracts():
    doc = (ROOT / "docs" / "protocol.md").read_text()
    table = doc[doc.index("### Attributes"):doc.index("## Request fingerprint")]
    documented = set(re.findall(r"^\| `([a-z._<>-]+)`", table, re.M))
    ours = {v.replace("header.", "header.<lower-name>") if v.endswith("header.") else v
            for k, v in vars(otlp).items() if k.startswith("ATTR_")}
    assert ours == documented


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_only_raise_malformed(data):
    try:
        decode_span(data)
    except MalformedSpan:
        pass
    try:
        span_slices(data)
    except WireError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_corrupted_valid_spans_only_raise_malformed(data):
    buf = bytearray(store())
    for index, byte in data.draw(st.lists(st.tuples(st.integers(0, len(buf) - 1), st.integers(0, 255)), max_size=4)):
        buf[index] = byte
    try:
        decode_span(bytes(buf))
    except MalformedSpan:
        pass


header_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12)
values = st.one_of(st.text(max_size=20), st.binary(max_size=20))
header_maps = st.dictionaries(header_names, st.lists(values, max_size=4), max_size=6)


def _as_decoded(value):
    """What a value reads back as: UTF-8 bytes travel as text."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value
    return value


@settings(max_examples=100, deadline=None)
@given(req_headers=header_maps, req_body=st.binary(max_size=300), resp_headers=header_maps,
       resp_body=st.binary(max_size=300), status=st.integers(200, 599), retain=st.integers(0, 2**40),
       path=st.one_of(st.text(min_size=1, max_size=30), st.binary(min_size=1, max_size=30)))
def test_round_trip_property(req_headers, req_body, resp_headers, resp_body, status, retain, path):
    request = sample_request(headers=req_headers, body=req_body, path=path)
    response = CachedResponse(status, resp_headers, resp_body)
    decoded = decode_span(store(request, response, retain))
    assert decoded.request.path == _as_decoded(path)
    assert decoded.request.key == request.fingerprint() == decoded.request.fingerprint()
    assert decoded.request.headers == {n: [_as_decoded(v) for v in vs] for n, vs in req_headers.items()}
    assert decoded.response == CachedResponse(status, {n: [_as_decoded(v) for v in vs]
                                                       for n, vs in resp_headers.items()}, resp_body)
    assert list(decoded.response.headers) == list(resp_headers)
    assert decoded.retain_seconds == retain


GOLDEN_PATH = ROOT / "filter" / "testdata" / "protocol_golden.json"
GOLDEN = json.loads(GOLDEN_PATH.read_text())
needs_v2_golden = pytest.mark.skipif("spans" not in GOLDEN, reason="filter/testdata/protocol_golden.json is still "
                                     "protocol version 1 (the entry branch writes version 2)")


@needs_v2_golden
def test_golden_spans_decode_with_the_shared_key():
    for name, span in GOLDEN["spans"].items():
        decoded = decode_span(bytes.fromhex(span["hex"]))
        assert decoded.span_type.value == {"lookup": "inject", "store": "extract", "invalidate": "invalidate"}[name]
        assert decoded.request.key == decoded.request.fingerprint() == GOLDEN["request"]["key"]
        if name == "store":
            assert decoded.raw == bytes(span_slices(bytes.fromhex(span["hex"]))[0])


@needs_v2_golden
def test_golden_lookup_answer_decodes_candidate_by_candidate():
    candidates = decode_candidates(bytes.fromhex(GOLDEN["lookup_answer"]["hex"]))
    expected = GOLDEN["lookup_answer"]["candidates"]
    assert [(c.key, c.entry.variant, c.response.status, c.entry.signature) for c in candidates] == [
        (e["key"], e["variant"], e["status"], e["signature"]) for e in expected]
    assert [c.response.body.hex() for c in candidates] == [e["body_hex"] for e in expected]
