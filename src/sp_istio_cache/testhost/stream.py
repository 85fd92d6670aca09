"""One HTTP stream through the filter: both directions, local replies, and the end of the stream.

Envoy behaviour modelled here (``source/common/http/filter_manager.cc``, ``utility.cc``):

- a local reply is built like ``Utility::prepareLocalReply``: ``:status``, the filter's headers in
  order, then ``content-length`` (set in place) and ``content-type: text/plain`` when absent if the
  body is non-empty; an EMPTY body removes both ``content-length`` and ``content-type``; HEAD gets
  the headers (content-length kept) and no body;
- sent before any response headers reached the filter, the reply runs through the filter's own
  response callbacks (``sendLocalReplyViaFilterChain``); sent once upstream response headers are in
  (e.g. from ``proxy_on_response_headers``) it goes straight to the client, replaces the upstream
  response and does NOT re-enter the filter (``sendDirectLocalReply``; both checked on Envoy 1.40);
  sent after response headers left the filter, Envoy resets the stream;
- the stream ends when the response end reaches the client (or on :meth:`Stream.done`, a reset):
  ``proxy_on_log``, ``proxy_on_done``, ``proxy_on_delete``, in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import headermap
from .abi import DataStatus, HeadersStatus, TrailersStatus
from .errors import TestHostError
from .filter_manager import Direction
from .headermap import Pairs

if TYPE_CHECKING:
    from .contexts import RootContext
    from .worker import Worker


def local_reply_headers(status: int, extra: Pairs, body: bytes) -> Pairs:
    """The header map of an Envoy local reply (``Utility::prepareLocalReply``)."""
    headers: Pairs = [(":status", str(status))]
    for key, value in extra:
        headermap.add(headers, key, value)
    if body:
        at = next((i for i, (k, _) in enumerate(headers) if k == "content-length"), None)
        if at is None:
            headers.append(("content-length", str(len(body))))
        else:  # an inline header: set in place, extra copies dropped
            headers[at] = ("content-length", str(len(body)))
            headers[at + 1:] = [(k, v) for k, v in headers[at + 1:] if k != "content-length"]
        if headermap.first(headers, "content-type") is None:
            headers.append(("content-type", "text/plain"))
    else:
        headermap.remove(headers, "content-length")
        headermap.remove(headers, "content-type")
    return headers


@dataclass
class LocalResponse:
    """A local reply as the client sees it (filled in as it leaves the filter).

    Attributes:
        via_filter_chain: True when it ran through this filter's response callbacks.
        details: response code details (Envoy replaces whitespace with ``_``).
        grpc_status: as the filter passed it (-1: none).
    """

    status: int
    details: str
    grpc_status: int
    via_filter_chain: bool
    stream: Stream = field(repr=False)

    @property
    def headers(self) -> Pairs:
        """The response headers the client received ([] while the filter holds them)."""
        return list(self.stream.encoder.headers_out or [])

    @property
    def body(self) -> bytes:
        """The response body the client received."""
        return bytes(self.stream.encoder.body_out)


class Stream:
    """One HTTP stream; create it with ``EnvoyModel.new_stream``.

    Attributes:
        decoder, encoder: the request and response :class:`Direction` (Envoy's decoder and encoder filter paths).
        local_response: the local reply, when the filter (or Envoy) sent one.
        actions: ``(callback, raw return value)`` of every stream callback, in order.
        reset_reason: why Envoy reset the stream, or None.
        deleted: ``proxy_on_delete`` ran; the context is gone.
    """

    def __init__(self, worker: Worker, context_id: int, root: RootContext):
        self.worker = worker
        self.model = worker.model
        self.id = context_id
        self.root = root
        self.decoder = Direction(self, request=True)
        self.encoder = Direction(self, request=False)
        self.actions: list[tuple[str, int | None]] = []
        self.local_response: LocalResponse | None = None
        self.reset_reason: str | None = None
        self.created = False
        self.deleted = False
        self.in_log = False
        self.start_ns = self.model.clock.now_ns
        self.response_code: int | None = None
        self.response_code_details: str | None = None
        self.filter_state: dict[bytes, bytes] = {}
        self.upstream_response_started = False

    # ------------------------------------------------------------------ views

    @property
    def request_headers(self) -> Pairs | None:
        """The live request header map (what the filter reads and edits)."""
        return self.decoder.headers

    @property
    def request_headers_after(self) -> Pairs | None:
        """The request headers as they went upstream (None while held or never sent)."""
        return self.decoder.headers_out

    @property
    def upstream_body(self) -> bytes:
        """Request body bytes that went upstream."""
        return bytes(self.decoder.body_out)

    @property
    def request_end_sent(self) -> bool:
        """The end of the request went upstream."""
        return self.decoder.end_out

    @property
    def response_headers_after(self) -> Pairs | None:
        """The response headers the client received (upstream's or a local reply's)."""
        return self.encoder.headers_out

    @property
    def downstream_body(self) -> bytes:
        """Response body bytes the client received."""
        return bytes(self.encoder.body_out)

    @property
    def response_end_sent(self) -> bool:
        """The end of the response reached the client."""
        return self.encoder.end_out

    @property
    def request_paused(self) -> bool:
        """The filter holds the request (headers, body or trailers not yet upstream)."""
        return self.decoder.paused

    @property
    def response_paused(self) -> bool:
        """The filter holds the response."""
        return self.encoder.paused

    @property
    def hung(self) -> bool:
        """The request (or response) waits behind a StopAllIteration the filter never lifts:
        see :attr:`Direction.hung`. A filter must never leave a stream like this."""
        return self.decoder.hung or self.encoder.hung

    @property
    def cache_status(self) -> str | None:
        """The ``x-sp-cache`` value the client saw (None when absent).

        Raises:
            AssertionError: the header was sent more than once.
        """
        values = self.response_header_values("x-sp-cache")
        if len(values) > 1:
            raise AssertionError(f"x-sp-cache sent {len(values)} times: {values}")
        return values[0] if values else None

    def response_header_values(self, name: str) -> list[str]:
        """Every value of response header ``name`` the client received, in order."""
        return [v for k, v in (self.encoder.headers_out or []) if k == name]

    def request_header_values(self, name: str) -> list[str]:
        """Every value of request header ``name`` that went upstream, in order."""
        return [v for k, v in (self.decoder.headers_out or []) if k == name]

    # ------------------------------------------------------------------ the client and the upstream

    def send_request_headers(self, headers: Sequence[tuple[str, str]], end_of_stream: bool = True) -> HeadersStatus:
        """Client request headers reach the filter (``proxy_on_request_headers``).

        Raises:
            TestHostError: headers were already sent on this stream, or it is gone.
        """
        self._check_alive()
        if self.decoder.headers is not None:
            raise TestHostError("request headers already sent on this stream")
        status = self.decoder.on_headers(headermap.lower_pairs(headers), end_of_stream)
        self.model.pump()
        return status

    def send_request_body(self, chunk: bytes, end_of_stream: bool = True) -> DataStatus | None:
        """A request body chunk from the client; None when the filter is not called (also after a
        local reply ended the stream: Envoy drops what the client still sends)."""
        if self.deleted and self.local_response is not None:
            return None
        self._check_alive()
        if self.decoder.headers is None:
            raise TestHostError("send request headers first")
        if self.decoder.end_in and not self.decoder.finished:
            raise TestHostError("the request already ended")
        status = self.decoder.on_data(chunk, end_of_stream)
        self.model.pump()
        return status

    def send_request_trailers(self, trailers: Sequence[tuple[str, str]]) -> TrailersStatus | None:
        """Request trailers from the client (they end the request)."""
        if self.deleted and self.local_response is not None:
            return None
        self._check_alive()
        status = self.decoder.on_trailers(headermap.lower_pairs(trailers))
        self.model.pump()
        return status

    def send_response_headers(self, headers: Sequence[tuple[str, str]],
                              end_of_stream: bool = False) -> HeadersStatus | None:
        """Upstream response headers reach the filter (``proxy_on_response_headers``).

        Raises:
            TestHostError: the request never went upstream, the filter already answered locally,
                or response headers were already sent.
        """
        self._check_alive()
        if self.local_response is not None:
            raise TestHostError("the filter already answered this stream locally; there is no upstream response")
        if self.decoder.headers_out is None:
            raise TestHostError("the request headers have not gone upstream: there is no upstream response yet")
        if self.upstream_response_started:
            raise TestHostError("response headers already sent on this stream")
        self.upstream_response_started = True
        pairs = headermap.lower_pairs(headers)
        self.response_code = _status_of(pairs)
        self.response_code_details = "via_upstream"
        status = self.encoder.on_headers(pairs, end_of_stream)
        self.model.pump()
        return status

    def send_response_body(self, chunk: bytes, end_of_stream: bool = True) -> DataStatus | None:
        """An upstream response body chunk; None when the filter is not called (or the upstream
        response was replaced by a local reply and Envoy dropped it)."""
        if self.deleted and self.local_response is not None:
            return None  # Envoy dropped the upstream response when the filter replied locally
        self._check_alive()
        if not self.upstream_response_started:
            raise TestHostError("send response headers first")
        if self.encoder.end_in and not self.encoder.finished:
            raise TestHostError("the response already ended")
        status = self.encoder.on_data(chunk, end_of_stream) if self._upstream_response_live() else None
        self.model.pump()
        return status

    def send_response_trailers(self, trailers: Sequence[tuple[str, str]]) -> TrailersStatus | None:
        """Upstream response trailers."""
        if self.deleted and self.local_response is not None:
            return None
        self._check_alive()
        status = self.encoder.on_trailers(headermap.lower_pairs(trailers)) if self._upstream_response_live() else None
        self.model.pump()
        return status

    def request(self, headers: Sequence[tuple[str, str]], body: bytes = b"") -> HeadersStatus | DataStatus | None:
        """Headers, and the body in one chunk when non-empty; returns the last status."""
        status: HeadersStatus | DataStatus | None = self.send_request_headers(headers, end_of_stream=not body)
        if body:
            status = self.send_request_body(body, end_of_stream=True)
        return status

    def respond(self, status: int, headers: Sequence[tuple[str, str]] = (), body: bytes = b"",
                chunk: int | None = None) -> None:
        """Upstream response: headers, then the body in ``chunk``-sized pieces (one by default)."""
        self.send_response_headers([(":status", str(status)), *headers], end_of_stream=not body)
        step = chunk or len(body) or 1
        for i in range(0, len(body), step):
            if self.deleted:
                return
            self.send_response_body(body[i:i + step], end_of_stream=i + step >= len(body))

    def done(self) -> None:
        """The stream is destroyed (it completed, or the client went away): ``proxy_on_log``,
        ``proxy_on_done``, ``proxy_on_delete``. No-op when already done."""
        if self.deleted:
            return
        self.worker.destroy_stream(self)
        self.model.pump()

    # ------------------------------------------------------------------ called by the host functions

    def callback(self, name: str, *args: int) -> tuple[int | None, bool]:
        """Run stream callback ``name`` (creating the in-VM context first, as Envoy's ``onCreate``)."""
        self.ensure_created()
        return self.worker.callback(name, self.id, *args)

    def ensure_created(self) -> None:
        """``proxy_on_context_create(id, root)`` once, before the first callback."""
        if not self.created:
            self.created = True
            self.worker.callback("proxy_on_context_create", self.id, self.root.id)

    def continue_direction(self, request: bool) -> None:
        """Envoy's ``continueDecoding``/``continueEncoding``."""
        if not self.deleted:
            (self.decoder if request else self.encoder).continue_()
            self._maybe_complete()

    def send_local_reply(self, status: int, body: bytes, extra: Pairs, details: str, grpc_status: int) -> None:
        """Envoy's ``sendLocalReply`` for this stream (runs after the VM call that asked for it)."""
        if self.deleted or self.reset_reason is not None:
            return
        if self.local_response is not None or self.encoder.headers_out is not None:
            self.model.violation(f"stream {self.id}: local reply ({status}) after response headers left the filter:"
                                 f" Envoy resets the stream")
            self.reset("local reply after response headers were sent")
            return
        headers = local_reply_headers(status, extra, body)
        is_head = headermap.first(self.decoder.headers or [], ":method") == "HEAD"
        send_body = bool(body) and not is_head
        via_chain = not self.upstream_response_started
        self.local_response = LocalResponse(status, details.replace(" ", "_"), grpc_status, via_chain, self)
        self.model.local_replies.append((self.id, self.local_response))
        self.response_code, self.response_code_details = status, self.local_response.details
        self.decoder.finish()
        if via_chain:
            self.encoder.on_headers(headers, end_stream=not send_body)
            if send_body and not self.deleted:
                self.encoder.on_data(body, end_stream=True)
        else:  # sendDirectLocalReply: straight to the client, the upstream response is dropped
            self.encoder.finish()
            self.encoder.headers_out = headers
            self.encoder.body_out = bytearray(body if send_body else b"")
            self.encoder.end_out = True
            self._maybe_complete()

    def buffer_limit_exceeded(self, request: bool, size: int) -> None:
        """A StopIterationAndBuffer buffer passed ``buffer_limit``: Envoy answers 413 on the
        request path, 500 on the response path (a reset once response headers left)."""
        code, text, details = ((413, b"Payload Too Large", "request_payload_too_large") if request
                               else (500, b"Internal Server Error", "response_payload_too_large"))
        self.model.violation(f"stream {self.id}: {'request' if request else 'response'} buffer {size} B exceeds "
                             f"{self.model.buffer_limit} B: Envoy answers {code}")
        self.send_local_reply(code, text, [], details, -1)

    def reset(self, reason: str) -> None:
        """Envoy resets the stream: nothing more reaches either side, then the stream is destroyed."""
        if self.deleted:
            return
        self.reset_reason = reason
        self.decoder.finish()
        self.encoder.finish()
        self.worker.destroy_stream(self)

    # ------------------------------------------------------------------ internals

    def _maybe_complete(self) -> None:
        if self.encoder.end_out and not self.deleted:
            self.model.complete_later(self)

    def on_end_out(self, request: bool) -> None:
        """A direction's end of stream left the filter; the response's completes the stream."""
        if not request:
            self._maybe_complete()

    def _upstream_response_live(self) -> bool:
        return self.local_response is None and self.reset_reason is None

    def _check_alive(self) -> None:
        if self.deleted:
            raise TestHostError(f"stream {self.id} is gone (proxy_on_delete ran)")


def _status_of(headers: Pairs) -> int | None:
    value = headermap.first(headers, ":status")
    return int(value) if value and value.isdigit() else None
