"""A FAKE protocol-v2 backend for the test host, and a harness that plays client, origin and backend.

``FakeBackend`` is a keyed dict, not a backend: it keeps every span the filter stores under
(``sp.cache.key``, ``sp.cache.variant``) and answers a lookup with the stored spans of the key,
verbatim, as docs/protocol.md says a backend does (a lookup answer "carries the stored spans
verbatim"). It recomputes each span's fingerprint and fails the test when the filter's key
disagrees (the real backend answers 400 then). ``Cache`` runs whole exchanges through an
``EnvoyModel``: the request, the backend's answers, the origin's response, the stores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from sp_istio_cache.entry import Envelope, traces_data
from sp_istio_cache.fingerprint import request_fingerprint
from sp_istio_cache.testhost import EnvoyModel, HttpCall, Stream

from ._support import (
    BACKEND_KEY,
    INVALIDATE_PATH,
    LOOKUP_PATH,
    STORE_BATCH_WAIT_MS,
    STORE_PATH,
    SentSpan,
    config,
    req,
    span_of,
    spans_of,
)

Origin = tuple[int, list[tuple[str, str]], bytes]
OriginFn = Callable[[list[tuple[str, str]]], Origin]


@dataclass
class FakeBackend:
    """Answers the filter's callouts from a dict (see the module docstring).

    Attributes:
        entries: key -> variant -> stored Span.
        calls: (path, decoded span) of every call answered, in order.
    """

    model: EnvoyModel
    entries: dict[str, dict[str, Span]] = field(default_factory=dict)
    calls: list[tuple[str, SentSpan]] = field(default_factory=list)

    def serve(self) -> int:
        """Answer every pending callout; returns how many."""
        n = 0
        while self.model.pending_calls:
            self.answer(self.model.pending_calls[0])
            n += 1
        return n

    def answer(self, call: HttpCall) -> None:
        """Answer one callout: lookup 200 (stored spans) or 404, store 200, invalidate 200."""
        assert call.header("x-public-key") == BACKEND_KEY, call.headers
        if call.path == STORE_PATH:  # stores come batched: 1..N spans
            for sent in spans_of(call):
                self._check_key(call.path, sent)
                self.calls.append((call.path, sent))
                self.entries.setdefault(sent.key, {})[sent.attrs["sp.cache.variant"]] = sent.span
            self.model.respond_http_call(call, 200)
            return
        sent = span_of(call)
        self.calls.append((call.path, sent))
        self._check_key(call.path, sent)
        a = sent.attrs
        if call.path == LOOKUP_PATH:
            stored = list(self.entries.get(sent.key, {}).values())
            if not stored:
                self.model.respond_http_call(call, 404)
                return
            self.model.respond_http_call(call, [(":status", "200"), ("content-type", "application/x-protobuf")],
                                         traces_data(stored, Envelope()))
        elif call.path == INVALIDATE_PATH:
            for key in a["sp.cache.invalidate.keys"]:
                self.entries.pop(key, None)
            self.model.respond_http_call(call, 200)
        else:
            raise AssertionError(f"callout to unexpected path {call.path!r}")

    @staticmethod
    def _check_key(path: str, sent: SentSpan) -> None:
        a = sent.attrs
        want = request_fingerprint(a["http.request.method"], a["url.scheme"], a["server.address"], a["url.path"],
                                   a.get("http.request.body", b""))
        assert sent.key == want, f"{path}: the filter's key {sent.key} is not the fingerprint {want}"

    def count(self, path: str) -> int:
        """Calls answered on ``path`` (a batched store counts once per span)."""
        return sum(1 for p, _ in self.calls if p == path)



class Cache:
    """One Envoy model with the filter, a fake backend and an origin played by the test.

    Args:
        model: a started model.
    Attributes:
        upstream: the request headers of every request that reached the origin, in order.
    """

    def __init__(self, model: EnvoyModel):
        self.model = model
        self.backend = FakeBackend(model)
        self.upstream: list[list[tuple[str, str]]] = []

    def fetch(self, path: str = "/r", *extra: tuple[str, str], method: str = "GET",
              origin: Origin | OriginFn | None = None, worker: int = 0, body: bytes = b"") -> Stream:
        """One whole exchange: the request; the backend's answers; when it went upstream, the
        origin's response (``origin``: a tuple, or a function of the forwarded request headers;
        default 200 ``fresh`` with max-age=60); the end of the stream; the stores it caused."""
        s = self.model.new_stream(worker=worker)
        s.request(req(method, path, *extra), body)
        self.backend.serve()
        if not s.deleted and s.local_response is None and s.request_headers_after is not None:
            forwarded = list(s.request_headers_after)
            self.upstream.append(forwarded)
            got = origin(forwarded) if callable(origin) else origin
            status, headers, payload = got or (200, [("cache-control", "max-age=60")], b"fresh")
            s.respond(status, headers, payload)
            self.backend.serve()
        s.done()
        self.backend.serve()
        self.flush()
        return s

    def flush(self) -> None:
        """Lets the filter's store batch go out (its tick, docs/protocol.md "Batched stores")
        and answers it."""
        self.model.advance(STORE_BATCH_WAIT_MS)
        self.backend.serve()

    def metric(self, name: str) -> int:
        return self.model.metric(f"sp_cache.{name}")


TIERS = ("l1", "backend")


def tier_config(tier: str, **overrides) -> dict:
    """Plugin config for a tier: ``l1`` (the default L1) or ``backend`` (``l1_max_bytes: 0``)."""
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
    return config(**({"l1_max_bytes": 0} if tier == "backend" else {}), **overrides)


def hit_reason(tier: str) -> str:
    """The counter a fresh hit moves on ``tier``."""
    return "l1_hit" if tier == "l1" else "backend_hit"
