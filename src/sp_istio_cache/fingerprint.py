"""Request fingerprint: the cache key the filter and the backend both compute.

The layout is specified in ``docs/protocol.md`` ("Request fingerprint"); the Zig implementation is
``filter/src/fingerprint.zig``. Both are checked against ``filter/testdata/fingerprint_vectors.json``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

VERSION_TAG = b"sp-istio-cache/1"


def _field(h: "hashlib._Hash", data: bytes) -> None:
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)


def cache_method(method: str) -> str:
    """Method under which a request is keyed: HEAD reads the GET entry (RFC 9110 §9.3.2)."""
    return "GET" if method == "HEAD" else method


def request_fingerprint(
    method: str,
    authority: str,
    path: str,
    headers: Mapping[str, Sequence[str]],
    vary: Iterable[str],
    body: bytes = b"",
) -> str:
    """Return the 64-hex-character SHA-256 fingerprint of a request.

    Args:
        method: request method as sent; HEAD is keyed as GET.
        authority: ``:authority`` as sent; lower-cased here.
        path: path + query exactly as sent.
        headers: lower-case header name -> every value in order.
        vary: names of the headers that take part in the key (any case; de-duplicated, sorted).
        body: exact request body bytes (empty for bodiless requests).
    """
    h = hashlib.sha256()
    _field(h, VERSION_TAG)
    _field(h, cache_method(method).encode())
    _field(h, authority.lower().encode())
    _field(h, path.encode())
    for name in sorted({v.lower() for v in vary}):
        values = headers.get(name, ())
        _field(h, name.encode())
        h.update(len(values).to_bytes(8, "big"))
        for value in values:
            _field(h, value.encode())
    _field(h, body)
    return h.hexdigest()
