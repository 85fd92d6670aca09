"""Request fingerprint: the primary cache key the filter and the backend both compute.

The layout is specified in ``docs/protocol.md`` ("Request fingerprint", protocol version 2); the
Zig implementation is ``filter/src/fingerprint.zig``. Both are checked against
``filter/testdata/fingerprint_vectors.json``. The length-prefixed ``field`` encoding defined here is
shared with the variant hash and the entry signature (:mod:`sp_istio_cache.entry`).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

VERSION_TAG = b"sp-istio-cache/2"


class _Updatable(Protocol):
    def update(self, data: bytes, /) -> None: ...


def wire_bytes(value: str | bytes, what: str = "value") -> bytes:
    """The bytes of a value taken from the wire: ``bytes`` as they are, ``str`` as UTF-8.

    Raises:
        TypeError: ``value`` is neither (the message names ``what``).
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"{what} must be str or bytes, got {type(value).__name__}")


def u64be(h: _Updatable, n: int) -> None:
    """Feed ``n`` (0 <= n < 2**64) into ``h`` as 8 bytes big-endian.

    Raises:
        OverflowError: ``n`` is negative or does not fit in 64 bits.
    """
    h.update(n.to_bytes(8, "big"))


def field(h: _Updatable, data: bytes) -> None:
    """Feed ``field(data)`` of docs/protocol.md into ``h``: 8-byte big-endian length, then bytes."""
    u64be(h, len(data))
    h.update(data)


def cache_method(method: str) -> str:
    """Method under which a request is keyed: HEAD reads the GET entry (RFC 9110 §9.3.2)."""
    return "GET" if method == "HEAD" else method


def request_fingerprint(
    method: str,
    scheme: str,
    authority: str | bytes,
    path: str | bytes,
    body: bytes = b"",
) -> str:
    """Return the 64-hex-character BLAKE2b-256 primary cache key of a request.

    Args:
        method: request method as sent; HEAD is keyed as GET.
        scheme: ``:scheme`` (``http`` when absent); lower-cased here (ASCII letters only).
        authority: ``:authority`` as sent (``str`` is taken as UTF-8); lower-cased here, ASCII
            letters only, other bytes unchanged.
        path: path + query exactly as sent, any bytes (``str`` is taken as UTF-8).
        body: exact request body bytes (empty for bodiless requests).

    Raises:
        TypeError: an argument of another type (the message names it), such as the mapping of
            headers that protocol version 1 took in fourth place.
    """
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"body must be bytes, got {type(body).__name__}")
    h = hashlib.blake2b(digest_size=32)
    field(h, VERSION_TAG)
    field(h, wire_bytes(cache_method(method), "method"))
    # bytes.lower() changes ASCII letters only, exactly as the filter's std.ascii.lowerString
    field(h, wire_bytes(scheme, "scheme").lower())
    field(h, wire_bytes(authority, "authority").lower())
    field(h, wire_bytes(path, "path"))
    field(h, bytes(body))
    return h.hexdigest()
