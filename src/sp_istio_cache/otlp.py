"""The backend side of the filter <-> backend wire format (``docs/protocol.md``).

Every call carries an OTLP ``TracesData`` protobuf holding exactly one ResourceSpans -> one
ScopeSpans -> one Span; the exchange travels in the span's attributes. This module turns those
bytes into plain dataclasses and back:

- :func:`decode_span` reads a lookup (``inject``) or store (``extract``) span as the filter sends it;
- :func:`encode_hit` builds the body of the 200 answer to ``/v1/inject``;
- :func:`encode_span` builds lookup/store spans from Python, so tests and benchmarks can play the
  filter's part; :func:`decode_hit` reads a hit answer back.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from sp_istio_cache import __version__

SCOPE_NAME = "sp-istio-cache"
DEFAULT_SERVICE_NAME = "sp-istio-cache"

# Attribute keys, exactly as in docs/protocol.md.
ATTR_SPAN_TYPE = "sp.span.type"
ATTR_METHOD = "http.request.method"
ATTR_SCHEME = "url.scheme"
ATTR_PATH = "url.path"
ATTR_AUTHORITY = "server.address"
ATTR_REQUEST_HEADER_PREFIX = "http.request.header."
ATTR_REQUEST_BODY = "http.request.body"
ATTR_SERVICE_NAME = "sp.service.name"
ATTR_DIRECTION = "sp.traffic.direction"
ATTR_SESSION_ID = "sp.session.id"
ATTR_CACHE_KEY = "sp.cache.key"
ATTR_CACHE_VARY = "sp.cache.vary"
ATTR_STATUS = "http.response.status_code"
ATTR_RESPONSE_HEADER_PREFIX = "http.response.header."
ATTR_RESPONSE_BODY = "http.response.body"
ATTR_TTL = "sp.cache.ttl_seconds"
ATTR_AGE = "sp.cache.age_seconds"
RESOURCE_SERVICE_NAME = "service.name"

_REQUIRED = (ATTR_SPAN_TYPE, ATTR_METHOD, ATTR_SCHEME, ATTR_PATH, ATTR_AUTHORITY)


class SpanType(str, Enum):
    """``sp.span.type``: which call a span belongs to."""

    INJECT = "inject"  # lookup, POST /v1/inject
    EXTRACT = "extract"  # store, POST /v1/traces


class MalformedSpan(ValueError):
    """The bytes are not a protocol span; the message says exactly what is wrong."""


@dataclass
class CachedRequest:
    """The request half of a span.

    ``headers`` maps lower-case names to every value in order; ``key`` is the fingerprint the
    filter computed (None when the span carries none); ``vary`` lists the header names that went
    into it (sorted, lower-case).
    """

    method: str
    scheme: str
    authority: str
    path: str
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    service_name: str = ""
    direction: str = "outbound"
    session_id: str = ""
    key: str | None = None
    vary: list[str] = field(default_factory=list)


@dataclass
class CachedResponse:
    """The response half of a span: status, lower-case headers in order, exact body bytes."""

    status: int
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""


class DecodedSpan(NamedTuple):
    """What :func:`decode_span` returns; unpacks as ``(span_type, request, response, ttl_seconds)``."""

    span_type: SpanType
    request: CachedRequest
    response: CachedResponse | None
    ttl_seconds: int | None


# --------------------------------------------------------------------------------------------
# decoding


def _parse_traces(data: bytes) -> Span:
    """Parse ``data`` as TracesData and return its only span, or raise MalformedSpan."""
    try:
        traces = TracesData.FromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise MalformedSpan(f"body is not an OTLP TracesData protobuf: {exc}") from exc
    spans = [
        span
        for resource_spans in traces.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    if len(spans) != 1:
        raise MalformedSpan(
            f"expected exactly one span, found {len(spans)} "
            f"(in {len(traces.resource_spans)} resource_spans)"
        )
    return spans[0]


def _attributes(span: Span) -> dict[str, AnyValue]:
    """The span's attributes by key, in order; a repeated key is an error."""
    attrs: dict[str, AnyValue] = {}
    for kv in span.attributes:
        if kv.key in attrs:
            raise MalformedSpan(f"attribute {kv.key!r} appears more than once")
        attrs[kv.key] = kv.value
    return attrs


def _kind(value: AnyValue) -> str:
    return value.WhichOneof("value") or "empty"


def _expect(key: str, value: AnyValue, kind: str) -> None:
    actual = _kind(value)
    if actual != kind:
        raise MalformedSpan(f"attribute {key!r} must be {kind}, got {actual}")


def _string(attrs: dict[str, AnyValue], key: str, default: str | None = None) -> str | None:
    value = attrs.get(key)
    if value is None:
        return default
    _expect(key, value, "string_value")
    return value.string_value


def _int(attrs: dict[str, AnyValue], key: str) -> int | None:
    value = attrs.get(key)
    if value is None:
        return None
    _expect(key, value, "int_value")
    return value.int_value


def _bytes(attrs: dict[str, AnyValue], key: str) -> bytes:
    value = attrs.get(key)
    if value is None:
        return b""
    _expect(key, value, "bytes_value")
    return value.bytes_value


def _string_array(key: str, value: AnyValue) -> list[str]:
    _expect(key, value, "array_value")
    out = []
    for i, item in enumerate(value.array_value.values):
        if _kind(item) != "string_value":
            raise MalformedSpan(f"attribute {key!r} element {i} must be string_value, got {_kind(item)}")
        out.append(item.string_value)
    return out


def _headers(attrs: dict[str, AnyValue], prefix: str) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for key, value in attrs.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            if not name:
                raise MalformedSpan(f"attribute {key!r} has an empty header name")
            headers[name] = _string_array(key, value)
    return headers


def decode_span(data: bytes) -> DecodedSpan:
    """Decode a lookup or store body into ``(span_type, request, response, ttl_seconds)``.

    ``response`` is None when the span carries no ``http.response.status_code``; ``ttl_seconds``
    is None when it carries no ``sp.cache.ttl_seconds``. Attributes this module does not know are
    ignored.

    Raises:
        MalformedSpan: undecodable protobuf; not exactly one span; a repeated attribute; a
            missing required attribute (``sp.span.type``, ``http.request.method``, ``url.scheme``,
            ``url.path``, ``server.address``); an attribute of the wrong AnyValue type; an unknown
            span type; response headers or body without a status; a status outside 100..599;
            a negative TTL.
    """
    attrs = _attributes(_parse_traces(data))
    for key in _REQUIRED:
        if key not in attrs:
            raise MalformedSpan(f"missing required attribute {key!r}")

    raw_type = _string(attrs, ATTR_SPAN_TYPE)
    try:
        span_type = SpanType(raw_type)
    except ValueError:
        raise MalformedSpan(
            f"attribute {ATTR_SPAN_TYPE!r} is {raw_type!r}, expected 'inject' or 'extract'"
        ) from None

    vary_value = attrs.get(ATTR_CACHE_VARY)
    request = CachedRequest(
        method=_string(attrs, ATTR_METHOD),
        scheme=_string(attrs, ATTR_SCHEME),
        authority=_string(attrs, ATTR_AUTHORITY),
        path=_string(attrs, ATTR_PATH),
        headers=_headers(attrs, ATTR_REQUEST_HEADER_PREFIX),
        body=_bytes(attrs, ATTR_REQUEST_BODY),
        service_name=_string(attrs, ATTR_SERVICE_NAME, ""),
        direction=_string(attrs, ATTR_DIRECTION, ""),
        session_id=_string(attrs, ATTR_SESSION_ID, ""),
        key=_string(attrs, ATTR_CACHE_KEY),
        vary=[] if vary_value is None else _string_array(ATTR_CACHE_VARY, vary_value),
    )

    status = _int(attrs, ATTR_STATUS)
    response_headers = _headers(attrs, ATTR_RESPONSE_HEADER_PREFIX)
    response_body = _bytes(attrs, ATTR_RESPONSE_BODY)
    response = None
    if status is None:
        if response_headers or ATTR_RESPONSE_BODY in attrs:
            raise MalformedSpan(f"response headers or body without {ATTR_STATUS!r}")
    else:
        if not 100 <= status <= 599:
            raise MalformedSpan(f"attribute {ATTR_STATUS!r} is {status}, outside 100..599")
        response = CachedResponse(status=status, headers=response_headers, body=response_body)

    ttl = _int(attrs, ATTR_TTL)
    if ttl is not None and ttl < 0:
        raise MalformedSpan(f"attribute {ATTR_TTL!r} is {ttl}, must be >= 0")
    return DecodedSpan(span_type, request, response, ttl)


def decode_hit(data: bytes) -> tuple[CachedResponse, int]:
    """Decode the body of a 200 answer to ``/v1/inject`` into ``(response, age_seconds)``.

    Raises:
        MalformedSpan: not one span, or no status / age, or wrong attribute types.
    """
    attrs = _attributes(_parse_traces(data))
    status = _int(attrs, ATTR_STATUS)
    age = _int(attrs, ATTR_AGE)
    if status is None:
        raise MalformedSpan(f"missing required attribute {ATTR_STATUS!r}")
    if age is None:
        raise MalformedSpan(f"missing required attribute {ATTR_AGE!r}")
    response = CachedResponse(
        status=status,
        headers=_headers(attrs, ATTR_RESPONSE_HEADER_PREFIX),
        body=_bytes(attrs, ATTR_RESPONSE_BODY),
    )
    return response, age


# --------------------------------------------------------------------------------------------
# encoding


def _kv_string(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _kv_int(key: str, value: int) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(int_value=value))


def _kv_bytes(key: str, value: bytes) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(bytes_value=value))


def _kv_strings(key: str, values: list[str]) -> KeyValue:
    array = ArrayValue(values=[AnyValue(string_value=v) for v in values])
    return KeyValue(key=key, value=AnyValue(array_value=array))


def _response_attributes(response: CachedResponse) -> list[KeyValue]:
    attrs = [_kv_int(ATTR_STATUS, response.status)]
    attrs += [_kv_strings(ATTR_RESPONSE_HEADER_PREFIX + n, v) for n, v in response.headers.items()]
    if response.body:
        attrs.append(_kv_bytes(ATTR_RESPONSE_BODY, response.body))
    return attrs


def _wrap(span: Span, service_name: str) -> bytes:
    traces = TracesData()
    resource_spans = traces.resource_spans.add()
    resource_spans.resource.attributes.append(_kv_string(RESOURCE_SERVICE_NAME, service_name))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = SCOPE_NAME
    scope_spans.scope.version = __version__
    scope_spans.spans.append(span)
    return traces.SerializeToString()


def _new_span(name: str, attributes: list[KeyValue], trace_id: bytes | None, span_id: bytes | None) -> Span:
    now = time.time_ns()
    return Span(
        trace_id=trace_id if trace_id is not None else os.urandom(16),
        span_id=span_id if span_id is not None else os.urandom(8),
        name=name,
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=now,
        end_time_unix_nano=now,
        attributes=attributes,
    )


def encode_span(
    span_type: SpanType | str,
    request: CachedRequest,
    response: CachedResponse | None = None,
    ttl_seconds: int | None = None,
    *,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
) -> bytes:
    """Build a lookup (``inject``) or store (``extract``) body the way the filter does.

    ``request.key`` and ``request.vary`` are sent as given (``sp.cache.key`` is omitted when the
    key is None); compute the key with :func:`sp_istio_cache.fingerprint.request_fingerprint`.
    ``trace_id`` (16 bytes) and ``span_id`` (8 bytes) default to random ids.

    Raises:
        ValueError: an unknown span type.
    """
    span_type = SpanType(span_type)
    attrs = [
        _kv_string(ATTR_SPAN_TYPE, span_type.value),
        _kv_string(ATTR_METHOD, request.method),
        _kv_string(ATTR_SCHEME, request.scheme),
        _kv_string(ATTR_PATH, request.path),
        _kv_string(ATTR_AUTHORITY, request.authority),
    ]
    attrs += [_kv_strings(ATTR_REQUEST_HEADER_PREFIX + n, v) for n, v in request.headers.items()]
    if request.body:
        attrs.append(_kv_bytes(ATTR_REQUEST_BODY, request.body))
    attrs += [
        _kv_string(ATTR_SERVICE_NAME, request.service_name),
        _kv_string(ATTR_DIRECTION, request.direction),
        _kv_string(ATTR_SESSION_ID, request.session_id),
    ]
    if request.key is not None:
        attrs.append(_kv_string(ATTR_CACHE_KEY, request.key))
    attrs.append(_kv_strings(ATTR_CACHE_VARY, list(request.vary)))
    if response is not None:
        attrs += _response_attributes(response)
    if ttl_seconds is not None:
        attrs.append(_kv_int(ATTR_TTL, ttl_seconds))
    span = _new_span(request.path, attrs, trace_id, span_id)
    return _wrap(span, request.service_name or DEFAULT_SERVICE_NAME)


def encode_hit(response: CachedResponse, age_seconds: int) -> bytes:
    """Build the body of the 200 answer to ``/v1/inject``: one span with the cached response.

    The span carries ``sp.span.type=inject``, ``http.response.status_code``, every
    ``http.response.header.<name>`` in stored order, ``http.response.body`` (when non-empty) and
    ``sp.cache.age_seconds`` (whole seconds since the entry was stored, clamped at 0).
    """
    attrs = [_kv_string(ATTR_SPAN_TYPE, SpanType.INJECT.value)]
    attrs += _response_attributes(response)
    attrs.append(_kv_int(ATTR_AGE, max(0, int(age_seconds))))
    return _wrap(_new_span("cache-hit", attrs, None, None), DEFAULT_SERVICE_NAME)
