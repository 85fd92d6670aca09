"""proxy-wasm ABI 0.2.1 constants and the header-map wire format, as the host side sees them.

Values follow the ABI spec (proxy-wasm/spec, abi-versions/v0.2.1) and Envoy's
``source/extensions/common/wasm`` implementation.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from enum import IntEnum

Pairs = list[tuple[str, str]]


class WasmResult(IntEnum):
    """Status every host function returns."""

    OK = 0
    NOT_FOUND = 1
    BAD_ARGUMENT = 2
    SERIALIZATION_FAILURE = 3
    PARSE_FAILURE = 4
    BAD_EXPRESSION = 5
    INVALID_MEMORY_ACCESS = 6
    EMPTY = 7
    CAS_MISMATCH = 8
    RESULT_MISMATCH = 9
    INTERNAL_FAILURE = 10
    BROKEN_CONNECTION = 11
    UNIMPLEMENTED = 12


class BufferType(IntEnum):
    """``proxy_get_buffer_bytes`` buffer types."""

    HTTP_REQUEST_BODY = 0
    HTTP_RESPONSE_BODY = 1
    DOWNSTREAM_DATA = 2
    UPSTREAM_DATA = 3
    HTTP_CALL_RESPONSE_BODY = 4
    GRPC_RECEIVE_BUFFER = 5
    VM_CONFIGURATION = 6
    PLUGIN_CONFIGURATION = 7
    CALL_DATA = 8


class MapType(IntEnum):
    """``proxy_get_header_map_*`` map types."""

    HTTP_REQUEST_HEADERS = 0
    HTTP_REQUEST_TRAILERS = 1
    HTTP_RESPONSE_HEADERS = 2
    HTTP_RESPONSE_TRAILERS = 3
    GRPC_RECEIVE_INITIAL_METADATA = 4
    GRPC_RECEIVE_TRAILING_METADATA = 5
    HTTP_CALL_RESPONSE_HEADERS = 6
    HTTP_CALL_RESPONSE_TRAILERS = 7


class StreamType(IntEnum):
    """``proxy_continue_stream`` / ``proxy_close_stream`` targets."""

    REQUEST = 0
    RESPONSE = 1
    DOWNSTREAM = 2
    UPSTREAM = 3


class MetricType(IntEnum):
    """``proxy_define_metric`` types; Envoy keeps the type in the low 2 bits of a metric id."""

    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2


class LogLevel(IntEnum):
    """``proxy_log`` levels (spdlog's order)."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    CRITICAL = 5


class Action(IntEnum):
    """Short names for what header/body callbacks most often return (compare with ``==``).

    ``PAUSE`` is StopIteration for headers and StopIterationAndBuffer for bodies;
    ``PAUSE_WATERMARK`` is StopIterationAndWatermark (bodies only: past the buffer limit Envoy
    pushes back on the sender instead of answering 413).
    """

    CONTINUE = 0
    PAUSE = 1
    PAUSE_WATERMARK = 2


class HeadersStatus(IntEnum):
    """proxy-wasm FilterHeadersStatus (proxy-wasm-cpp-host ``context_interface.h``)."""

    CONTINUE = 0
    STOP_ITERATION = 1
    CONTINUE_AND_END_STREAM = 2
    STOP_ALL_ITERATION_AND_BUFFER = 3
    STOP_ALL_ITERATION_AND_WATERMARK = 4


class DataStatus(IntEnum):
    """proxy-wasm FilterDataStatus."""

    CONTINUE = 0
    STOP_ITERATION_AND_BUFFER = 1
    STOP_ITERATION_AND_WATERMARK = 2
    STOP_ITERATION_NO_BUFFER = 3


class TrailersStatus(IntEnum):
    """proxy-wasm FilterTrailersStatus."""

    CONTINUE = 0
    STOP_ITERATION = 1


class WasiErrno(IntEnum):
    """The WASI errno values Envoy's WASI functions return (wasi-libc ``api.h``)."""

    SUCCESS = 0
    BADF = 8
    FAULT = 21
    INVAL = 28
    NOENT = 44
    NOSYS = 52
    NOTSUP = 58


def encode_pairs(pairs: Iterable[tuple[str | bytes, str | bytes]]) -> bytes:
    """Serialize a header map: u32 count, then (u32 key_len, u32 value_len) per pair, then each
    key and value followed by a NUL byte (lengths exclude the NUL). Little-endian."""
    items = [(_b(k), _b(v)) for k, v in pairs]
    out = bytearray(struct.pack("<I", len(items)))
    for k, v in items:
        out += struct.pack("<II", len(k), len(v))
    for k, v in items:
        out += k + b"\0" + v + b"\0"
    return bytes(out)


def decode_pairs(data: bytes) -> list[tuple[bytes, bytes]]:
    """Parse a serialized header map; raises ValueError on any inconsistency (as Envoy refuses it)."""
    data = bytes(data)
    if len(data) == 0:
        return []
    if len(data) < 4:
        raise ValueError(f"header map of {len(data)} bytes has no count")
    (n,) = struct.unpack_from("<I", data, 0)
    sizes_end = 4 + 8 * n
    if sizes_end > len(data):
        raise ValueError(f"header map declares {n} pairs but has only {len(data)} bytes")
    sizes = [struct.unpack_from("<II", data, 4 + 8 * i) for i in range(n)]
    pos = sizes_end
    out = []
    for klen, vlen in sizes:
        if pos + klen + 1 + vlen + 1 > len(data):
            raise ValueError("header map is truncated")
        k = data[pos:pos + klen]
        if data[pos + klen] != 0:
            raise ValueError("header map key is not NUL-terminated")
        pos += klen + 1
        v = data[pos:pos + vlen]
        if data[pos + vlen] != 0:
            raise ValueError("header map value is not NUL-terminated")
        pos += vlen + 1
        out.append((k, v))
    if pos != len(data):
        raise ValueError(f"header map has {len(data) - pos} trailing bytes")
    return out


#: proxy-wasm-cpp-host limits on a serialized map it reads from the guest (``limits.h``)
PAIRS_MAX_BYTES = 1024 * 1024
PAIRS_MAX_COUNT = 1024


def envoy_pairs(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """Read a guest's serialized map as proxy-wasm-cpp-host's ``PairsUtil::toPairs`` does.

    Returns the pairs, or None where Envoy silently uses an EMPTY map instead: malformed bytes,
    more than :data:`PAIRS_MAX_BYTES` bytes or :data:`PAIRS_MAX_COUNT` pairs. Callers record a
    violation for None (the guest sent something Envoy drops without telling it).
    """
    if not data:
        return []
    if len(data) > PAIRS_MAX_BYTES:
        return None
    if len(data) >= 4 and struct.unpack_from("<I", data, 0)[0] > PAIRS_MAX_COUNT:
        return None
    try:
        return decode_pairs(data)
    except ValueError:
        return None


def _b(s: str | bytes) -> bytes:
    # header map values are str holding raw bytes through surrogateescape (headermap.text)
    return s if isinstance(s, bytes) else s.encode("utf-8", "surrogateescape")


def as_str_pairs(pairs: Sequence[tuple[bytes, bytes]]) -> Pairs:
    """Bytes pairs -> str pairs (UTF-8 with surrogateescape so no byte is lost)."""
    return [(k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")) for k, v in pairs]
