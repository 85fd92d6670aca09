"""Raw protobuf framing of OTLP ``TracesData``, without decoding the spans.

The backend stores each span exactly as the filter sent it and answers a lookup with those bytes
(docs/protocol.md: "the spans exactly as stored"). Two operations make that possible without
re-encoding:

- :func:`span_slices` walks a serialized ``TracesData`` and returns the exact bytes of each span;
- :func:`frame_spans` wraps already-serialized spans into one ``TracesData`` (one ResourceSpans,
  one ScopeSpans), copying each span once.

Field numbers come from opentelemetry/proto/trace/v1/trace.proto: ``TracesData.resource_spans``
= 1, ``ResourceSpans.resource`` = 1 and ``.scope_spans`` = 2, ``ScopeSpans.scope`` = 1 and
``.spans`` = 2. Wire types from https://protobuf.dev/programming-guides/encoding/.
"""

from __future__ import annotations

from collections.abc import Sequence

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class WireError(ValueError):
    """The bytes are not well-formed protobuf at the level walked; the message says where."""


def _varint(data: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError(f"truncated varint at byte {pos}")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError(f"varint longer than 10 bytes at byte {pos}")


def _fields(data: memoryview, start: int, end: int):
    """Yield ``(field_number, wire_type, value_start, value_end)`` for every field in data[start:end]."""
    pos = start
    while pos < end:
        tag, pos = _varint(data, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {pos}")
        if wire_type == _VARINT:
            _, value_end = _varint(data, pos, end)
        elif wire_type == _I64:
            value_end = pos + 8
        elif wire_type == _I32:
            value_end = pos + 4
        elif wire_type == _LEN:
            length, pos = _varint(data, pos, end)
            value_end = pos + length
        else:
            raise WireError(f"unsupported wire type {wire_type} (field {number}) at byte {pos}")
        if value_end > end:
            raise WireError(f"field {number} runs past the end of its message (byte {value_end} > {end})")
        yield number, wire_type, pos, value_end
        pos = value_end


def span_slices(data: bytes | memoryview) -> list[memoryview]:
    """The exact bytes of every span in a serialized ``TracesData``, in order.

    Raises:
        WireError: truncated or malformed framing at the TracesData, ResourceSpans or
            ScopeSpans level (the spans themselves are not decoded).
    """
    view = memoryview(data)
    spans: list[memoryview] = []
    for number, wire_type, rs_start, rs_end in _fields(view, 0, len(view)):
        if number != 1 or wire_type != _LEN:
            continue
        for number2, wire_type2, ss_start, ss_end in _fields(view, rs_start, rs_end):
            if number2 != 2 or wire_type2 != _LEN:
                continue
            for number3, wire_type3, start, end in _fields(view, ss_start, ss_end):
                if number3 == 2 and wire_type3 == _LEN:
                    spans.append(view[start:end])
    return spans


def _header(field_number: int, length: int) -> bytes:
    out = bytearray([(field_number << 3) | _LEN])
    while length >= 0x80:
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    out.append(length)
    return bytes(out)


def frame_spans(resource: bytes, scope: bytes, spans: Sequence[bytes | memoryview]) -> bytes:
    """One serialized ``TracesData`` holding ``spans`` (serialized Span messages) under one
    ResourceSpans (``resource``: a serialized Resource) and one ScopeSpans (``scope``: a
    serialized InstrumentationScope). Each span is copied once, never decoded."""
    parts: list[bytes | memoryview] = [b"", _header(1, len(resource)), resource, b"", _header(1, len(scope)), scope]
    spans_length = 0
    for span in spans:
        header = _header(2, len(span))
        parts += (header, span)
        spans_length += len(header) + len(span)
    scope_spans_length = len(parts[4]) + len(scope) + spans_length
    parts[3] = _header(2, scope_spans_length)
    resource_spans_length = len(parts[1]) + len(resource) + len(parts[3]) + scope_spans_length
    parts[0] = _header(1, resource_spans_length)
    return b"".join(parts)
