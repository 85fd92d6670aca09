"""The upstream test application: deterministic bodies with the response shapes a cache meets.

Routes:
    ANY /bytes/{n}             n deterministic bytes (application/octet-stream); every method, so a
                               traffic profile's PUT, PATCH, DELETE rows have an origin too
    ANY /status/{c}            status c, headers only, no body
    GET  /__stats              JSON request counters (control routes are not counted)
    GET  /__requests           JSON: the last 1000 requests as received (method, path, headers)
    POST /__reset              zero the counters and forget the requests
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
    etag=1            strong ETag for (n, seed, gzip); a matching If-None-Match gets 304 (an
                      ETag given with header= is never matched: a resource that always changed)
    last_modified=D   Last-Modified: D (an IMF-fixdate); without If-None-Match, an
                      If-Modified-Since at or after D gets 304 (RFC 9110 §13.1.3)
    echo_headers=1    /bytes only: the body is the request as received, JSON
                      {"method", "path", "headers": [[name, value], ...]} (values decoded as
                      Latin-1, so any byte survives), instead of n bytes
    vary=V            Vary: V
    set_cookie=V      Set-Cookie: V; repeatable
A malformed option is answered 400 naming the parameter.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from .payload import PayloadCache

_N = TypeVar("_N", int, float)

MAX_BODY_BYTES = 1 << 30
LARGE_BODY_BYTES = 1 << 20
CHUNKS = 4
#: requests kept for ``GET /__requests``
RECENT_REQUESTS = 1000
NO_BODY_STATUSES = frozenset({204, 304})
CONTROL_PATHS = frozenset({"/__stats", "/__requests", "/__reset", "/healthz"})
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
    last_modified: str | None = None
    echo_headers: bool = False


def _http_date(text: str, what: str) -> datetime:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        when = None
    if when is None or when.tzinfo is None:
        raise ValueError(f"{what}={text!r}: not an HTTP-date (e.g. Sun, 06 Nov 1994 08:49:37 GMT)")
    return when


def _flag(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name)
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"{name}={value!r}: expected 1/0/true/false")


def _bounded(text: str, what: str, parse: Callable[[str], _N], noun: str, low: float, high: float) -> _N:
    """``parse(text)`` within ``low..high``; a ValueError naming ``what`` otherwise."""
    try:
        value = parse(text)
    except ValueError:
        raise ValueError(f"{what}={text!r}: not {noun}") from None
    if not low <= value <= high:
        raise ValueError(f"{what}={value}: must be within {low}..{high}")
    return value


def _status(text: str, what: str) -> int:
    return _bounded(text, what, int, "an integer", 200, 599)


def parse_options(query: MultiMapping[str]) -> Options:
    """Parse the query options.

    Raises:
        ValueError: a malformed value; the message names the parameter.
    """
    delay_ms = _bounded(query.get("delay_ms", "0"), "delay_ms", float, "a number", 0, 600_000)
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
        last_modified=_checked_date(query.get("last_modified"), "last_modified"),
        echo_headers=_flag(query, "echo_headers"),
    )


def _checked_date(text: str | None, what: str) -> str | None:
    if text is not None:
        _http_date(text, what)
    return text


def _response_headers(opts: Options) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    if opts.cache_control is not None:
        headers.add("Cache-Control", opts.cache_control)
    if opts.vary is not None:
        headers.add("Vary", opts.vary)
    for cookie in opts.set_cookies:
        headers.add("Set-Cookie", cookie)
    if opts.last_modified is not None:
        headers.add("Last-Modified", opts.last_modified)
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
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_REQUESTS))

    def record(self, method: str, path: str, request: web.BaseRequest | None = None) -> None:
        if request is not None:
            self.recent.append(_as_received(request))
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
            self.stats.record(request.method, request.path, request)
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
        etag = None
        if opts.etag:
            digest = hashlib.sha256(f"{n}:{opts.seed}:{int(opts.gzip)}".encode()).hexdigest()
            etag = headers["ETag"] = f'"{digest[:32]}"'
        if _not_modified(request, opts, etag):
            return web.Response(status=304, headers=headers)
        if opts.status in NO_BODY_STATUSES:
            return web.Response(status=opts.status, headers=headers)
        if opts.echo_headers:
            headers["Content-Type"] = "application/json"
            data = json.dumps(_as_received(request)).encode()
            data = gzip.compress(data, mtime=0) if opts.gzip else data
        elif n >= LARGE_BODY_BYTES:  # first generation of a big body would stall the loop
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

    async def get_requests(self, request: web.Request) -> web.Response:
        """``GET /__requests``: the last requests as received, oldest first."""
        return web.json_response(list(self.stats.recent))

    async def reset(self, request: web.Request) -> web.Response:
        """``POST /__reset``: zero the counters and forget the requests."""
        self.stats = RequestStats()
        return web.json_response(self.stats.as_json())

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: 200 "ok"."""
        return web.Response(text="ok\n")


def _if_none_match(request: web.Request) -> set[str]:
    values = request.headers.getall("If-None-Match", [])
    return {tag.strip() for value in values for tag in value.split(",")}


def _not_modified(request: web.Request, opts: Options, etag: str | None) -> bool:
    """Whether the request's validators match (RFC 9110 §13.1.2, §13.1.3): If-None-Match against
    the ETag when the request has one, else If-Modified-Since against Last-Modified."""
    if "If-None-Match" in request.headers:
        return etag is not None and (etag in _if_none_match(request) or "*" in _if_none_match(request))
    since = request.headers.get("If-Modified-Since")
    if since is None or opts.last_modified is None:
        return False
    try:
        return _http_date(opts.last_modified, "last_modified") <= _http_date(since, "If-Modified-Since")
    except ValueError:
        return False  # an invalid If-Modified-Since is ignored (RFC 9110 §13.1.3)


def _as_received(request: web.BaseRequest) -> dict:
    """The request line and header fields as received, in order (values as Latin-1 text)."""
    return {
        "method": request.method,
        "path": request.path_qs,
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
    }


UPSTREAM_KEY = web.AppKey("upstream", Upstream)


def create_app(payloads: PayloadCache | None = None) -> web.Application:
    """Build the upstream application (optionally sharing a :class:`PayloadCache`)."""
    upstream = Upstream(payloads)
    app = web.Application(middlewares=[upstream.count])
    app[UPSTREAM_KEY] = upstream
    for path, handler in ((r"/bytes/{n:\d+}", upstream.body_bytes), (r"/status/{code:\d+}", upstream.status)):
        app.router.add_route("*", path, handler)
    app.router.add_get("/__stats", upstream.get_stats)
    app.router.add_get("/__requests", upstream.get_requests)
    app.router.add_post("/__reset", upstream.reset)
    app.router.add_get("/healthz", upstream.healthz)
    return app
