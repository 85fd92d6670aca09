"""A deliberately misbehaving cache backend, FOR TESTS ONLY.

It speaks just enough of the backend's HTTP surface (protocol version 2: ``POST /v1/inject``,
``POST /v1/traces``, ``POST /v1/invalidate``) to let the filter reach it, then answers wrongly in
one of these modes:

    miss       404 to every lookup, 200 to every store and invalidation (a well-behaved empty cache)
    garbage    200 with bytes that are not a protobuf ``TracesData``
    truncated  200 with the first half of a well-formed lookup answer (one candidate span whose
               body is ``POISON``)
    http500    500 "boom"
    sleep      sleeps ``sleep_s`` seconds, then answers like ``miss``
    reset      aborts the connection (TCP RST) without answering

The mode applies to every route (a store is faulted like a lookup) and may be changed while the
server runs. The server is an aiohttp app on its own event loop in a daemon thread, bound to
127.0.0.1 port 0; use it as a context manager so it always stops::

    with FaultyBackend("garbage") as fb:
        stack = make_stack(backend_port=fb.port, ...)
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections import Counter

from aiohttp import web

from sp_istio_cache.entry import Envelope, Request, encode_span, signed_entry, traces_data

MODES = ("miss", "garbage", "truncated", "http500", "sleep", "reset")

#: 200 body of ``garbage``: a field tag with wire type 7 (invalid), then text.
GARBAGE = b"\xff\xff\xff\xff\x0f<html>not a protobuf</html>" * 4
#: what a wrongly decoded ``truncated`` answer would put in front of the client
POISON = b"POISON" * 200


def truncated_hit() -> bytes:
    """The first half of a well-formed lookup answer: one signed candidate (status 200, body
    ``POISON``) for ``GET /poison``, framed as docs/protocol.md says."""
    request = Request("GET", "http", "faulty.example", "/poison")
    entry = signed_entry(request, 200, [("content-type", "text/plain"), ("x-poison", "1")], POISON,
                         b"k" * 32, request_time_ms=0, response_time_ms=0)
    envelope = Envelope()
    full = traces_data([encode_span(envelope, request, entry=entry, retain_seconds=60)], envelope)
    return full[: len(full) // 2]


class FaultyBackend:
    """The misbehaving backend; see the module docstring.

    Attributes:
        port: the bound loopback port (after ``start``).
        received: requests received per route path (``/v1/inject``, ``/v1/traces``, ``/v1/invalidate``).
        answered: requests that got to the end of their handler (not cancelled, not reset).
    """

    def __init__(self, mode: str = "miss", sleep_s: float = 0.3) -> None:
        self.mode = mode
        self.sleep_s = sleep_s
        self.port: int | None = None
        self.received: Counter = Counter()
        self.answered: Counter = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._truncated = truncated_hit()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown mode {value!r}; known: {', '.join(MODES)}")
        self._mode = value

    # ------------------------------------------------------------------ handlers
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.received[request.path] += 1
        await request.read()
        mode = self.mode
        if mode == "reset":
            transport = request.transport
            sock = transport.get_extra_info("socket") if transport else None
            if sock is not None:  # linger 0: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError  # nothing is written
        if mode == "sleep":
            await asyncio.sleep(self.sleep_s)
        self.answered[request.path] += 1
        is_lookup = request.path == "/v1/inject"
        if mode in ("miss", "sleep"):
            return web.Response(status=404 if is_lookup else 200, text="miss\n" if is_lookup else "done\n")
        if mode == "garbage":
            return web.Response(status=200, body=GARBAGE, content_type="application/x-protobuf")
        if mode == "truncated":
            return web.Response(status=200, body=self._truncated, content_type="application/x-protobuf")
        return web.Response(status=500, text="boom\n")  # http500

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FaultyBackend:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                app = web.Application(client_max_size=64 * 1024 * 1024)
                app.router.add_post("/v1/inject", self._handle)
                app.router.add_post("/v1/traces", self._handle)
                app.router.add_post("/v1/invalidate", self._handle)
                runner = web.AppRunner(app, handle_signals=False, access_log=None)
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, "127.0.0.1", 0)
                loop.run_until_complete(site.start())
                self._runner = runner
                self.port = runner.addresses[0][1]
            except BaseException as exc:  # surfaced by start()
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="faulty-backend", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("faulty backend did not start within 10 s")
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        """Stop the server and join its thread; idempotent."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FaultyBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port() -> int:
    """A loopback port that was bound and closed again: nothing listens there (connect is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
