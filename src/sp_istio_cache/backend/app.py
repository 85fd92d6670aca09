"""The cache backend HTTP service: the backend side of ``docs/protocol.md`` (protocol version 2).

Routes:
    POST /v1/inject      lookup span  -> 200 + every stored variant span, verbatim | 404 none
    POST /v1/traces      store span   -> 200 (replaces the entry with the same key and variant)
    POST /v1/invalidate  invalidate   -> 200 (every variant of each listed key deleted)
    GET  /stats          JSON counters and storage totals (for the workbench)
    GET  /healthz        200 "ok" (the process runs; no key needed)
    GET  /readyz         200 when the storage answers, else 503 (no key needed)
    GET  /metrics        Prometheus text format (no key needed)

Every other path needs ``x-public-key`` equal to the backend key (constant-time compare), else
401. A body that is not one protocol span of the route's type, lacks an attribute the call needs,
or whose ``sp.cache.key`` differs from the recomputed fingerprint gets 400 and a one-line reason;
a body over the size limit 413; a storage failure 503. Nothing is stored on any of those.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from sp_istio_cache.otlp import MalformedSpan, SpanType, decode_span, decode_spans, resource_bytes, scope_bytes
from sp_istio_cache.otlpwire import frame_spans

from .metrics import BackendMetrics
from .settings import DEFAULT_MAX_BODY, DEFAULT_MAX_RETAIN_S, KEY_HEADER, OPEN_PATHS, check_key
from .storage import EntryTooLarge, Storage, StorageUnavailable

log = logging.getLogger("sp_istio_cache.backend")

PROTOBUF = "application/x-protobuf"
ANSWER_SERVICE_NAME = "sp-istio-cache-backend"


class Rejected(Exception):
    """A request the backend refuses; becomes a text answer with ``status`` and ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CacheBackend:
    """Route handlers over one :class:`Storage`, with metrics and an injectable clock.

    Args:
        storage: where entries live; opened at start-up and closed at shutdown.
        key: the backend key required in ``x-public-key``; None accepts anonymous calls.
        max_body_bytes: largest accepted request body (bigger: 413).
        max_retain_seconds: the longest an entry is kept (``sp.cache.retain_seconds`` is capped).
        clock: seconds since the epoch (``time.time``; tests pass a fake).
    """

    def __init__(self, storage: Storage, *, key: str | None, max_body_bytes: int = DEFAULT_MAX_BODY,
                 max_retain_seconds: int = DEFAULT_MAX_RETAIN_S, clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.key = None if key is None else check_key(key).encode()
        self.max_body_bytes = max_body_bytes
        self.max_retain_seconds = max_retain_seconds
        self.clock = clock
        self.metrics = BackendMetrics()
        self._resource = resource_bytes(ANSWER_SERVICE_NAME)
        self._scope = scope_bytes()
        self._last_warning: dict[int, float] = {}

    # ---------------------------------------------------------------- request checks

    async def _span(self, request: web.Request, expected: SpanType):
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise Rejected(413, f"body larger than {self.max_body_bytes} bytes") from exc
        try:
            span = decode_span(body, expected, request_headers=expected is SpanType.EXTRACT)
        except MalformedSpan as exc:
            raise Rejected(400, f"malformed span: {exc}") from exc
        recomputed = span.request.fingerprint()
        if span.request.key != recomputed:
            raise Rejected(400, f"sp.cache.key {span.request.key} disagrees with the recomputed fingerprint "
                                f"{recomputed}")
        return span

    # ---------------------------------------------------------------- protocol routes

    async def inject(self, request: web.Request) -> web.Response:
        """POST /v1/inject: 200 + the stored variant spans framed verbatim, or 404."""
        span = await self._span(request, SpanType.INJECT)
        spans = await self.storage.lookup(span.request.key, self.clock())
        if not spans:
            self.metrics.misses.inc()
            return web.Response(status=404, text="miss\n")
        self.metrics.hits.inc()
        return web.Response(body=frame_spans(self._resource, self._scope, spans), content_type=PROTOBUF)

    async def traces(self, request: web.Request) -> web.Response:
        """POST /v1/traces: store each span under (sp.cache.key, sp.cache.variant). The filter
        sends its queued stores together (1..256 spans); every valid span is stored; 200 when all
        were, 400 naming the first refused one otherwise (413 for an entry over the capacity)."""
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise Rejected(413, f"body larger than {self.max_body_bytes} bytes") from exc
        try:
            spans = decode_spans(body, SpanType.EXTRACT, request_headers=True)
        except MalformedSpan as exc:
            raise Rejected(400, f"malformed span: {exc}") from exc
        now = self.clock()
        stored, refused = 0, []
        for span in spans:
            if isinstance(span, MalformedSpan):
                refused.append((400, f"malformed span: {span}"))
                continue
            recomputed = span.request.fingerprint()
            if span.request.key != recomputed:
                refused.append((400, f"sp.cache.key {span.request.key} disagrees with the recomputed fingerprint "
                                     f"{recomputed}"))
                continue
            if span.entry is None or span.retain_seconds is None:  # decode sets both on a store
                refused.append((400, "malformed span: a store without entry attributes"))
                continue
            retain = min(span.retain_seconds, self.max_retain_seconds)
            if retain == 0:
                continue
            try:
                evicted = await self.storage.insert(span.request.key, span.entry.variant, span.raw, now + retain, now)
            except EntryTooLarge as exc:
                refused.append((413, str(exc)))
                continue
            stored += 1
            self.metrics.stores.inc()
            self.metrics.stored_bytes.inc(len(span.raw))
            if evicted:
                self.metrics.evicted_capacity.inc(evicted)
        if refused:
            status, reason = refused[0]
            if len(spans) > 1:
                reason += f" ({len(refused)} of {len(spans)} spans refused, {stored} stored)"
            raise Rejected(status, reason)
        return web.Response(text=f"stored {stored}\n")

    async def invalidate(self, request: web.Request) -> web.Response:
        """POST /v1/invalidate: delete every variant of each key in sp.cache.invalidate.keys, 200."""
        span = await self._span(request, SpanType.INVALIDATE)
        deleted = await self.storage.invalidate(span.invalidate_keys)
        self.metrics.invalidations.inc()
        self.metrics.invalidated.inc(deleted)
        return web.Response(text=f"invalidated {deleted} entries\n")

    # ---------------------------------------------------------------- operations

    async def healthz(self, request: web.Request) -> web.Response:
        """GET /healthz: 200 "ok" while the process serves."""
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        """GET /readyz: 200 when the storage answers a ping, 503 with the reason otherwise."""
        await self.storage.ping()
        return web.Response(text="ready\n")

    async def metrics_route(self, request: web.Request) -> web.Response:
        """GET /metrics: Prometheus text exposition format (version 0.0.4)."""
        with contextlib.suppress(StorageUnavailable):
            self.metrics.set_storage(await self.storage.stats())
        return web.Response(body=self.metrics.exposition(), headers={"content-type": "text/plain; version=0.0.4"})

    async def stats(self, request: web.Request) -> web.Response:
        """GET /stats: storage totals and counters (all worker processes) as JSON."""
        s = await self.storage.stats()
        return web.json_response({"entries": s.entries, "bytes": s.bytes, "max_entries": s.max_entries,
                                  "max_bytes": s.max_bytes, "evicted": s.evicted, "expired": s.expired,
                                  **self.metrics.totals()})

    async def evict_periodically(self, interval: float) -> None:
        """Remove expired entries every ``interval`` seconds, forever."""
        while True:
            await asyncio.sleep(interval)
            try:
                removed = await self.storage.evict(self.clock())
            except Exception:  # keep serving; the next round tries again
                log.exception("removing expired entries failed")
                continue
            self.metrics.evicted_expired.inc(removed)
            if removed:
                log.info("removed %d expired entries", removed)

    # ---------------------------------------------------------------- middleware

    def _warn(self, status: int, message: str, *args: object) -> None:
        """Log a refused request, at most once a second per status (metrics count every one)."""
        now = time.monotonic()
        if now - self._last_warning.get(status, -1.0) >= 1.0:
            self._last_warning[status] = now
            log.warning(message, *args)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        """Authenticate, time the request, and turn refusals into short text answers."""
        started = time.perf_counter()
        route = request.path if request.path in self.metrics.duration else "other"
        try:
            if self.key is not None and request.path not in OPEN_PATHS:
                supplied = request.headers.get(KEY_HEADER, "").encode("utf-8", "surrogateescape")
                if not hmac.compare_digest(supplied, self.key):
                    self.metrics.auth_failures.inc()
                    raise Rejected(401, f"missing or wrong {KEY_HEADER}")
            return await handler(request)
        except Rejected as exc:
            return self._refuse(request, route, exc.status, exc.reason)
        except StorageUnavailable as exc:
            return self._refuse(request, route, 503, f"storage unavailable: {exc}")
        finally:
            self.metrics.duration[route].observe(time.perf_counter() - started)

    def _refuse(self, request: web.Request, route: str, status: int, reason: str) -> web.Response:
        self.metrics.rejected.labels(route=route, code=str(status)).inc()
        self._warn(status, "%s %s -> %d: %s", request.method, route, status, reason)
        headers = {"www-authenticate": 'SP-Cache-Key realm="sp-cache-backend"'} if status == 401 else None
        return web.Response(status=status, text=reason + "\n", headers=headers)


BACKEND_KEY = web.AppKey("backend", CacheBackend)


class ClientErrorFilter(logging.Filter):
    """Turns aiohttp's ERROR record with traceback for a request it could not even parse (bad
    header bytes, a broken request line: it answers 400 itself) into a one-line WARNING: a
    client's malformed HTTP is not a server error, and must not flood the log with tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            first_line = str(exc.message).strip().splitlines()[0]
            record.msg, record.args = "malformed HTTP request refused with 400: %s", (first_line,)
            record.exc_info = record.exc_text = None
        return True


def quiet_client_errors() -> None:
    """Install :class:`ClientErrorFilter` on aiohttp's server logger (once per process)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
        logger.addFilter(ClientErrorFilter())


def create_app(storage: Storage, *, key: str | None, max_body_bytes: int = DEFAULT_MAX_BODY,
               max_retain_seconds: int = DEFAULT_MAX_RETAIN_S, evict_interval: float = 60.0,
               clock: Callable[[], float] = time.time) -> web.Application:
    """Build the backend application around ``storage`` (opened at start-up, closed at shutdown).

    Args:
        storage: see :mod:`sp_istio_cache.backend.storage`.
        key: required ``x-public-key`` value (16..256 visible ASCII); None only when the operator
            asked for anonymous access (``--allow-anonymous``).
        max_body_bytes: largest accepted request body, bytes (bigger: 413).
        max_retain_seconds: cap on ``sp.cache.retain_seconds``.
        evict_interval: seconds between sweeps of expired entries; 0 disables the sweep.
        clock: seconds since the epoch.

    Raises:
        ValueError: a key that cannot be a backend key (:func:`check_key`).
    """
    backend = CacheBackend(storage, key=key, max_body_bytes=max_body_bytes,
                           max_retain_seconds=max_retain_seconds, clock=clock)
    app = web.Application(client_max_size=max_body_bytes, middlewares=[backend.middleware])
    app[BACKEND_KEY] = backend
    app.router.add_post("/v1/inject", backend.inject)
    app.router.add_post("/v1/traces", backend.traces)
    app.router.add_post("/v1/invalidate", backend.invalidate)
    app.router.add_get("/healthz", backend.healthz)
    app.router.add_get("/readyz", backend.readyz)
    app.router.add_get("/metrics", backend.metrics_route)
    app.router.add_get("/stats", backend.stats)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await storage.open()
        sweeper = asyncio.create_task(backend.evict_periodically(evict_interval)) if evict_interval > 0 else None
        yield
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        await storage.close()

    app.cleanup_ctx.append(lifecycle)
    return app
