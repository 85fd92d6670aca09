"""What the filter tests share: plugin configs with the required keys, request builders, the spans
of callouts decoded with opentelemetry-proto, and end-of-test checks.

Spans are read straight from the protobuf (``TracesData``), not through the backend's code, so a
test sees exactly what left the proxy (docs/protocol.md, protocol version 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from sp_istio_cache.testhost import EnvoyModel, HttpCall, Stream

AUTHORITY = "svc.example:8080"
SIGNING_KEY = b"test-signing-key-0123456789abcdef"  # 33 bytes: the filter requires >= 32
BACKEND_KEY = "test-backend-key"
LOOKUP_PATH = "/v1/inject"
STORE_PATH = "/v1/traces"
STORE_BATCH_WAIT_MS = 5  # filter/src/root.zig batch_wait_ms: queued stores go out on the next tick
INVALIDATE_PATH = "/v1/invalidate"
GAUGES = ("sp_cache.buffered_body_bytes", "sp_cache.l1_bytes", "sp_cache.stores_queued")


def config(**overrides) -> dict:
    """A plugin configuration the filter accepts (signing and backend keys set) with ``overrides``."""
    return {"signing_key": SIGNING_KEY.decode(), "backend_key": BACKEND_KEY, **overrides}


def req(method: str = "GET", path: str = "/items?id=7", *extra: tuple[str, str]) -> list[tuple[str, str]]:
    """Request headers: pseudo-headers for ``AUTHORITY`` over http, then ``extra`` in order."""
    return [(":method", method), (":path", path), (":authority", AUTHORITY), (":scheme", "http"), *extra]


def filter_bug(request: pytest.FixtureRequest, what: str) -> None:
    """Mark the running test as failing because of a FILTER BUG (strict: it must fail until fixed,
    then the mark has to go)."""
    request.applymarker(pytest.mark.xfail(strict=True, reason=f"FILTER BUG: {what}"))


def http_date(model: EnvoyModel, offset_s: int = 0) -> str:
    """An IMF-fixdate ``offset_s`` seconds from the model's virtual clock (RFC 9110 §5.6.7)."""
    return formatdate(model.now_ns // 10**9 + offset_s, usegmt=True)


def now_ms(model: EnvoyModel) -> int:
    """The model's virtual wall clock in Unix ms (what the filter's clock reads)."""
    return model.now_ns // 1_000_000


# ------------------------------------------------------------------ callouts and their spans


def calls_to(model: EnvoyModel, path: str) -> list[HttpCall]:
    """Every callout to backend ``path``, in dispatch order."""
    return [c for c in model.calls if c.path == path]


def lookups(model: EnvoyModel) -> list[HttpCall]:
    return calls_to(model, LOOKUP_PATH)


def stores(model: EnvoyModel) -> list[HttpCall]:
    return calls_to(model, STORE_PATH)


def _value(v: AnyValue):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@dataclass
class SentSpan:
    """One span as a callout carried it.

    Attributes:
        span: the protobuf Span.
        attrs: attribute key -> Python value (str for string_value, bytes for bytes_value, int,
            list for array_value); a key repeated in the span raises in :func:`span_of`.
        service_name: the resource's ``service.name``.
    """

    span: Span
    attrs: dict
    service_name: str

    def headers(self, side: str) -> dict[str, list[bytes]]:
        """``http.<side>.header.*`` as name -> values as bytes (string values UTF-8 encoded)."""
        prefix = f"http.{side}.header."
        return {k[len(prefix):]: [x.encode() if isinstance(x, str) else x for x in v]
                for k, v in self.attrs.items() if k.startswith(prefix)}

    @property
    def key(self) -> str:
        return self.attrs["sp.cache.key"]


def span_of(call_or_body: HttpCall | bytes) -> SentSpan:
    """The single span of a callout body (or of a lookup answer with one span).

    Raises:
        AssertionError: not exactly one ResourceSpans/ScopeSpans/Span, or a repeated attribute.
    """
    spans = spans_of(call_or_body)
    assert len(spans) == 1, f"expected one span, got {len(spans)}"
    return spans[0]


def spans_of(call_or_body: HttpCall | bytes) -> list[SentSpan]:
    """Every span of a ``TracesData`` body: one ResourceSpans with one ScopeSpans, or (a batched
    store, docs/protocol.md) one ResourceSpans per store, each with one ScopeSpans."""
    body = call_or_body.body if isinstance(call_or_body, HttpCall) else call_or_body
    traces = TracesData.FromString(body)
    assert traces.resource_spans, "no ResourceSpans"
    out = []
    for rs in traces.resource_spans:
        (ss,) = rs.scope_spans
        service = {a.key: _value(a.value) for a in rs.resource.attributes}.get("service.name")
        for span in ss.spans:
            attrs: dict = {}
            for a in span.attributes:
                assert a.key not in attrs, f"attribute {a.key} repeated"
                attrs[a.key] = _value(a.value)
            out.append(SentSpan(span, attrs, service))
    return out


# ------------------------------------------------------------------ observations


def counters(model: EnvoyModel) -> dict[str, int]:
    """Non-zero counters (gauges left out)."""
    return {k: v for k, v in model.metrics.items() if v and k not in GAUGES}


def assert_healthy(model: EnvoyModel, *streams: Stream) -> None:
    """What every test ends with: no ABI violations, nothing buffered, no stream held or hung."""
    assert model.violations == []
    assert model.metric("sp_cache.buffered_body_bytes") == 0
    assert model.hung_streams == []
    for s in streams:
        assert not s.request_paused, f"stream {s.id} request still held"
        assert not s.response_paused, f"stream {s.id} response still held"
