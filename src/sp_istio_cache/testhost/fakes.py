"""The cache backend's stand-in for unit tests: reads the filter's spans with the real protocol code
(:mod:`sp_istio_cache.otlp`) and answers callouts through the test host.

Nothing here is a backend: it is a keyed dict, enough to play miss -> store -> hit in a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sp_istio_cache.otlp import CachedResponse, DecodedSpan, decode_span, encode_hit

from .host import HttpCall, ProxyWasmHost

LOOKUP_PATH = "/v1/inject"
STORE_PATH = "/v1/traces"


def fake_decode(call: HttpCall) -> DecodedSpan:
    """The span a lookup or store callout carries (raises MalformedSpan when the filter sent garbage)."""
    return decode_span(call.body)


def fake_answer_hit(host: ProxyWasmHost, call: HttpCall, status: int = 200,
                    headers: dict[str, list[str]] | None = None, body: bytes = b"", age: int = 0) -> None:
    """Answer a lookup with a cached response (200 + TracesData)."""
    hit = encode_hit(CachedResponse(status=status, headers=dict(headers or {}), body=body), age)
    host.respond_http_call(call, [(":status", "200"), ("content-type", "application/x-protobuf")], hit)


def fake_answer_miss(host: ProxyWasmHost, call: HttpCall) -> None:
    host.respond_http_call(call, 404)


@dataclass
class FakeBackend:
    """Answers pending callouts from a dict keyed by ``sp.cache.key``.

    Attributes:
        entries: key -> (response, ttl_seconds) of every store received.
        stores: decoded store spans, in order.
        lookups: decoded lookup spans, in order.
    """

    host: ProxyWasmHost
    entries: dict[str, tuple[CachedResponse, int | None]] = field(default_factory=dict)
    stores: list[DecodedSpan] = field(default_factory=list)
    lookups: list[DecodedSpan] = field(default_factory=list)
    store_status: int = 200

    def serve(self) -> int:
        """Answer every pending callout (lookups: hit or 404; stores: ``store_status``); returns how many."""
        n = 0
        while self.host.pending_calls:
            call = self.host.pending_calls[0]
            span = fake_decode(call)
            if call.path == LOOKUP_PATH:
                self.lookups.append(span)
                entry = self.entries.get(span.request.key)
                if entry is None:
                    fake_answer_miss(self.host, call)
                else:
                    r = entry[0]
                    fake_answer_hit(self.host, call, r.status, r.headers, r.body)
            elif call.path == STORE_PATH:
                self.stores.append(span)
                self.entries[span.request.key] = (span.response, span.ttl_seconds)
                self.host.respond_http_call(call, self.store_status)
            else:
                raise AssertionError(f"callout to unexpected path {call.path!r}")
            n += 1
        return n
