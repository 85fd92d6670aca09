"""The cache backend HTTP service (the backend side of ``docs/protocol.md``).

Routes:
    POST /v1/inject  lookup span -> 200 + hit span (application/x-protobuf) | 404 miss
    POST /v1/traces  store span  -> 200
    GET  /healthz    200 "ok"
    GET  /stats      JSON {entries, bytes, lookups, hits, misses, stores, rejected}

A body that is not a protocol span, a span of the wrong type for the route, a store without a
response, or a span whose ``sp.cache.key`` differs from the recomputed fingerprint is answered
400 with a one-line text reason, and nothing is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from sp_istio_cache.fingerprint import request_fingerprint
from sp_istio_cache.otlp import (
    CachedResponse,
    DecodedSpan,
    MalformedSpan,
    SpanType,
    decode_span,
    encode_hit,
)

from .storage import Entry, Storage

log = logging.getLogger("sp_istio_cache.backend")

PROTOBUF = "application/x-protobuf"
DEFAULT_MAX_BODY = 64 * 1024 * 1024


@dataclass
class Counters:
    """Request counters served by ``/stats`` (since start)."""

    lookups: int = 0  # lookups that reached the store (hits + misses)
    hits: int = 0
    misses: int = 0
    stores: int = 0
    rejected: int = 0  # answered 400, 401 or 413


class Rejected(Exception):
    """A request the backend refuses; becomes a text response with ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CacheBackend:
    """Route handlers over one :class:`Storage`, with counters and an injectable clock.

    Args:
        storage: where entries live; closed when the application shuts down.
        default_ttl: seconds an entry stays fresh when a store carries no ``sp.cache.ttl_seconds``.
        public_key: when set, every protocol call must carry ``x-public-key`` equal to it (else 401).
        max_body_bytes: largest accepted request body; bigger is answered 413.
        clock: seconds since the epoch (``time.time`` by default; tests pass a fake).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        default_ttl: float = 300.0,
        public_key: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.max_body_bytes = max_body_bytes
        self.default_ttl = default_ttl
        self.public_key = public_key
        self.clock = clock
        self.counters = Counters()
        # Blocking stores run on one worker thread: calls are serialised and the loop stays free.
        self._executor = ThreadPoolExecutor(1, "sp-cache-storage") if storage.blocking else None

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ---------------------------------------------------------------- request checks

    def _check_key(self, request: web.Request) -> None:
        if self.public_key is not None and request.headers.get("x-public-key") != self.public_key:
            raise Rejected(401, "missing or wrong x-public-key")

    async def _read_span(self, request: web.Request, expected: SpanType) -> tuple[DecodedSpan, str]:
        """Authorise, read and decode the body; return the span and its recomputed key."""
        self._check_key(request)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise Rejected(413, f"body larger than {self.max_body_bytes} bytes") from exc
        try:
            span = decode_span(body)
        except MalformedSpan as exc:
            raise Rejected(400, f"malformed span: {exc}") from exc
        if span.span_type is not expected:
            raise Rejected(
                400, f"span type {span.span_type.value!r} sent to {request.path}, expected {expected.value!r}"
            )
        req = span.request
        key = request_fingerprint(req.method, req.authority, req.path, req.headers, req.vary, req.body)
        if req.key is not None and req.key != key:
            raise Rejected(
                400, f"sp.cache.key {req.key} disagrees with the recomputed fingerprint {key}"
            )
        return span, key

    # ---------------------------------------------------------------- handlers

    async def inject(self, request: web.Request) -> web.Response:
        """POST /v1/inject: 200 + hit span, or 404."""
        span, key = await self._read_span(request, SpanType.INJECT)
        now = self.clock()
        if self.storage.blocking_lookup:
            entry: Entry | None = await self._call(self.storage.lookup, key, now)
        else:
            entry = self.storage.lookup(key, now)
        self.counters.lookups += 1
        if entry is None:
            self.counters.misses += 1
            log.debug("miss %s %s %s", key[:12], span.request.method, span.request.path)
            return web.Response(status=404, text="miss\n")
        self.counters.hits += 1
        log.debug("hit %s %s %s", key[:12], span.request.method, span.request.path)
        response = CachedResponse(entry.status, entry.headers, entry.body)
        return web.Response(
            status=200, body=encode_hit(response, int(now - entry.stored_at)), content_type=PROTOBUF
        )

    async def traces(self, request: web.Request) -> web.Response:
        """POST /v1/traces: store the exchange, 200."""
        span, key = await self._read_span(request, SpanType.EXTRACT)
        if span.response is None:
            raise Rejected(400, "store span carries no http.response.status_code")
        now = self.clock()
        ttl = span.ttl_seconds if span.ttl_seconds is not None else self.default_ttl
        resp = span.response
        entry = Entry(resp.status, resp.headers, resp.body, stored_at=now, expires_at=now + ttl)
        await self._call(self.storage.insert, key, entry)
        self.counters.stores += 1
        log.debug("store %s %s %s ttl=%ss", key[:12], span.request.method, span.request.path, ttl)
        return web.Response(status=200, text="stored\n")

    async def healthz(self, request: web.Request) -> web.Response:
        """GET /healthz: 200 "ok"."""
        return web.Response(text="ok\n")

    async def stats(self, request: web.Request) -> web.Response:
        """GET /stats: entries and bytes in the store, plus the request counters."""
        storage_stats = await self._call(self.storage.stats)
        return web.json_response(
            {"entries": storage_stats.entries, "bytes": storage_stats.bytes, **asdict(self.counters)}
        )

    async def evict_periodically(self, interval: float) -> None:
        """Remove expired entries every ``interval`` seconds, forever."""
        while True:
            await asyncio.sleep(interval)
            try:
                removed = await self._call(self.storage.evict, self.clock())
            except Exception:  # keep serving; the next round tries again
                log.exception("evicting expired entries failed")
                continue
            if removed:
                log.info("evicted %d expired entries", removed)

    async def close(self) -> None:
        """Close the store and stop the worker thread."""
        await self._call(self.storage.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # ---------------------------------------------------------------- middleware

    @web.middleware
    async def reject_middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        try:
            return await handler(request)
        except Rejected as exc:
            self.counters.rejected += 1
            log.warning("%s %s -> %d: %s", request.method, request.path, exc.status, exc.reason)
            return web.Response(status=exc.status, text=exc.reason + "\n")


BACKEND_KEY = web.AppKey("backend", CacheBackend)


def create_app(
    storage: Storage,
    *,
    default_ttl: float = 300.0,
    public_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    evict_interval: float = 60.0,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """Build the backend application around ``storage`` (which it closes on shutdown).

    Args:
        storage: see :mod:`sp_istio_cache.backend.storage`.
        default_ttl: seconds of freshness for stores without ``sp.cache.ttl_seconds``.
        public_key: required ``x-public-key`` value, or None for no check.
        max_body_bytes: largest accepted request body (bigger -> 413).
        evict_interval: seconds between sweeps of expired entries; 0 disables the sweep.
        clock: seconds since the epoch.
    """
    backend = CacheBackend(
        storage,
        default_ttl=default_ttl,
        public_key=public_key,
        max_body_bytes=max_body_bytes,
        clock=clock,
    )
    app = web.Application(client_max_size=max_body_bytes, middlewares=[backend.reject_middleware])
    app[BACKEND_KEY] = backend
    app.router.add_post("/v1/inject", backend.inject)
    app.router.add_post("/v1/traces", backend.traces)
    app.router.add_get("/healthz", backend.healthz)
    app.router.add_get("/stats", backend.stats)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        sweeper = None
        if evict_interval > 0:
            sweeper = asyncio.create_task(backend.evict_periodically(evict_interval))
        yield
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        await backend.close()

    app.cleanup_ctx.append(lifecycle)
    return app
