"""The Python side of the filter <-> backend wire format, protocol version 2 (``docs/protocol.md``).

Every call carries an OTLP ``TracesData`` protobuf holding one ResourceSpans -> one ScopeSpans
-> one Span; the exchange travels in the span's attributes. A lookup answer holds 1..N stored
spans, each exactly as stored.

- :func:`decode_span` reads a lookup (``inject``), store (``extract``) or ``invalidate`` span and,
  for a store, keeps the span's exact bytes (what the backend stores and hands back);
- :func:`encode_span` builds those spans from Python, so tests, benchmarks and tools can play the
  filter's part (values that are not UTF-8 travel as ``bytes_value``);
- :func:`encode_candidates` frames stored spans into a lookup answer without re-encoding them;
  :func:`decode_candidates` reads such an answer back.

Values that come from the wire (header values, path, authority, session id) are ``str`` when the
span carried a ``string_value`` and ``bytes`` when it carried a ``bytes_value``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Union

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from sp_istio_cache import __version__

from .attributes import (
    ATTR_AUTHORITY,
    ATTR_CACHE_KEY,
    ATTR_DIRECTION,
    ATTR_INVALIDATE_KEYS,
    ATTR_METHOD,
    ATTR_PATH,
    ATTR_REQUEST_BODY,
    ATTR_REQUEST_HEADER_PREFIX,
    ATTR_REQUEST_TIME,
    ATTR_RESPONSE_BODY,
    ATTR_RESPONSE_HEADER_PREFIX,
    ATTR_RESPONSE_TIME,
    ATTR_RETAIN,
    ATTR_SCHEME,
    ATTR_SERVICE_NAME,
    ATTR_SESSION_ID,
    ATTR_SIGNATURE,
    ATTR_SPAN_TYPE,
    ATTR_STATUS,
    ATTR_VARIANT,
    RESOURCE_SERVICE_NAME,
    SCOPE_NAME,
)
from .fingerprint import request_fingerprint
from .otlpwire import WireError, frame_spans, span_slices

Text = Union[str, bytes]

DEFAULT_SERVICE_NAME = "sp-istio-cache"
#: at most this many keys in one invalidate span (the filter sends up to 3: RFC 9111 §4.4)
MAX_INVALIDATE_KEYS = 64

_HEX64 = re.compile(r"[0-9a-f]{64}")


class SpanType(StrEnum):
    """``sp.span.type``: which call a span belongs to."""

    INJECT = "inject"  # lookup, POST /v1/inject
    EXTRACT = "extract"  # store, POST /v1/traces
    INVALIDATE = "invalidate"  # POST /v1/invalidate


class MalformedSpan(ValueError):
    """The bytes are not a protocol span; the message says exactly what is wrong."""


@dataclass
class CachedRequest:
    """The request half of a span. ``headers``: lower-case name -> every value in order.

    ``key`` is the ``sp.cache.key`` the span carries; :func:`encode_span` computes it from the
    request when it is None.
    """

    method: str
    scheme: str
    authority: Text
    path: Text
    headers: dict[str, list[Text]] = field(default_factory=dict)
    body: bytes = b""
    service_name: str = DEFAULT_SERVICE_NAME
    direction: str = "outbound"
    session_id: Text = ""
    key: str | None = None

    def fingerprint(self) -> str:
        """The primary key recomputed from method, scheme, authority, path and body."""
        return request_fingerprint(self.method, self.scheme, self.authority, self.path, self.body)


@dataclass
class CachedResponse:
    """The response half of a store or candidate span: status, lower-case headers, exact body."""

    status: int
    headers: dict[str, list[Text]] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class EntryMeta:
    """What a store adds to a response (docs/protocol.md): variant hash (64 hex or ""), the
    RFC 9111 §4.2.3 request/response times in Unix ms, and the entry signature (keyed BLAKE2b-256, 64 hex)."""

    variant: str
    request_time_ms: int
    response_time_ms: int
    signature: str


class DecodedSpan(NamedTuple):
    """A decoded call. ``response``/``entry``/``retain_seconds`` are set for a store only,
    ``invalidate_keys`` for an invalidate only; ``raw`` is the span's exact bytes."""

    span_type: SpanType
    request: CachedRequest
    response: CachedResponse | None
    entry: EntryMeta | None
    retain_seconds: int | None
    invalidate_keys: list[str]
    raw: bytes


class Candidate(NamedTuple):
    """One stored span of a lookup answer, decoded the way the filter reads it."""

    key: str
    entry: EntryMeta
    response: CachedResponse
    raw: bytes


# --------------------------------------------------------------------------------------------
# decoding


def _kind(value: AnyValue) -> str:
    return value.WhichOneof("value") or "empty"


class _Attrs:
    """A span's attributes by key (a repeated key is an error), with typed readers."""

    def __init__(self, span: Span) -> None:
        self.values: dict[str, AnyValue] = {}
        for kv in span.attributes:
            if kv.key in self.values:
                raise MalformedSpan(f"attribute {kv.key!r} appears more than once")
            self.values[kv.key] = kv.value

    def get(self, key: str, kinds: tuple[str, ...]) -> AnyValue | None:
        """The value of ``key`` (None when absent), checked to be one of ``kinds``."""
        value = self.values.get(key)
        if value is None:
            return None
        kind = value.WhichOneof("value")
        if kind not in kinds:
            raise MalformedSpan(f"attribute {key!r} must be {' or '.join(kinds)}, got {kind or 'empty'}")
        return value

    def require(self, key: str, kinds: tuple[str, ...]) -> AnyValue:
        """The value of ``key``, checked to be one of ``kinds``; absent is an error."""
        value = self.get(key, kinds)
        if value is None:
            raise MalformedSpan(f"missing required attribute {key!r}")
        return value

    def _find(self, key: str, kinds: tuple[str, ...], required: bool) -> AnyValue | None:
        return self.require(key, kinds) if required else self.get(key, kinds)

    def string(self, key: str, *, required: bool = False, default: str = "") -> str:
        value = self._find(key, ("string_value",), required)
        return default if value is None else value.string_value

    def text(self, key: str, *, required: bool = False) -> Text:
        value = self._find(key, ("string_value", "bytes_value"), required)
        if value is None:
            return ""
        return value.string_value if value.HasField("string_value") else value.bytes_value

    def integer(self, key: str, low: int, high: int) -> int:
        """The required ``int_value`` of ``key``, within ``low..high``."""
        value = self.require(key, ("int_value",))
        if not low <= value.int_value <= high:
            raise MalformedSpan(f"attribute {key!r} is {value.int_value}, outside {low}..{high}")
        return value.int_value

    def binary(self, key: str) -> bytes:
        value = self.get(key, ("bytes_value",))
        return b"" if value is None else value.bytes_value

    def hex64(self, key: str, *, allow_empty: bool = False) -> str:
        text = self.string(key, required=True)
        if not (_HEX64.fullmatch(text) or (allow_empty and text == "")):
            shown = text if len(text) <= 80 else text[:80] + "..."
            empty = " or empty" if allow_empty else ""
            raise MalformedSpan(f"attribute {key!r} must be 64 lower-case hex characters{empty}, got {shown!r}")
        return text

    def headers(self, prefix: str) -> dict[str, list[Text]]:
        headers: dict[str, list[Text]] = {}
        for key, value in self.values.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix):]
            if not name:
                raise MalformedSpan(f"attribute {key!r} has an empty header name")
            if _kind(value) != "array_value":
                raise MalformedSpan(f"attribute {key!r} must be array_value, got {_kind(value)}")
            items: list[Text] = []
            for i, item in enumerate(value.array_value.values):
                kind = _kind(item)
                if kind == "string_value":
                    items.append(item.string_value)
                elif kind == "bytes_value":
                    items.append(item.bytes_value)
                else:
                    raise MalformedSpan(
                        f"attribute {key!r} element {i} must be string_value or bytes_value, got {kind}")
            headers[name] = items
        return headers

    def response(self) -> CachedResponse:
        status = self.integer(ATTR_STATUS, 200, 599)
        return CachedResponse(status, self.headers(ATTR_RESPONSE_HEADER_PREFIX), self.binary(ATTR_RESPONSE_BODY))

    def entry(self) -> EntryMeta:
        return EntryMeta(
            variant=self.hex64(ATTR_VARIANT, allow_empty=True),
            request_time_ms=self.integer(ATTR_REQUEST_TIME, 0, 2**63 - 1),
            response_time_ms=self.integer(ATTR_RESPONSE_TIME, 0, 2**63 - 1),
            signature=self.hex64(ATTR_SIGNATURE),
        )


def _parse(data: bytes) -> list[Span]:
    try:
        traces = TracesData.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise MalformedSpan(f"body is not an OTLP TracesData protobuf: {exc}") from exc
    return [span for rs in traces.resource_spans for ss in rs.scope_spans for span in ss.spans]


def decode_span(data: bytes, expected: SpanType | None = None, *, request_headers: bool = True) -> DecodedSpan:
    """Decode the body of a lookup, store or invalidate call holding exactly one span.

    Args:
        data: the request body (a serialized TracesData holding exactly one span).
        expected: the span type the route takes; another type is an error.
        request_headers: decode (and check) ``http.request.header.*``; the backend never reads
            them and skips the work (``request.headers`` stays empty).

    Raises:
        MalformedSpan: undecodable protobuf; not exactly one span; a repeated attribute; a missing
            or mistyped attribute the call needs (``sp.span.type``, ``http.request.method``,
            ``url.scheme``, ``url.path``, ``server.address``, ``sp.cache.key``; for a store also
            status 200..599, variant, times, ``sp.cache.retain_seconds`` and signature; for an
            invalidate ``sp.cache.invalidate.keys``); a span type other than ``expected``.
    """
    data = bytes(data)
    spans = _parse(data)
    if len(spans) != 1:
        raise MalformedSpan(f"expected exactly one span, found {len(spans)}")
    return _decode_one(spans[0], data, None, 0, expected, request_headers)


def decode_spans(data: bytes, expected: SpanType, *, limit: int = 256,
                 request_headers: bool = False) -> list[DecodedSpan | MalformedSpan]:
    """Decode the body of a batched store call: a TracesData holding 1..``limit`` spans (the
    filter sends queued stores together, their TracesData back to back). Each span is decoded on
    its own: the list holds its DecodedSpan, or the MalformedSpan saying why it is refused.

    Raises:
        MalformedSpan: undecodable protobuf, no span, or more than ``limit``.
    """
    data = bytes(data)
    spans = _parse(data)
    if not 1 <= len(spans) <= limit:
        raise MalformedSpan(f"expected 1 to {limit} spans, found {len(spans)}")
    views = _slices(data) if expected is SpanType.EXTRACT else None
    out: list[DecodedSpan | MalformedSpan] = []
    for i, span in enumerate(spans):
        try:
            out.append(_decode_one(span, data, views, i, expected, request_headers))
        except MalformedSpan as exc:
            out.append(exc)
    return out


def _slices(data: bytes) -> list[memoryview]:
    try:
        return span_slices(data)
    except (WireError, ValueError) as exc:  # the protobuf parsed, so this is not expected
        raise MalformedSpan(f"cannot find the spans' bytes: {exc}") from exc


def _decode_one(span: Span, data: bytes, views: list[memoryview] | None, index: int,
                expected: SpanType | None, request_headers: bool) -> DecodedSpan:
    attrs = _Attrs(span)
    raw_type = attrs.string(ATTR_SPAN_TYPE, required=True)
    try:
        span_type = SpanType(raw_type)
    except ValueError:
        raise MalformedSpan(f"attribute {ATTR_SPAN_TYPE!r} is {raw_type[:80]!r}, expected one of "
                            f"{', '.join(repr(t.value) for t in SpanType)}") from None
    if expected is not None and span_type is not expected:
        raise MalformedSpan(f"span type {span_type.value!r} where {expected.value!r} was expected")
    request = CachedRequest(
        method=attrs.string(ATTR_METHOD, required=True),
        scheme=attrs.string(ATTR_SCHEME, required=True),
        authority=attrs.text(ATTR_AUTHORITY, required=True),
        path=attrs.text(ATTR_PATH, required=True),
        headers=attrs.headers(ATTR_REQUEST_HEADER_PREFIX) if request_headers else {},
        body=attrs.binary(ATTR_REQUEST_BODY),
        service_name=attrs.string(ATTR_SERVICE_NAME),
        direction=attrs.string(ATTR_DIRECTION),
        session_id=attrs.text(ATTR_SESSION_ID),
        key=attrs.hex64(ATTR_CACHE_KEY),
    )
    response = entry = retain = None
    keys: list[str] = []
    raw = b""
    if span_type is SpanType.EXTRACT:
        response = attrs.response()
        entry = attrs.entry()
        retain = attrs.integer(ATTR_RETAIN, 0, 2**63 - 1)
        raw = bytes((views if views is not None else _slices(data))[index])
    elif span_type is SpanType.INVALIDATE:
        keys = _invalidate_keys(attrs)
    return DecodedSpan(span_type, request, response, entry, retain, keys, raw)


def _invalidate_keys(attrs: _Attrs) -> list[str]:
    value = attrs.require(ATTR_INVALIDATE_KEYS, ("array_value",))
    items = value.array_value.values
    if len(items) > MAX_INVALIDATE_KEYS:
        raise MalformedSpan(f"attribute {ATTR_INVALIDATE_KEYS!r} holds {len(items)} keys, "
                            f"at most {MAX_INVALIDATE_KEYS} are accepted")
    keys = []
    for i, item in enumerate(items):
        if _kind(item) != "string_value" or not _HEX64.fullmatch(item.string_value):
            raise MalformedSpan(f"attribute {ATTR_INVALIDATE_KEYS!r} element {i} must be a string of "
                                "64 lower-case hex characters")
        keys.append(item.string_value)
    return keys


def decode_candidates(data: bytes) -> list[Candidate]:
    """Decode a 200 answer to ``/v1/inject`` into its candidates, in order.

    Raises:
        MalformedSpan: not a TracesData, no span, or a span without the attributes a candidate needs.
    """
    data = bytes(data)
    spans = _parse(data)
    if not spans:
        raise MalformedSpan("a lookup answer holds at least one span, found 0")
    raws = span_slices(data)
    out = []
    for span, raw in zip(spans, raws):
        attrs = _Attrs(span)
        out.append(Candidate(attrs.hex64(ATTR_CACHE_KEY), attrs.entry(), attrs.response(), bytes(raw)))
    return out


# --------------------------------------------------------------------------------------------
# encoding


def text_value(value: Text) -> AnyValue:
    """``string_value`` for text and for UTF-8 bytes, ``bytes_value`` for any other bytes
    (docs/protocol.md "Text and bytes")."""
    if isinstance(value, bytes):
        try:
            return AnyValue(string_value=value.decode())
        except UnicodeDecodeError:
            return AnyValue(bytes_value=value)
    return AnyValue(string_value=value)


def span_name(path: Text) -> str:
    """The span name for a path: the path itself, or, when it is not UTF-8, the path with every
    byte outside printable ASCII percent-encoded (docs/protocol.md "Span")."""
    if isinstance(path, str):
        return path
    try:
        return path.decode()
    except UnicodeDecodeError:
        return "".join(chr(b) if 0x21 <= b <= 0x7E else f"%{b:02X}" for b in path)


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _headers(prefix: str, headers: dict[str, list[Text]]) -> list[KeyValue]:
    return [_kv(prefix + name, AnyValue(array_value=ArrayValue(values=[text_value(v) for v in values])))
            for name, values in headers.items()]


def _request_attributes(span_type: SpanType, request: CachedRequest) -> list[KeyValue]:
    attrs = [
        _kv(ATTR_SPAN_TYPE, AnyValue(string_value=span_type.value)),
        _kv(ATTR_METHOD, AnyValue(string_value=request.method)),
        _kv(ATTR_SCHEME, AnyValue(string_value=request.scheme)),
        _kv(ATTR_PATH, text_value(request.path)),
        _kv(ATTR_AUTHORITY, text_value(request.authority)),
        *_headers(ATTR_REQUEST_HEADER_PREFIX, request.headers),
    ]
    if request.body:
        attrs.append(_kv(ATTR_REQUEST_BODY, AnyValue(bytes_value=request.body)))
    attrs += [
        _kv(ATTR_SERVICE_NAME, AnyValue(string_value=request.service_name)),
        _kv(ATTR_DIRECTION, AnyValue(string_value=request.direction)),
        _kv(ATTR_SESSION_ID, text_value(request.session_id)),
        _kv(ATTR_CACHE_KEY, AnyValue(string_value=request.key if request.key is not None else request.fingerprint())),
    ]
    return attrs


def _store_attributes(response: CachedResponse, entry: EntryMeta, retain_seconds: int) -> list[KeyValue]:
    attrs = [_kv(ATTR_STATUS, AnyValue(int_value=response.status)),
             *_headers(ATTR_RESPONSE_HEADER_PREFIX, response.headers)]
    if response.body:
        attrs.append(_kv(ATTR_RESPONSE_BODY, AnyValue(bytes_value=response.body)))
    return attrs + [
        _kv(ATTR_VARIANT, AnyValue(string_value=entry.variant)),
        _kv(ATTR_REQUEST_TIME, AnyValue(int_value=entry.request_time_ms)),
        _kv(ATTR_RESPONSE_TIME, AnyValue(int_value=entry.response_time_ms)),
        _kv(ATTR_RETAIN, AnyValue(int_value=retain_seconds)),
        _kv(ATTR_SIGNATURE, AnyValue(string_value=entry.signature)),
    ]


def resource_bytes(service_name: str) -> bytes:
    """A serialized Resource carrying ``service.name``."""
    return Resource(attributes=[_kv(RESOURCE_SERVICE_NAME, AnyValue(string_value=service_name))]).SerializeToString()


def scope_bytes() -> bytes:
    """The serialized InstrumentationScope of every span: name ``sp-istio-cache``, the version."""
    return InstrumentationScope(name=SCOPE_NAME, version=__version__).SerializeToString()


def encode_span(
    span_type: SpanType | str,
    request: CachedRequest,
    *,
    response: CachedResponse | None = None,
    entry: EntryMeta | None = None,
    retain_seconds: int | None = None,
    invalidate_keys: Sequence[str] = (),
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    start_time_unix_nano: int | None = None,
    end_time_unix_nano: int | None = None,
) -> bytes:
    """Build a lookup, store or invalidate body the way the filter does (docs/protocol.md).

    ``sp.cache.key`` is ``request.key``, or the recomputed fingerprint when that is None. A store
    needs ``response``, ``entry`` and ``retain_seconds``; an invalidate sends ``invalidate_keys``.
    Ids default to random (16 and 8 bytes), times to now.

    Raises:
        ValueError: an unknown span type, or a store without response/entry/retain_seconds.
    """
    span_type = SpanType(span_type)
    attrs = _request_attributes(span_type, request)
    if span_type is SpanType.EXTRACT:
        if response is None or entry is None or retain_seconds is None:
            raise ValueError("a store span needs response, entry and retain_seconds")
        attrs += _store_attributes(response, entry, retain_seconds)
    elif span_type is SpanType.INVALIDATE:
        keys = AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=k) for k in invalidate_keys]))
        attrs.append(_kv(ATTR_INVALIDATE_KEYS, keys))
    now = time.time_ns()
    span = Span(
        trace_id=trace_id if trace_id is not None else os.urandom(16),
        span_id=span_id if span_id is not None else os.urandom(8),
        name=span_name(request.path),
        kind=Span.SPAN_KIND_SERVER if request.direction == "inbound" else Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start_time_unix_nano if start_time_unix_nano is not None else now,
        end_time_unix_nano=end_time_unix_nano if end_time_unix_nano is not None else now,
        attributes=attrs,
    )
    return frame_spans(resource_bytes(request.service_name), scope_bytes(), [span.SerializeToString()])


def encode_candidates(spans: Sequence[bytes | memoryview], service_name: str = DEFAULT_SERVICE_NAME) -> bytes:
    """The body of a 200 answer to ``/v1/inject``: ``spans`` (serialized, as stored) framed
    verbatim into one TracesData."""
    return frame_spans(resource_bytes(service_name), scope_bytes(), spans)
