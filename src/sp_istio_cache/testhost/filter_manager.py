"""One direction of an HTTP stream through the filter, as Envoy's filter manager drives it
(``source/common/http/filter_manager.cc`` with the Wasm filter's ``Context::decode*/encode*``).

The request direction (decode: client -> upstream) and the response direction (encode: upstream or
local reply -> client) follow the same rules:

- headers: Continue passes them on; StopIteration holds them while body callbacks keep coming;
  StopAllIteration{AndBuffer,AndWatermark} holds them AND the body: Envoy buffers what arrives and
  calls no body callback until the filter continues. Without ``allow_on_headers_stop_iteration``
  (Envoy's default, and Istio's WasmPlugin) a StopIteration from headers is turned into
  StopAllIterationAndWatermark (proxy-wasm-cpp-host ``convertVmCallResultToFilterHeadersStatus``), so
  a filter that waits for the body before continuing hangs the stream: :attr:`Direction.hung`.
- body: Continue passes the data (after any held headers and buffered data); StopIterationAndBuffer
  buffers, the next callback then sees the whole buffer, and past ``buffer_limit`` Envoy answers
  413 (request) or 500 (response); StopIterationAndWatermark buffers but shows only the new chunk
  and pushes back on the sender past the limit (no error); StopIterationNoBuffer drops the chunk.
- a callback in which the filter sent a local reply counts as StopAll (``stopNextIteration``).
- ``proxy_continue_stream`` (Envoy's ``continueDecoding``/``continueEncoding``) releases held headers and
  buffered data; after a StopAll, the filter's own body callback first gets everything buffered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .abi import DataStatus, HeadersStatus, TrailersStatus
from .headermap import Pairs

if TYPE_CHECKING:
    from .stream import Stream


def envoy_headers_status(raw: int | None, stopped: bool, allow_stop_iteration: bool) -> HeadersStatus:
    """What Envoy does with a headers callback's return value (None: the export is missing)."""
    if raw is None:
        return HeadersStatus.CONTINUE
    if stopped or raw > HeadersStatus.STOP_ALL_ITERATION_AND_WATERMARK:
        return HeadersStatus.STOP_ALL_ITERATION_AND_WATERMARK
    if raw == HeadersStatus.STOP_ITERATION and not allow_stop_iteration:
        return HeadersStatus.STOP_ALL_ITERATION_AND_WATERMARK
    if raw == HeadersStatus.CONTINUE_AND_END_STREAM:
        return HeadersStatus.CONTINUE  # Envoy's convertFilterHeadersStatus: default -> Continue
    return HeadersStatus(raw)


def envoy_data_status(raw: int | None, stopped: bool) -> DataStatus:
    """What Envoy does with a body callback's return value."""
    if raw is None:
        return DataStatus.CONTINUE
    if stopped or raw > DataStatus.STOP_ITERATION_NO_BUFFER:
        return DataStatus.STOP_ITERATION_NO_BUFFER
    return DataStatus(raw)


class Direction:
    """The request (``request=True``) or response direction of one stream.

    Attributes:
        headers: the live header map the filter reads and edits.
        headers_out: the headers as they left the filter (went upstream / reached the client),
            None while held or never sent.
        body_out: body bytes that left the filter.
        trailers_out: trailers that left the filter.
        end_out: the end of stream left the filter.
        stopped_all: a headers callback stopped ALL iteration while a body was still to come.
        watermark_hits: times the buffered data passed the limit under a watermark stop
            (Envoy pushes back on the sender; no error).
    """

    def __init__(self, stream: Stream, request: bool):
        self.stream = stream
        self.request = request
        side = "request" if request else "response"
        self._on_headers, self._on_body, self._on_trailers = (
            f"proxy_on_{side}_headers", f"proxy_on_{side}_body", f"proxy_on_{side}_trailers")
        self.headers: Pairs | None = None
        self.headers_out: Pairs | None = None
        self.trailers: Pairs | None = None
        self.trailers_out: Pairs | None = None
        self.body_out = bytearray()
        self.end_in = False
        self.end_out = False
        self.finished = False  # a local reply or reset ended this direction
        self.held = False
        self.stop_all = False
        self.stop_all_buffer = False
        self.stopped_all = False
        self.buffer = bytearray()
        self.buffering = False  # StopIterationAndBuffer: the next callback sees the whole buffer
        self.streaming_buffer = False  # buffered under a watermark stop: no limit reply
        self.watermark_hits = 0
        self.chunk: bytes | None = None
        self.in_headers = False
        self.in_body = False
        self.in_trailers = False
        self.in_callback = False
        self.continue_pending = False
        self.trailers_waiting: Pairs | None = None
        self.trailers_held = False
        self.headers_detached = False

    # ------------------------------------------------------------------ state

    @property
    def paused(self) -> bool:
        """The filter holds headers, data or trailers in this direction."""
        return not self.finished and (self.held or self.stop_all or bool(self.buffer) or self.buffering
                                      or self.trailers_held)

    @property
    def hung(self) -> bool:
        """The headers stopped ALL iteration while a body was to follow, the whole body has
        arrived in Envoy's buffer, and the filter has not continued: the filter never saw that body
        and, unless something else continues it, the stream waits until a timeout."""
        return not self.finished and self.stop_all and self.stopped_all and self.end_in and not self.end_out

    def body_visible(self) -> bytes | None:
        """``HTTP_*_BODY`` as the filter reads it now (Envoy's ``getBuffer``)."""
        if self.buffering:
            return bytes(self.buffer)
        if self.chunk is not None:
            return self.chunk
        return b""

    def set_body(self, data: bytes) -> None:
        """Replace what :meth:`body_visible` shows (``proxy_set_buffer_bytes``)."""
        if self.buffering:
            self.buffer = bytearray(data)
        else:
            self.chunk = data

    def map_live(self, trailers: bool) -> bool:
        """Whether the headers (or trailers) map is reachable: in its callback or held."""
        if trailers:
            return self.trailers is not None and (self.in_trailers or self.trailers_held)
        return self.headers is not None and not self.headers_detached and (self.in_headers or self.held)

    def detach(self) -> None:
        """``proxy_continue_stream`` drops the request maps at once (Envoy's ``continueStream`` nulls
        ``request_headers_`` and the body pointer before the deferred continue runs)."""
        self.headers_detached = True
        self.chunk = None

    # ------------------------------------------------------------------ events from the sender

    def on_headers(self, headers: Pairs, end_stream: bool) -> HeadersStatus:
        """Headers reach the filter; returns the status Envoy acts on."""
        self.headers = headers
        self.end_in = end_stream
        self.in_headers = True
        try:
            raw, stopped = self._callback(self._on_headers, len(headers), int(end_stream))
        finally:
            self.in_headers = False
        status = envoy_headers_status(raw, stopped, self.stream.model.allow_on_headers_stop_iteration)
        if self.finished:
            return status
        if status == HeadersStatus.CONTINUE:
            self._pass_headers()
        else:
            self.held = True
            if status != HeadersStatus.STOP_ITERATION:
                self.stop_all = True
                self.stop_all_buffer = status == HeadersStatus.STOP_ALL_ITERATION_AND_BUFFER
                self.stopped_all = self.stopped_all or not end_stream
        self._after_callback()
        return status

    def on_data(self, chunk: bytes, end_stream: bool) -> DataStatus | None:
        """A body chunk arrives; returns the status Envoy acts on, or None when the filter is not
        called (stopped all, finished, or the buffer limit answered first)."""
        if self.finished:
            return None
        self.end_in = end_stream
        if self.stop_all:
            self.buffer += chunk
            self._check_limit(streaming=not self.stop_all_buffer)
            return None
        return self._data(bytes(chunk), end_stream)

    def on_trailers(self, trailers: Pairs) -> TrailersStatus | None:
        """Trailers arrive (they end the stream)."""
        if self.finished:
            return None
        self.end_in = True
        if self.stop_all:
            self.trailers_waiting = trailers
            return None
        return self._trailers(trailers)

    # ------------------------------------------------------------------ filter actions

    def continue_(self) -> None:
        """Envoy's ``continueDecoding``/``continueEncoding`` (already deferred past the VM call)."""
        if self.finished:
            return
        if self.in_callback:
            self.continue_pending = True
            return
        if not self.paused:
            side = "request" if self.request else "response"
            self.stream.model.violation(f"stream {self.stream.id}: proxy_continue_stream({side}) while not paused")
            return
        was_stop_all, self.stop_all = self.stop_all, False
        if self.held:
            self.held = False
            self.headers_out = list(self.headers or [])
            if self.end_in and not self.buffer and self.trailers is None and self.trailers_waiting is None:
                self._mark_end()
        if was_stop_all and self.buffer:  # Envoy iterates from this filter: its body callback first
            data, self.buffer = bytes(self.buffer), bytearray()
            self._data(data, self.end_in and self.trailers_waiting is None)
        else:
            self._release_buffer(end=self.end_in and self.trailers is None and self.trailers_waiting is None)
        waiting, self.trailers_waiting = self.trailers_waiting, None
        if waiting is not None and not self.finished:
            self._trailers(waiting)
        elif self.trailers_held:
            self._pass_trailers()

    def finish(self) -> None:
        """A local reply or a reset ends this direction: no more callbacks, nothing held."""
        self.finished = True
        self.held = self.stop_all = self.buffering = self.trailers_held = False
        self.buffer = bytearray()

    # ------------------------------------------------------------------ internals

    def _callback(self, name: str, *args: int) -> tuple[int | None, bool]:
        self.in_callback = True
        try:
            raw, stopped = self.stream.callback(name, *args)
        finally:
            self.in_callback = False
        self.stream.actions.append((name.removeprefix("proxy_on_"), raw))
        return raw, stopped

    def _after_callback(self) -> None:
        if self.continue_pending:
            self.continue_pending = False
            self.continue_()

    def _data(self, chunk: bytes, end_stream: bool) -> DataStatus | None:
        in_buffer = self.buffering
        if in_buffer:
            self.buffer += chunk
            if self._check_limit(streaming=False):
                return None
        else:
            self.chunk = chunk
        size = len(self.buffer) if in_buffer else len(chunk)
        self.in_body = True
        try:
            raw, stopped = self._callback(self._on_body, size, int(end_stream))
        finally:
            self.in_body = False
        status = envoy_data_status(raw, stopped)
        chunk = self.chunk if self.chunk is not None else chunk  # the filter may have rewritten it
        self.chunk = None
        if self.finished:
            return status
        if status == DataStatus.CONTINUE:
            if not in_buffer:
                self.buffer += chunk
            if self.held:
                self.held = False
                self.headers_out = list(self.headers or [])
            self._release_buffer(end=end_stream)
        elif status == DataStatus.STOP_ITERATION_AND_BUFFER:
            if not in_buffer:
                self.buffer += chunk
            self.buffering, self.streaming_buffer = True, False
            self._check_limit(streaming=False)
        elif status == DataStatus.STOP_ITERATION_AND_WATERMARK:
            if not in_buffer:
                self.buffer += chunk
            self.buffering, self.streaming_buffer = False, True
            self._check_limit(streaming=True)
        else:  # StopIterationNoBuffer: the chunk is the filter's now; Envoy forwards nothing
            self.buffering = False
        self._after_callback()
        return status

    def _trailers(self, trailers: Pairs) -> TrailersStatus | None:
        self.trailers = trailers
        self.in_trailers = True
        try:
            raw, stopped = self._callback(self._on_trailers, len(trailers))
        finally:
            self.in_trailers = False
        status = TrailersStatus.STOP_ITERATION if (stopped or (raw or 0) > 1) else TrailersStatus(raw or 0)
        if self.finished:
            return status
        if status == TrailersStatus.CONTINUE:
            if self.paused:
                self.trailers_held = True
                self.continue_()
            else:
                self._pass_trailers()
        else:
            self.trailers_held = True
        self._after_callback()
        return status

    def _mark_end(self) -> None:
        self.end_out = True
        self.stream.on_end_out(self.request)

    def _pass_headers(self) -> None:
        self.held = False
        self.headers_out = list(self.headers or [])
        if self.end_in:
            self._mark_end()

    def _pass_trailers(self) -> None:
        self.trailers_held = False
        self.trailers_out = list(self.trailers or [])
        self._mark_end()

    def _release_buffer(self, end: bool) -> None:
        self.body_out += self.buffer
        self.buffer = bytearray()
        self.buffering = self.streaming_buffer = False
        if end:
            self._mark_end()

    def _check_limit(self, streaming: bool) -> bool:
        """Past ``buffer_limit``: back-pressure (streaming) or Envoy's 413/500. True when the
        stream got Envoy's error reply."""
        limit = self.stream.model.buffer_limit
        if len(self.buffer) <= limit:
            return False
        if streaming:
            self.watermark_hits += 1
            return False
        self.stream.buffer_limit_exceeded(self.request, len(self.buffer))
        return True
