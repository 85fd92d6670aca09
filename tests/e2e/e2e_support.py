"""Helpers of the real-Envoy tests: an HTTP client that sends exactly the headers it is given,
raw wire exchanges, counter deltas on a shared stack, and waits for stores in flight.

Ground truth lives outside the filter: the upstream's own request counter and request log
(``/__stats``, ``/__requests``), and the backend's ``/stats`` (read with the stack's backend key).
The filter's counters (docs/metrics.md) name why. Tests of one module share a stack and use
distinct paths, so every count is a delta.
"""

from __future__ import annotations

import http.client
import re
import socket
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

from sp_istio_cache.envoyconf import BACKEND_CLUSTER
from sp_istio_cache.httpclient import Reply
from sp_istio_cache.paths import REPO_ROOT

#: headers Envoy's HTTP connection manager and router add to every forwarded request (not the filter)
ENVOY_ADDED = frozenset({"x-forwarded-proto", "x-request-id", "x-envoy-expected-rq-timeout-ms"})
#: the conditional headers the cache adds to its own revalidation (RFC 9111 §4.3.1)
CONDITIONAL = frozenset({"if-none-match", "if-modified-since"})
OUTCOMES = ("hit", "miss", "bypass")
LAST_MODIFIED = "Sun, 06 Nov 1994 08:49:37 GMT"

HeaderList = Sequence[tuple[str, str | bytes]]


@cache
def reasons() -> tuple[str, ...]:
    """Every request reason, read from docs/metrics.md (generated from filter/src/reason.zig)."""
    text = (REPO_ROOT / "docs" / "metrics.md").read_text()
    table = text.split("## Request reasons", 1)[1].split("## Other counters", 1)[0]
    return tuple(re.findall(r"^\| `([a-z0-9_]+)` \| (?:HIT|MISS|BYPASS) \|", table, re.M))


@cache
def reason_outcomes() -> dict[str, str]:
    """Reason → outcome (``hit``, ``miss``, ``bypass``), from docs/metrics.md."""
    text = (REPO_ROOT / "docs" / "metrics.md").read_text()
    return {name: outcome.lower() for name, outcome in
            re.findall(r"^\| `([a-z0-9_]+)` \| (HIT|MISS|BYPASS) \|", text, re.M)}


def query(*pairs: tuple[str, str]) -> str:
    """A query string of the upstream app's options, percent-encoded."""
    return urllib.parse.urlencode(pairs)


# ------------------------------------------------------------------------------------- clients


def fetch(stack, path: str, method: str = "GET", headers: HeaderList = (), body: bytes | None = None,
          timeout_s: float = 20.0) -> Reply:
    """One request through Envoy with exactly ``headers`` (plus Host and, for a body,
    Content-Length): unlike urllib, no Accept-Encoding or User-Agent of its own."""
    u = urllib.parse.urlsplit(stack.listener_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout_s)
    try:
        names = {n.lower() for n, _ in headers}
        conn.putrequest(method, path, skip_host="host" in names, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return Reply(r.status, [(k.lower(), v) for k, v in r.getheaders()], data)
    finally:
        conn.close()


def raw_exchange(stack, request: bytes, timeout_s: float = 10.0) -> bytes:
    """Send ``request`` bytes (which should say ``connection: close``) and return every byte of
    the answer, as on the wire."""
    u = urllib.parse.urlsplit(stack.listener_url)
    out = b""
    with socket.create_connection((u.hostname, u.port), timeout=timeout_s) as s:
        s.sendall(request)
        while chunk := s.recv(65536):
            out += chunk
    return out


def split_wire(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, header lines as (lower-case name, value) bytes, body) of one HTTP/1.1 answer
    with Content-Length."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    fields = [(n.strip().lower(), v.strip()) for n, _, v in (line.partition(b":") for line in lines[1:])]
    return status, fields, body


def authority(stack) -> str:
    """The ``host:port`` clients send to the listener (part of every cache key)."""
    return urllib.parse.urlsplit(stack.listener_url).netloc


def upstream_requests(stack, path: str) -> list[dict]:
    """Requests the upstream received for ``path`` (path and query exactly), oldest first:
    ``{"method", "path", "headers": [[name, value], ...]}``."""
    return [r for r in stack.upstream.get_json("/__requests") if r["path"] == path]


def header_names(headers: Iterable[Sequence[str]]) -> list[str]:
    return sorted(n.lower() for n, _ in headers)


# ------------------------------------------------------------------------------------- counters


def settle(stack, timeout_s: float = 5.0) -> None:
    """Wait until nothing of the filter's is pending in Envoy: no request open, no store queued in
    the filter's batch, no callout to the backend cluster active or pending. Then every store and
    invalidation the filter made has been answered (so a late store of one test never lands in
    the next test's deltas). Read from Envoy alone: the backend's own counters also move for
    entries a test plants through its API. Streams count too: a client has a Content-Length body
    as soon as its last byte is forwarded, while the filter may see the end of the stream (and
    queue its store) a callback later."""
    deadline = time.monotonic() + timeout_s
    while True:
        envoy = stack.envoy.stats()
        open_requests = sum(v for k, v in envoy.items() if k.startswith("http.") and not k.startswith("http.admin.")
                            and k.endswith(".downstream_rq_active"))
        queued = envoy.get("wasmcustom.sp_cache.stores_queued", 0)
        callouts = sum(envoy.get(f"cluster.{BACKEND_CLUSTER}.{name}", 0)
                       for name in ("upstream_rq_active", "upstream_rq_pending_active"))
        if open_requests <= 0 and queued <= 0 and callouts <= 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{open_requests} requests open in Envoy, {queued} stores queued, "
                               f"{callouts} backend callouts in flight")
        time.sleep(0.02)


class Delta:
    """Counters of a shared stack from the moment of construction: ``filter`` metrics (without the
    ``sp_cache.`` prefix), ``backend`` ``/stats`` counters, ``upstream`` requests per path."""

    def __init__(self, stack, *, wait: bool = True) -> None:
        self.stack = stack
        if wait and stack.backends:
            settle(stack)
        self._filter = stack.filter_stats()
        self._backend = stack.backend_stats() if stack.backends else {}
        self._upstream = self._upstream_counts()

    def _upstream_counts(self) -> dict[str, int] | None:
        """The upstream's requests per "METHOD path"; None when it has been stopped."""
        try:
            return self.stack.upstream.get_json("/__stats")["by_method_path"]
        except OSError:
            return None

    def filter(self, name: str) -> int:
        key = "sp_cache." + name
        return int(self.stack.filter_stats().get(key, 0) - self._filter.get(key, 0))

    def backend(self, name: str) -> int:
        return int(self.stack.backend_stats()[name] - self._backend[name])

    def upstream(self, path: str, method: str = "GET") -> int:
        """Requests of ``method`` the upstream served for the URL path (query excluded)."""
        key = f"{method} {path}"
        now = self._upstream_counts()
        assert now is not None and self._upstream is not None, "the upstream is not running"
        return int(now.get(key, 0) - self._upstream.get(key, 0))

    def reasons(self) -> dict[str, int]:
        """Request reasons that moved, with how often (every reason of docs/metrics.md)."""
        now = self.stack.filter_stats()
        out = {}
        for name in reasons():
            moved = int(now.get("sp_cache." + name, 0) - self._filter.get("sp_cache." + name, 0))
            if moved:
                out[name] = moved
        return out


def wait_for(predicate, timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate()`` until true.

    Raises:
        TimeoutError: still false after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s} s")
        time.sleep(0.02)


def log_tail(stack, chars: int = 3000) -> str:
    return Path(stack.workdir / "envoy.log").read_text(errors="replace")[-chars:]
