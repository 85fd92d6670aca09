"""Hardening (issue 11 "Fuzz"): whatever bytes, attribute shapes, huge counts, non-UTF-8 values or
key headers a caller sends, the backend answers with a 2xx/4xx status and never a 5xx, and logs
no unhandled exception."""

from __future__ import annotations

import http.client
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, TracesData

from sp_istio_cache import otlp
from sp_istio_cache.backend.app import create_app, quiet_client_errors
from sp_istio_cache.backend.storage import create_storage
from sp_istio_cache.otlpwire import _header, frame_spans
from tests.backend.spans import KEY, KEYED, lookup_body, request, store_body
from tests.support import running

ROUTES = ("/v1/inject", "/v1/traces", "/v1/invalidate")
EXPECTED = {200, 400, 404, 413}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class ErrorRecords(logging.Handler):
    """Collects ERROR records (aiohttp logs an unhandled exception in a handler at ERROR)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def client():
    quiet_client_errors()  # as python -m sp_istio_cache.backend does
    errors = ErrorRecords()
    logging.getLogger().addHandler(errors)
    storage = create_storage("memory", max_bytes=4 * 2**20)
    try:
        with running(create_app(storage, key=KEY, max_body_bytes=2 * 2**20, evict_interval=0)) as c:
            c.errors = errors
            yield c
    finally:
        logging.getLogger().removeHandler(errors)
    assert [r.getMessage() for r in errors.records] == []


def check(client, reply) -> None:
    assert reply.status in EXPECTED, (reply.status, reply.body[:300])
    assert client.errors.records == []


@FUZZ
@given(route=st.sampled_from(ROUTES), body=st.binary(max_size=2048))
def test_arbitrary_bytes(client, route, body):
    check(client, client.post(route, body, headers=KEYED))


KNOWN_KEYS = [v for k, v in vars(otlp).items() if k.startswith("ATTR_") and not v.endswith(".")] + [
    "http.request.header.x-note", "http.response.header.content-type", "http.request.header.", "future.key"]

scalars = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), st.text(max_size=80)),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=80)),
    st.builds(lambda v: AnyValue(int_value=v), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda v: AnyValue(double_value=v), st.floats(allow_nan=True)),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.just(AnyValue()),
    st.sampled_from([AnyValue(string_value=s) for s in ("inject", "extract", "invalidate", "", "a" * 64, "GET")]),
)
any_values = st.recursive(scalars, lambda inner: st.one_of(
    st.builds(lambda vs: AnyValue(array_value=ArrayValue(values=vs)), st.lists(inner, max_size=6)),
    st.builds(lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs])),
              st.lists(st.tuples(st.text(max_size=8), inner), max_size=3))), max_leaves=12)
attributes = st.lists(st.tuples(st.sampled_from(KNOWN_KEYS), any_values), max_size=25)


@FUZZ
@given(route=st.sampled_from(ROUTES), attrs=attributes, spans=st.integers(0, 3))
def test_arbitrary_attribute_shapes(client, route, attrs, spans):
    span = Span(name="/", attributes=[KeyValue(key=k, value=v) for k, v in attrs])
    traces = TracesData(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span] * spans)])])
    check(client, client.post(route, traces.SerializeToString(), headers=KEYED))


@FUZZ
@given(data=st.data())
def test_valid_spans_with_attributes_swapped_for_arbitrary_values(client, data):
    route, body = data.draw(st.sampled_from([
        ("/v1/traces", store_body(request(path="/f"))),
        ("/v1/inject", lookup_body(request(path="/f"))),
    ]))
    traces = TracesData.FromString(body)
    span = traces.resource_spans[0].scope_spans[0].spans[0]
    for index in data.draw(st.lists(st.integers(0, len(span.attributes) - 1), max_size=3)):
        span.attributes[index].value.CopyFrom(data.draw(any_values))
    check(client, client.post(route, traces.SerializeToString(), headers=KEYED))


@FUZZ
@given(data=st.data())
def test_invalid_utf8_inside_string_fields(client, data):
    body = bytearray(store_body(request(path="/utf8", headers={"x-note": ["caf-e"]})))
    for marker in (b"/utf8", b"caf-e", b"extract", b"GET"):
        if data.draw(st.booleans()):
            at = body.index(marker)
            body[at + 1] = data.draw(st.sampled_from([0xE9, 0xFF, 0x80, 0xC0]))
    check(client, client.post("/v1/traces", bytes(body), headers=KEYED))


def test_huge_counts(client):
    many_values = {"x-many": ["v"] * 100_000}
    check(client, client.post("/v1/traces", store_body(request(path="/many", headers=many_values)), headers=KEYED))
    many_headers = {f"x-h{i}": [b"\xe9"] for i in range(20_000)}
    check(client, client.post("/v1/inject", lookup_body(request(path="/wide", headers=many_headers)), headers=KEYED))
    keys = otlp.encode_span("invalidate", request(), invalidate_keys=["a" * 64] * 100_000)
    reply = client.post("/v1/invalidate", keys, headers=KEYED)
    assert reply.status in (400, 413)
    nested = AnyValue(string_value="x").SerializeToString()
    for _ in range(300):  # deeper than any protobuf parser's limit: built on the wire, not with messages
        array = _header(1, len(nested)) + nested  # ArrayValue.values
        nested = _header(5, len(array)) + array  # AnyValue.array_value
    key = b"http.request.header.deep"
    attribute = _header(1, len(key)) + key + _header(2, len(nested)) + nested
    deep_span = _header(9, len(attribute)) + attribute  # Span.attributes
    check(client, client.post("/v1/inject", frame_spans(b"", b"", [deep_span]), headers=KEYED))
    check(client, client.post("/v1/traces", b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 64, headers=KEYED))


@FUZZ
@given(key=st.binary(max_size=64).filter(lambda b: b"\r" not in b and b"\n" not in b and b"\x00" not in b))
def test_arbitrary_key_header_bytes(client, key):
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=10)
    try:
        conn.putrequest("POST", "/v1/inject")
        conn.putheader("x-public-key", key)
        conn.putheader("content-length", "0")
        conn.endheaders()
        reply = conn.getresponse()
        reply.read()
    finally:
        conn.close()
    # 400 from the HTTP parser for control bytes, 401 for any other wrong key, 400 (empty span) for the key
    assert reply.status in ((400,) if key == KEY.encode() else (400, 401))
    assert client.errors.records == []


def test_the_note_header_from_the_issue(client):
    """issue 11 §3: ``x-note: caf\\xe9`` broke every lookup and store; now it travels as bytes."""
    req = request(path="/note", headers={"x-note": [b"caf\xe9"]})
    assert client.post("/v1/traces", store_body(req), headers=KEYED).status == 200
    assert client.post("/v1/inject", lookup_body(req), headers=KEYED).status == 200
