"""Reference implementation of the filter's cache entries (``docs/protocol.md``, version 2).

The Zig filter (``filter/src/entry.zig``, ``variant_hash.zig``, ``protocol.zig``) and this module are
both checked against ``filter/testdata/protocol_golden.json``. This module gives:

- :func:`variant_hash`, :func:`entry_signature` and :func:`replay_violation`: the variant hash,
  the entry signature (keyed BLAKE2b-256) and the replay checks, exactly as the filter computes them;
- :class:`Request`, :class:`Entry`, :class:`Envelope`, :func:`signed_entry`, :func:`encode_span`,
  :func:`traces_data`: spans built the way the filter builds them (protobuf via
  opentelemetry-proto), so that tests and fuzzers can plant signed entries in a real backend.

Every value that comes from the wire (header values, path, authority, session id) may be any
bytes; a ``str`` is taken as its UTF-8 bytes. On the wire such a value is a ``string_value`` when
it is valid UTF-8 and a ``bytes_value`` otherwise.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from sp_istio_cache import __version__
from sp_istio_cache import attributes as attr
from sp_istio_cache.fingerprint import field as _field
from sp_istio_cache.fingerprint import request_fingerprint, u64be, wire_bytes

ENTRY_TAG = b"sp-istio-cache/entry/1"
VARY_TAG = b"sp-istio-cache/vary/1"
MAX_VARIANTS = 64  # spans per lookup answer (plugin config max_variants <= 64)
MAX_HEADER_VALUES = 2048  # response header values per candidate

Headers = Sequence[tuple[str, str | bytes]]

# RFC 9110 §7.6.1 hop-by-hop fields and the others a cache never replays (filter/src/headers.zig)
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
     "trailer", "proxy-authenticate", "proxy-authorization"}
)
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _lower(name: str | bytes) -> bytes:
    """ASCII-only lower case, as the filter's std.ascii.lowerString."""
    return wire_bytes(name).lower()


# -------------------------------------------------------------------------------- variant hash


def vary_names(response_headers: Headers) -> list[str]:
    """The header names a response's ``Vary`` nominates: lower-cased, de-duplicated, sorted.

    Raises:
        ValueError: the response has ``Vary: *`` (such a response is never stored, RFC 9111 §4.1).
    """
    names: set[str] = set()
    for name, value in response_headers:
        if name.lower() != "vary":
            continue
        for item in wire_bytes(value).decode("latin-1").split(","):
            item = item.strip(" \t").lower()
            if item == "*":
                raise ValueError("Vary: * never matches a later request and is never stored")
            if item:
                names.add(item)
    return sorted(names)


_CASE_INSENSITIVE_VALUES = {"accept-encoding", "accept-language", "accept-charset"}


def _fold_case(member: bytes) -> bytes:
    """ASCII letters lower-cased outside quoted strings (filter/src/http/vary.zig ``emit``)."""
    out = bytearray()
    quoted = False
    for c in member:
        if c == 0x22:
            quoted = not quoted
        out.append(c if quoted or not 0x41 <= c <= 0x5A else c + 0x20)
    return bytes(out)


def _normalised_value(lines: list[bytes], fold: bool) -> bytes:
    """The field lines of one header as a variant hash sees them (RFC 9111 §4.1 normalisation):
    every comma-separated member (a comma inside a quoted string, with backslash escapes, does
    not split), trimmed of SP/HTAB, joined by ``,``; case folded for case-insensitive fields."""
    out: list[bytes] = []
    for line in lines:
        rest = line
        while True:
            i, quoted = 0, False
            while i < len(rest):
                c = rest[i]
                if quoted and c == 0x5C:
                    i += 1
                elif c == 0x22:
                    quoted = not quoted
                elif c == 0x2C and not quoted:
                    break
                i += 1
            end = min(i, len(rest))
            member = rest[:end].strip(b" \t")
            out.append(_fold_case(member) if fold else member)
            if end == len(rest):
                break
            rest = rest[end + 1:]
    return b",".join(out)


def variant_hash(vary: Iterable[str], request_headers: Headers) -> str:
    """``sp.cache.variant`` of a request for a response whose Vary lists ``vary``.

    Follows docs/protocol.md "Variant hash" and filter/src/http/vary.zig: BLAKE2b-256 over
    ``field(tag)`` and, per name (lower-cased, de-duplicated, sorted), ``field(name)`` then ``0``
    when the request lacks the header or ``1`` + ``field(normalised value)``. Returns 64 lower-case
    hex characters, or ``""`` when ``vary`` is empty (a response without Vary).

    Raises:
        ValueError: ``*`` among the names.
    """
    names = sorted({n.lower() for n in vary})
    if "*" in names:
        raise ValueError("Vary: * has no variant hash")
    if not names:
        return ""
    h = hashlib.blake2b(digest_size=32)
    _field(h, VARY_TAG)
    for name in names:
        _field(h, name.encode())
        lines = [wire_bytes(v) for n, v in request_headers if n.lower() == name]
        if not lines:
            h.update(b"\x00")
            continue
        h.update(b"\x01")
        _field(h, _normalised_value(lines, name in _CASE_INSENSITIVE_VALUES))
    return h.hexdigest()


# ---------------------------------------------------------------------------- entry signature


def group_headers(headers: Headers) -> list[tuple[str, bytes]]:
    """Headers as a span carries them: every value of one name (ASCII case-insensitive) adjacent,
    in order, names in order of first occurrence (filter/src/entry.zig ``groupHeaders``)."""
    groups: dict[bytes, list[tuple[str, bytes]]] = {}
    for name, value in headers:
        groups.setdefault(_lower(name), []).append((name, wire_bytes(value)))
    return [pair for group in groups.values() for pair in group]


def entry_signature(
    key: str,
    signing_key: bytes,
    variant: str,
    status: int,
    request_time_ms: int,
    response_time_ms: int,
    headers: Headers,
    body: bytes,
) -> str:
    """Keyed BLAKE2b-256 of an entry (docs/protocol.md "Entry signature"), 64 lower-case hex. The
    MAC key is BLAKE2b-256 of ``signing_key`` (keyed BLAKE2b takes at most 64 key bytes).

    ``headers`` are (name, value) in the order of the span's attributes and of each array (see
    :func:`group_headers`); names are signed lower-cased (ASCII). Integers must fit in 64 bits.

    Raises:
        OverflowError: a negative or over-64-bit status or time.
    """
    h = hashlib.blake2b(key=hashlib.blake2b(bytes(signing_key), digest_size=32).digest(), digest_size=32)
    _field(h, ENTRY_TAG)
    _field(h, wire_bytes(key))
    _field(h, wire_bytes(variant))
    for n in (status, request_time_ms, response_time_ms, len(headers)):
        u64be(h, n)
    for name, value in headers:
        _field(h, _lower(name))
        _field(h, wire_bytes(value))
    _field(h, bytes(body))
    return h.hexdigest()


#: most header values a replayed entry may carry (filter/src/entry.zig ``max_replay_headers``)
MAX_REPLAY_HEADERS = 512


def replay_violation(status: int, headers: Headers, body: bytes) -> str | None:
    """The first reason a stored response must not be replayed, or None (docs/security.md).

    Names and order are those of the filter's ``entry.Violation``: ``bad_status`` (outside
    200..599), then per header ``empty_header_name``, ``pseudo_header``, ``bad_header_name`` (not
    an RFC 9110 token), ``bad_header_value`` (CR, LF or NUL), ``hop_by_hop``,
    ``content_length_mismatch`` (not exactly the body length in decimal digits); ``too_many_headers``
    (more than :data:`MAX_REPLAY_HEADERS` values) right after the status.
    """
    if not 200 <= status <= 599:
        return "bad_status"
    if len(headers) > MAX_REPLAY_HEADERS:
        return "too_many_headers"
    for name, value in headers:
        raw_name, raw_value = wire_bytes(name), wire_bytes(value)
        if not raw_name:
            return "empty_header_name"
        if raw_name.startswith(b":"):
            return "pseudo_header"
        if not _TOKEN.fullmatch(raw_name):
            return "bad_header_name"
        if any(c in raw_value for c in b"\r\n\x00"):
            return "bad_header_value"
        if raw_name.lower().decode() in HOP_BY_HOP:
            return "hop_by_hop"
        if raw_name.lower() == b"content-length" and not (
            raw_value.isdigit() and int(raw_value) == len(body)
        ):
            return "content_length_mismatch"
    return None


# ------------------------------------------------------------------------------ spans


@dataclass(frozen=True)
class Request:
    """The request half of every span, as the filter forwarded it.

    ``headers`` are the headers the filter sends (already without pseudo, hop-by-hop,
    ``x-envoy-*`` and redacted ones), in wire order; they are grouped when encoded.
    """

    method: str
    scheme: str
    authority: str | bytes
    path: str | bytes
    headers: Headers = ()
    body: bytes = b""
    direction: str = "outbound"
    session_id: str | bytes = ""

    @property
    def key(self) -> str:
        """The primary cache key (docs/protocol.md "Request fingerprint")."""
        return request_fingerprint(self.method, self.scheme, self.authority, self.path, self.body)


@dataclass(frozen=True)
class Entry:
    """A stored response with its signed metadata; ``headers`` in span order (grouped)."""

    key: str
    variant: str
    status: int
    request_time_ms: int
    response_time_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()
    body: bytes = b""
    signature: str = ""

    def expected_signature(self, signing_key: bytes) -> str:
        """:func:`entry_signature` of this entry under ``signing_key``."""
        return entry_signature(self.key, signing_key, self.variant, self.status,
                               self.request_time_ms, self.response_time_ms, self.headers, self.body)

    def signed(self, signing_key: bytes) -> Entry:
        """A copy carrying its signature under ``signing_key``."""
        return replace(self, signature=self.expected_signature(signing_key))


def signed_entry(
    request: Request,
    status: int,
    headers: Headers,
    body: bytes,
    signing_key: bytes,
    *,
    request_time_ms: int,
    response_time_ms: int,
) -> Entry:
    """The entry the filter stores for ``request``'s response: key from the request, variant from
    the response's Vary and the request's headers, headers grouped, signed with ``signing_key``.

    Raises:
        ValueError: the response has ``Vary: *``.
    """
    entry = Entry(
        key=request.key,
        variant=variant_hash(vary_names(headers), request.headers),
        status=status,
        request_time_ms=request_time_ms,
        response_time_ms=response_time_ms,
        headers=tuple(group_headers(headers)),
        body=bytes(body),
    )
    return entry.signed(signing_key)


@dataclass(frozen=True)
class Envelope:
    """Resource, scope, ids and times of a span (random ids and the current time by default)."""

    service_name: str = "sp-istio-cache"
    scope_version: str = __version__
    trace_id: bytes = field(default_factory=lambda: os.urandom(16))
    span_id: bytes = field(default_factory=lambda: os.urandom(8))
    parent_span_id: bytes = b""
    kind: Span.SpanKind.ValueType = Span.SPAN_KIND_CLIENT  # OTLP SpanKind
    start_time_unix_nano: int = field(default_factory=time.time_ns)
    end_time_unix_nano: int = field(default_factory=time.time_ns)


def wire_value(value: str | bytes) -> AnyValue:
    """AnyValue of a wire value: ``string_value`` when its bytes are UTF-8, else ``bytes_value``."""
    raw = wire_bytes(value)
    try:
        return AnyValue(string_value=raw.decode("utf-8"))
    except UnicodeDecodeError:
        return AnyValue(bytes_value=raw)


def span_name(path: str | bytes) -> str:
    """The span name: the path, percent-encoding every byte outside printable ASCII when the path
    is not UTF-8 (docs/protocol.md "Span")."""
    raw = wire_bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(chr(b) if 0x20 <= b <= 0x7E else f"%{b:02X}" for b in raw)


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _header_attributes(prefix: str, headers: Headers) -> list[KeyValue]:
    runs: dict[bytes, list[AnyValue]] = {}
    for name, value in group_headers(headers):
        runs.setdefault(_lower(name), []).append(wire_value(value))
    return [_kv(prefix + name.decode(), AnyValue(array_value=ArrayValue(values=values)))
            for name, values in runs.items()]


def encode_span(
    envelope: Envelope,
    request: Request,
    *,
    entry: Entry | None = None,
    retain_seconds: int = 0,
    invalidate_keys: Sequence[str] | None = None,
) -> Span:
    """One span as the filter writes it: a lookup (``inject``) by default, a store (``extract``)
    with ``entry``, an invalidate with ``invalidate_keys``. Attribute order is the filter's.

    Raises:
        ValueError: both ``entry`` and ``invalidate_keys``; an entry whose key is not the
            request's, or that is unsigned.
    """
    if entry is not None and invalidate_keys is not None:
        raise ValueError("a span is a store or an invalidate, not both")
    span_type = "extract" if entry is not None else "invalidate" if invalidate_keys is not None else "inject"
    attrs = [
        _kv(attr.ATTR_SPAN_TYPE, AnyValue(string_value=span_type)),
        _kv(attr.ATTR_METHOD, wire_value(request.method)),
        _kv(attr.ATTR_SCHEME, wire_value(request.scheme)),
        _kv(attr.ATTR_PATH, wire_value(request.path)),
        _kv(attr.ATTR_AUTHORITY, wire_value(request.authority)),
        *_header_attributes(attr.ATTR_REQUEST_HEADER_PREFIX, request.headers),
    ]
    if request.body:
        attrs.append(_kv(attr.ATTR_REQUEST_BODY, AnyValue(bytes_value=request.body)))
    attrs += [
        _kv(attr.ATTR_SERVICE_NAME, wire_value(envelope.service_name)),
        _kv(attr.ATTR_DIRECTION, wire_value(request.direction)),
        _kv(attr.ATTR_SESSION_ID, wire_value(request.session_id)),
        _kv(attr.ATTR_CACHE_KEY, wire_value(request.key)),
    ]
    if entry is not None:
        if entry.key != request.key:
            raise ValueError(f"entry key {entry.key} is not the request's key {request.key}")
        if len(entry.signature) != 64:
            raise ValueError("the entry is not signed (Entry.signed)")
        attrs.append(_kv(attr.ATTR_STATUS, AnyValue(int_value=entry.status)))
        attrs += _header_attributes(attr.ATTR_RESPONSE_HEADER_PREFIX, entry.headers)
        if entry.body:
            attrs.append(_kv(attr.ATTR_RESPONSE_BODY, AnyValue(bytes_value=entry.body)))
        attrs += [
            _kv(attr.ATTR_VARIANT, wire_value(entry.variant)),
            _kv(attr.ATTR_REQUEST_TIME, AnyValue(int_value=entry.request_time_ms)),
            _kv(attr.ATTR_RESPONSE_TIME, AnyValue(int_value=entry.response_time_ms)),
            _kv(attr.ATTR_RETAIN, AnyValue(int_value=retain_seconds)),
            _kv(attr.ATTR_SIGNATURE, wire_value(entry.signature)),
        ]
    if invalidate_keys is not None:
        keys = ArrayValue(values=[AnyValue(string_value=k) for k in invalidate_keys])
        attrs.append(_kv(attr.ATTR_INVALIDATE_KEYS, AnyValue(array_value=keys)))
    return Span(
        trace_id=envelope.trace_id,
        span_id=envelope.span_id,
        parent_span_id=envelope.parent_span_id,
        name=span_name(request.path),
        kind=envelope.kind,
        start_time_unix_nano=envelope.start_time_unix_nano,
        end_time_unix_nano=envelope.end_time_unix_nano,
        attributes=attrs,
    )


def traces_data(spans: Sequence[Span], envelope: Envelope) -> bytes:
    """``TracesData`` bytes: one ResourceSpans (``service.name`` from ``envelope``) → one
    ScopeSpans (scope ``sp-istio-cache`` at ``envelope.scope_version``) → ``spans`` in order.
    A call body holds one span; a lookup answer holds 1..64 (every stored variant)."""
    traces = TracesData()
    resource_spans = traces.resource_spans.add()
    resource_spans.resource.attributes.append(_kv(attr.RESOURCE_SERVICE_NAME, wire_value(envelope.service_name)))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = attr.SCOPE_NAME
    scope_spans.scope.version = envelope.scope_version
    scope_spans.spans.extend(spans)
    return traces.SerializeToString()


def store_body(envelope: Envelope, request: Request, entry: Entry, retain_seconds: int) -> bytes:
    """The body of a store call (``POST /v1/traces``) planting ``entry`` for ``request``."""
    return traces_data([encode_span(envelope, request, entry=entry, retain_seconds=retain_seconds)], envelope)
