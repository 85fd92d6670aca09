"""The filter manager model: pause and continue, StopAllIteration without
allow_on_headers_stop_iteration (the hang), local replies from either path, buffer limits."""

from __future__ import annotations

import pytest

from sp_istio_cache.testhost import DataStatus, HeadersStatus
from sp_istio_cache.testhost.stream import local_reply_headers

from .fake_guest import FakeGuest, events, fake_model

POST = [(":method", "POST"), (":path", "/rpc"), (":authority", "svc"), (":scheme", "http")]
GET = [(":method", "GET"), (":path", "/"), (":authority", "svc"), (":scheme", "http")]


def _stream_events(model, stream) -> list[str]:
    return [name for name, ctx in events(model) if ctx == stream.id]


def test_stop_iteration_with_the_flag_still_delivers_the_body():
    model = fake_model(concurrency=1, allow_on_headers_stop_iteration=True)
    FakeGuest(model).knob("req_headers_status", 1)
    s = model.new_stream()
    assert s.send_request_headers(POST, end_of_stream=False) == HeadersStatus.STOP_ITERATION
    assert s.request_headers_after is None
    assert s.send_request_body(b"abc", end_of_stream=True) == DataStatus.CONTINUE
    assert (s.request_headers_after, s.upstream_body, s.request_end_sent) == (POST, b"abc", True)
    assert not s.hung and not s.decoder.stopped_all


def test_without_the_flag_stop_iteration_stops_all_and_the_body_never_reaches_the_filter():
    model = fake_model(concurrency=1, allow_on_headers_stop_iteration=False)
    g = FakeGuest(model)
    g.knob("req_headers_status", 1)
    s = model.new_stream()
    assert s.send_request_headers(POST, end_of_stream=False) == HeadersStatus.STOP_ALL_ITERATION_AND_WATERMARK
    assert s.send_request_body(b"abc", end_of_stream=False) is None
    assert s.send_request_body(b"def", end_of_stream=True) is None
    assert "request_body" not in _stream_events(model, s)
    assert s.hung and s.decoder.stopped_all and model.hung_streams == [s]
    # once the filter continues, its own body callback gets everything Envoy buffered
    g.call("do_continue", model.root_context_id(), s.id, 0)
    assert _stream_events(model, s).count("request_body") == 1
    assert model.workers[0].contexts[s.id].decoder.end_out
    assert (s.upstream_body, s.hung, model.hung_streams) == (b"abcdef", False, [])


def test_headers_only_request_is_not_a_hang_while_the_filter_waits():
    model = fake_model(concurrency=1, allow_on_headers_stop_iteration=False)
    FakeGuest(model).knob("req_headers_status", 1)
    s = model.new_stream()
    s.send_request_headers(GET, end_of_stream=True)
    assert s.request_paused and not s.hung and not s.decoder.stopped_all


def test_local_reply_from_response_headers_replaces_the_upstream_response():
    model = fake_model(concurrency=1)
    FakeGuest(model).knob("reply_in_resp_headers", 418)
    s = model.new_stream()
    s.send_request_headers(GET, end_of_stream=True)
    s.send_response_headers([(":status", "200"), ("content-type", "application/json")], end_of_stream=False)
    assert s.local_response is not None and not s.local_response.via_filter_chain
    assert s.response_headers_after == [(":status", "418"), ("x-local", "1"), ("content-length", "15"),
                                        ("content-type", "text/plain")]
    assert s.downstream_body == b"from the filter" and s.deleted  # the reply ended the stream
    assert s.send_response_body(b"upstream bytes", end_of_stream=True) is None  # dropped by Envoy
    assert _stream_events(model, s) == ["stream_create", "request_headers", "response_headers", "log", "done",
                                        "delete"]


def test_local_reply_from_request_headers_runs_through_the_filters_response_callbacks():
    model = fake_model(concurrency=1)
    FakeGuest(model).knob("reply_in_req_headers", 403)
    s = model.new_stream()
    s.send_request_headers(GET, end_of_stream=True)
    assert s.local_response.via_filter_chain and s.request_headers_after is None
    assert (s.local_response.status, s.local_response.body) == (403, b"from the filter")
    assert _stream_events(model, s) == ["stream_create", "request_headers", "response_headers", "response_body",
                                        "log", "done", "delete"]


@pytest.mark.parametrize("body_status,reply", [(1, 413), (2, None)])
def test_buffering_the_request_past_the_limit(body_status, reply):
    """StopIterationAndBuffer past the limit gets Envoy's 413 (and a violation); StopIterationAndWatermark
    makes Envoy push back on the client instead."""
    model = fake_model(concurrency=1, buffer_limit=100)
    FakeGuest(model).knob("req_body_status", body_status)
    s = model.new_stream()
    s.send_request_headers(POST, end_of_stream=False)
    s.send_request_body(b"x" * 60, end_of_stream=False)
    s.send_request_body(b"x" * 60, end_of_stream=False)
    if reply is None:
        assert s.local_response is None and s.decoder.watermark_hits == 1 and model.violations == []
    else:
        assert s.local_response.status == 413 and s.downstream_body == b"Payload Too Large"
        assert model.violations == [f"stream {s.id}: request buffer 120 B exceeds 100 B: Envoy answers 413"]


def test_buffering_the_response_past_the_limit_gets_envoys_500_directly():
    model = fake_model(concurrency=1, buffer_limit=100)
    g = FakeGuest(model)
    g.knob("resp_headers_status", 1)
    g.knob("resp_body_status", 1)
    s = model.new_stream()
    s.send_request_headers(GET, end_of_stream=True)
    s.send_response_headers([(":status", "200")], end_of_stream=False)
    s.send_response_body(b"y" * 101, end_of_stream=False)
    assert (s.local_response.status, s.local_response.via_filter_chain) == (500, False)
    assert s.response_headers_after[0] == (":status", "500") and s.downstream_body == b"Internal Server Error"
    assert model.violations == [f"stream {s.id}: response buffer 101 B exceeds 100 B: Envoy answers 500"]


def test_headers_only_response_ends_in_the_headers_callback():
    model = fake_model(concurrency=1)
    s = model.new_stream()
    s.send_request_headers(GET, end_of_stream=True)
    s.send_response_headers([(":status", "204")], end_of_stream=True)
    assert s.deleted and "response_body" not in _stream_events(model, s)


def test_local_reply_headers_follow_envoys_prepare_local_reply():
    assert local_reply_headers(200, [("content-type", "a/b"), ("content-length", "9")], b"12") == [
        (":status", "200"), ("content-type", "a/b"), ("content-length", "2")]
    # an empty body loses content-length AND content-type (issue 11: empty-body hits lose their type)
    assert local_reply_headers(200, [("content-type", "a/b"), ("x", "1")], b"") == [(":status", "200"), ("x", "1")]
