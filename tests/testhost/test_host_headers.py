"""Which header maps and buffers a filter reaches, and when (Envoy's Context pointers)."""

from __future__ import annotations

from sp_istio_cache.testhost import BufferType, MapType, WasmResult

from .fake_guest import FakeGuest, fake_model

POST = [(":method", "POST"), (":path", "/rpc"), (":authority", "svc"), (":scheme", "http"), ("x-a", "1"),
        ("x-a", "2")]


def _header(g: FakeGuest, ctx: int, t: int, name: bytes) -> tuple[int, bytes]:
    ptr_ptr, size_ptr = g.slot(), g.slot()
    status = g.call("do_get_header", ctx, t, g.put(name), len(name), ptr_ptr, size_ptr)
    return status, g.returned(ptr_ptr, size_ptr) if status == WasmResult.OK else b""


def _body(g: FakeGuest, ctx: int, t: int) -> tuple[int, bytes]:
    ptr_ptr, size_ptr = g.slot(), g.slot()
    status = g.call("do_get_buffer", ctx, t, 0, 1 << 20, ptr_ptr, size_ptr)
    return status, g.returned(ptr_ptr, size_ptr) if status == WasmResult.OK else b""


def test_request_headers_are_reachable_while_held_and_gone_once_continued():
    model = fake_model(concurrency=1)
    g = FakeGuest(model)
    g.knob("req_headers_status", 1)
    g.knob("req_body_status", 1)  # StopIterationAndBuffer
    s = model.new_stream()
    s.send_request_headers(POST, end_of_stream=False)
    assert _header(g, s.id, MapType.HTTP_REQUEST_HEADERS, b"X-A") == (WasmResult.OK, b"1")  # first value
    assert _header(g, s.id, MapType.HTTP_REQUEST_HEADERS, b"absent")[0] == WasmResult.NOT_FOUND
    assert _header(g, s.id, MapType.HTTP_RESPONSE_HEADERS, b":status")[0] == WasmResult.BAD_ARGUMENT
    assert _header(g, model.root_context_id(), MapType.HTTP_REQUEST_HEADERS, b":path")[0] == WasmResult.BAD_ARGUMENT
    s.send_request_body(b"abc", end_of_stream=False)
    s.send_request_body(b"def", end_of_stream=True)
    assert _body(g, s.id, BufferType.HTTP_REQUEST_BODY) == (WasmResult.OK, b"abcdef")  # the whole buffer
    assert _body(g, s.id, BufferType.HTTP_CALL_RESPONSE_BODY)[0] == WasmResult.NOT_FOUND
    assert _body(g, s.id, BufferType.PLUGIN_CONFIGURATION)[0] == WasmResult.NOT_FOUND  # only while configuring
    g.call("do_continue", model.root_context_id(), s.id, 0)
    assert (s.request_headers_after, s.upstream_body) == (POST, b"abcdef")
    assert _header(g, s.id, MapType.HTTP_REQUEST_HEADERS, b":path")[0] == WasmResult.BAD_ARGUMENT
    assert _body(g, s.id, BufferType.HTTP_REQUEST_BODY) == (WasmResult.OK, b"")


def test_continue_on_a_stream_that_is_not_paused_is_a_violation():
    model = fake_model(concurrency=1)
    g = FakeGuest(model)
    s = model.new_stream()
    s.send_request_headers(POST, end_of_stream=True)
    g.call("do_continue", model.root_context_id(), s.id, 0)
    assert model.violations == [f"stream {s.id}: proxy_continue_stream(request) while not paused"]
