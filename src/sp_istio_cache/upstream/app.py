"""The upstream test application: deterministic bodies with the response shapes a cache meets.

Routes:
    GET|HEAD|POST /bytes/{n}   n deterministic bytes (application/octet-stream)
    GET|HEAD|POST /status/{c}  status c, headers only, no body
    GET  /__stats              JSON request counters (control routes are not counted)
    POST /__reset              zero the counters
    GET  /healthz              200 "ok" (not counted)

Query options (every route but the control ones; unknown parameters are ignored, so callers can
add cache-busting ones):
    seed=S            body seed (default "0"): same n and seed -> same bytes
    delay_ms=D        wait D milliseconds before answering
    status=C          response status (default 200; 204 and 304 carry no body)
    cache_control=V   Cache-Control: V
    header=Name:Value extra response header; repeatable, same name allowed
    chunked=1         chunked transfer encoding (several chunks, no Content-Length)
    gzip=1            body gzip-compressed, Content-Encoding: gzip
    etag=1            strong ETag for (n, seed, gzip); a matching If-None-Match gets 304
    vary=V            Vary: V
    set_cookie=V      Set-Cookie: V; repeatable
A malformed option is answered 400 naming the parameter.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from .payload import PayloadCache

MAX_BODY_BYTES = 1 << 30
LARGE_BODY_BYTES = 1 << 20
CHUNKS = 4
NO_BODY_STATUSES = frozenset({204, 304})
CONTROL_PATHS = frozenset({"/__stats", "/__reset", "/healthz"})
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Options:
    """Response options parsed from the query string (see the module docstring)."""

    seed: str = "0"
    delay_ms: float = 0.0
    status: int = 200
    cache_control: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    chunked: bool = False
    gzip: bool = False
    etag: bool = False
    vary: str | None = None
    set_cookies: tuple[str, ...] = ()


def _flag(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name)
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"{name}={value!r}: expected 1/0/true/false")


def _status(text: str, what: str) -> int:
    try:
        status = int(text)
    except ValueError:
        raise ValueError(f"{what}={text!r}: not an integer") from None
    if not 200 <= status <= 599:
        raise ValueError(f"{what}={status}: must be within 200..599")
    return status


def parse_options(query: MultiMapping[str]) -> Options:
    """Parse the query options.

    Raises:
        ValueError: a malformed value; the message names the parameter.
    """
    delay_text = query.get("delay_ms", "0")
    try:
        delay_ms = float(delay_text)
    except ValueError:
        raise ValueError(f"delay_ms={delay_text!r}: not a number") from None
    if not 0 <= delay_ms <= 600_000:
        raise ValueError(f"delay_ms={delay_ms}: must be within 0..600000")
    headers = []
    for item in query.getall("header", []):
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"header={item!r}: expected Name:Value")
        headers.append((name.strip(), value.strip()))
    return Options(
        seed=query.get("seed", "0"),
        delay_ms=delay_ms,
        status=_status(query.get("status", "200"), "status"),
        cache_control=query.get("cache_control"),
        headers=tuple(headers),
        chunked=_flag(query, "chunked"),
        gzip=_flag(query, "gzip"),
        etag=_flag(query, "etag"),
        vary=query.get("vary"),
        set_cookies=tuple(query.getall("set_cookie", [])),
    )


def _response_headers(opts: Options) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    if opts.cache_control is not None:
        headers.add("Cache-Control", opts.cache_control)
    if opts.vary is not None:
        headers.add("Vary", opts.vary)
    for cookie in opts.set_cookies:
        headers.add("Set-Cookie", cookie)
    for name, value in opts.headers:
        headers.add(name, value)
    return headers


@dataclass
class RequestStats:
    """Requests seen since start or the last reset (control routes excluded)."""

    total: int = 0
    by_path: Counter = field(default_factory=Counter)
    by_method: Counter = field(default_factory=Counter)
    by_method_path: Counter = field(default_factory=Counter)
    request_body_bytes: int = 0

    def record(self, method: str, path: str) -> None:
        self.total += 1
        self.by_path[path] += 1
        self.by_method[method] += 1
        self.by_method_path[f"{method} {path}"] += 1

    def as_json(self) -> dict:
        """``{"total", "by_path", "by_method", "by_method_path", "request_body_bytes"}``."""
        return {
            "total": self.total,
            "by_path": dict(self.by_path),
            "by_method": dict(self.by_method),
            "by_method_path": dict(self.by_method_path),
            "request_body_bytes": self.request_body_bytes,
        }


class Upstream:
    """Route handlers sharing one :class:`RequestStats` and one :class:`PayloadCache`."""

    def __init__(self, payloads: PayloadCache | None = None) -> None:
        self.stats = RequestStats()
        self.payloads = payloads or PayloadCache()

    @web.middleware
    async def count(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path not in CONTROL_PATHS:
            self.stats.record(request.method, request.path)
        return await handler(request)

    async def _prelude(self, request: web.Request) -> Options:
        """Parse options, drain (and count) a request body, apply the delay."""
        try:
            opts = parse_options(request.query)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        async for chunk in request.content.iter_any():
            self.stats.request_body_bytes += len(chunk)
        if opts.delay_ms:
            await asyncio.sleep(opts.delay_ms / 1000)
        return opts

    async def body_bytes(self, request: web.Request) -> web.StreamResponse:
        """``/bytes/{n}``: n deterministic bytes shaped by the query options."""
        n = int(request.match_info["n"])
        if n > MAX_BODY_BYTES:
            raise web.HTTPBadRequest(text=f"n={n}: at most {MAX_BODY_BYTES}\n")
        opts = await self._prelude(request)
        headers = _response_headers(opts)
        headers["Content-Type"] = "application/octet-stream"
        if opts.gzip:
            headers["Content-Encoding"] = "gzip"
        if opts.etag:
            digest = hashlib.sha256(f"{n}:{opts.seed}:{int(opts.gzip)}".encode()).hexdigest()
            etag = f'"{digest[:32]}"'
            headers["ETag"] = etag
            if etag in _if_none_match(request):
                return web.Response(status=304, headers=headers)
        if opts.status in NO_BODY_STATUSES:
            return web.Response(status=opts.status, headers=headers)
        if n >= LARGE_BODY_BYTES:  # first generation of a big body would stall the loop
            data = await asyncio.to_thread(self.payloads.get, n, opts.seed, opts.gzip)
        else:
            data = self.payloads.get(n, opts.seed, opts.gzip)
        if not opts.chunked:
            return web.Response(status=opts.status, body=data, headers=headers)
        response = web.StreamResponse(status=opts.status, headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        if request.method != "HEAD" and data:
            step = max(1, -(-len(data) // CHUNKS))
            for start in range(0, len(data), step):
                await response.write(data[start:start + step])
        await response.write_eof()
        return response

    async def status(self, request: web.Request) -> web.Response:
        """``/status/{code}``: the status with the option headers and no body."""
        try:
            code = _status(request.match_info["code"], "code")
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        opts = await self._prelude(request)
        return web.Response(status=code, headers=_response_headers(opts))

    async def get_stats(self, request: web.Request) -> web.Response:
        """``GET /__stats``: the counters as JSON."""
        return web.json_response(self.stats.as_json())

    async def reset(self, request: web.Request) -> web.Response:
        """``POST /__reset``: zero the counters."""
        self.stats = RequestStats()
        return web.json_response(self.stats.as_json())

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: 200 "ok"."""
        return web.Response(text="ok\n")


def _if_none_match(request: web.Request) -> set[str]:
    values = request.headers.getall("If-None-Match", [])
    return {tag.strip() for value in values for tag in value.split(",")}


UPSTREAM_KEY = web.AppKey("upstream", Upstream)


def create_app(payloads: PayloadCache | None = None) -> web.Application:
    """Build the upstream application (optionally sharing a :class:`PayloadCache`)."""
    upstream = Upstream(payloads)
    app = web.Application(middlewares=[upstream.count])
    app[UPSTREAM_KEY] = upstream
    for path, handler in ((r"/bytes/{n:\d+}", upstream.body_bytes), (r"/status/{code:\d+}", upstream.status)):
        app.router.add_get(path, handler)  # also answers HEAD
        app.router.add_post(path, handler)
    app.router.add_get("/__stats", upstream.get_stats)
    app.router.add_post("/__reset", upstream.reset)
    app.router.add_get("/healthz", upstream.healthz)
    return app
