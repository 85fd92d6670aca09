"""Lookup answers made by hand with the Python reference (:mod:`sp_istio_cache.entry`): signed
entries as the filter would store them, and unsigned, forged or hostile ones, for the tests that
play a backend an attacker controls."""

from __future__ import annotations

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from sp_istio_cache.entry import Entry, Envelope, Request, encode_span, signed_entry, traces_data
from sp_istio_cache.testhost import EnvoyModel, HttpCall

from ._support import AUTHORITY, SIGNING_KEY, now_ms

WRONG_KEY = b"not-the-filters-signing-key-0123456789"


def request_for(path: str = "/r", method: str = "GET", headers=()) -> Request:
    """The request half of a span for a request the tests send (``_support.req``)."""
    return Request(method, "http", AUTHORITY, path, tuple(headers))


def entry_for(model: EnvoyModel, request: Request, status: int = 200, headers=(("cache-control", "max-age=60"),),
              body: bytes = b"planted", *, key: bytes = SIGNING_KEY, age_ms: int = 0) -> Entry:
    """An entry for ``request`` received ``age_ms`` ago on the model's clock, signed with ``key``."""
    t = now_ms(model) - age_ms
    return signed_entry(request, status, list(headers), body, key, request_time_ms=t, response_time_ms=t)


def candidate(request: Request, entry: Entry) -> Span:
    """A stored span as a backend hands it back."""
    return encode_span(Envelope(), request, entry=entry, retain_seconds=60)


def without(span: Span, key: str) -> Span:
    """``span`` with attribute ``key`` removed (an unsigned entry: drop ``sp.cache.signature``)."""
    kept = [a for a in span.attributes if a.key != key]
    del span.attributes[:]
    span.attributes.extend(kept)
    return span


def with_signature(span: Span, value: str) -> Span:
    """``span`` with ``sp.cache.signature`` set to ``value`` (``""``: an entry nobody signed)."""
    for a in span.attributes:
        if a.key == "sp.cache.signature":
            a.value.string_value = value
    return span


def answer(model: EnvoyModel, call: HttpCall, *spans: Span) -> None:
    """Answer a lookup 200 with ``spans`` as the stored variants."""
    model.respond_http_call(call, [(":status", "200"), ("content-type", "application/x-protobuf")],
                            traces_data(list(spans), Envelope()))
