"""Protocol bodies for backend tests, built with :mod:`sp_istio_cache.otlp` the way the filter sends them."""

from __future__ import annotations

import hashlib

from sp_istio_cache.otlp import CachedRequest, CachedResponse, EntryMeta, SpanType, encode_span

#: a backend key for tests (the backend wants 16..256 visible ASCII characters)
KEY = "test-backend-key-0123456789abcdef"
PROTOBUF = {"content-type": "application/x-protobuf"}
KEYED = {**PROTOBUF, "x-public-key": KEY}


def request(method: str = "GET", path: str | bytes = "/bytes/16", *, authority: str | bytes = "upstream:8080",
            headers=None, body: bytes = b"", key: str | None = None) -> CachedRequest:
    return CachedRequest(method=method, scheme="http", authority=authority, path=path, headers=headers or {},
                         body=body, service_name="svc", direction="outbound", session_id="", key=key)


RESPONSE = CachedResponse(200, {"content-type": ["application/octet-stream"], "x-multi": ["b", "a"],
                                "cache-control": ["max-age=60"]}, bytes(range(256)) * 4)


def entry(req: CachedRequest, response: CachedResponse, variant: str = "") -> EntryMeta:
    """Entry metadata with a well-formed signature. The backend checks only its form (64 hex):
    the filter verifies signatures (sp_istio_cache.entry is the reference)."""
    signature = hashlib.sha256(req.fingerprint().encode() + variant.encode() + response.body).hexdigest()
    return EntryMeta(variant, 1_700_000_000_000, 1_700_000_000_050, signature)


def store_body(req: CachedRequest, response: CachedResponse = RESPONSE, *, variant: str = "",
               retain: int = 60) -> bytes:
    return encode_span(SpanType.EXTRACT, req, response=response, entry=entry(req, response, variant),
                       retain_seconds=retain)


def lookup_body(req: CachedRequest) -> bytes:
    return encode_span(SpanType.INJECT, req)


def invalidate_body(req: CachedRequest, keys) -> bytes:
    return encode_span(SpanType.INVALIDATE, req, invalidate_keys=list(keys))
