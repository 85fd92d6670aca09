"""Property tests: arbitrary lookup answers and arbitrary callback sequences never trap, hang or leak.

These pin ``callout_context="caller"`` so the answer reaches the stream whatever the filter's
routing does (routing is covered by test_rules); they target the decoder and the state machine.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sp_istio_cache.otlp import CachedResponse, MalformedSpan, decode_hit, encode_hit
from sp_istio_cache.testhost import ProxyWasmHost

from ._support import req

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_valid_hits = st.builds(
    lambda status, headers, body, age: encode_hit(CachedResponse(status, headers, body), age),
    st.integers(100, 599),
    st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
                    st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20), min_size=1, max_size=3),
                    max_size=4),
    st.binary(max_size=300),
    st.integers(0, 10**6),
)


@st.composite
def _mutated_hit(draw):
    data = bytearray(draw(_valid_hits))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "insert"]))
        if op == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)):]
        elif op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        else:
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


lookup_bodies = st.one_of(st.binary(max_size=512), _valid_hits, _mutated_hit())


def _host(module) -> ProxyWasmHost:
    host = ProxyWasmHost(plugin_config={}, module=module, callout_context="caller")
    assert host.start()
    return host


@SETTINGS
@given(body=lookup_bodies)
def test_arbitrary_lookup_answer_never_traps(filter_module, body):
    host = _host(filter_module)
    s = host.new_stream()
    s.send_request_headers(req(), True)
    host.respond_http_call(host.pending_calls[0], 200, body)
    try:
        expected, _ = decode_hit(body)
    except (MalformedSpan, ValueError):
        expected = None
    if s.local_response is not None:
        assert expected is not None, "the filter served a HIT from a body the protocol says is undecodable"
        assert (s.local_response.status, s.local_response.body) == (expected.status, expected.body)
        assert s.cache_status == "HIT"
    else:
        assert not s.request_paused
        s.respond(200, [], b"x")
        assert s.cache_status == "MISS"
    s.done()
    assert host.violations == []
    assert host.metric("sp_cache.buffered_body_bytes") == 0


_names = st.sampled_from(["accept", "authorization", "cache-control", "content-type", "if-none-match", "vary",
                          "set-cookie", "traceparent", "content-length", "expires", "x-a", "upgrade", "connection"])
_values = st.one_of(st.sampled_from(["no-store", "private", "max-age=5", "s-maxage=x", "*", "application/grpc",
                                     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "0", "5",
                                     "Tue, 14 Nov 2023 22:15:20 GMT", ""]),
                    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30))
_headers = st.lists(st.tuples(_names, _values), max_size=6)
_chunks = st.lists(st.binary(max_size=3000), max_size=4)


@st.composite
def exchanges(draw):
    return dict(
        method=draw(st.sampled_from(["GET", "HEAD", "POST", "PUT", "CONNECT"])),
        path=draw(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)),
        req_headers=draw(_headers),
        req_body=draw(_chunks),
        answer=draw(st.sampled_from(["404", "hit", "fail", "timeout", "500", "garbage", "late"])),
        status=draw(st.sampled_from([200, 204, 304, 404, 500])),
        resp_headers=draw(_headers),
        resp_body=draw(_chunks),
    )


def _run_exchange(host: ProxyWasmHost, ex: dict) -> None:
    s = host.new_stream()
    body = ex["req_body"]
    s.send_request_headers(req(ex["method"], "/" + ex["path"], *ex["req_headers"]), end_of_stream=not body)
    for i, chunk in enumerate(body):
        s.send_request_body(chunk, end_of_stream=i == len(body) - 1)
    steps = 0
    while host.pending_calls and steps < 10:  # bounded: each answer may trigger at most a store
        steps += 1
        call = host.pending_calls[0]
        kind = ex["answer"] if call.path == "/v1/inject" else "200"
        if kind == "late":
            s.done()
            host.respond_http_call(call, 404)
            continue
        if kind == "404":
            host.respond_http_call(call, 404)
        elif kind == "hit":
            host.respond_http_call(call, 200, encode_hit(CachedResponse(200, {"x": ["1"]}, b"cached"), 3))
        elif kind == "fail":
            host.fail_http_call(call)
        elif kind == "timeout":
            host.timeout_http_call(call)
        elif kind == "500":
            host.respond_http_call(call, 500, b"oops")
        elif kind == "garbage":
            host.respond_http_call(call, 200, b"\x0a\xff\xff\xff\xff\x0f")
        else:
            host.respond_http_call(call, 200)
    assert steps < 10, "callouts keep coming: the filter loops"
    if not s.deleted:
        assert not s.request_paused, "request still held after every callout was answered"
        if s.local_response is None:
            resp = ex["resp_body"]
            s.send_response_headers([(":status", str(ex["status"])), *ex["resp_headers"]], end_of_stream=not resp)
            for i, chunk in enumerate(resp):
                s.send_response_body(chunk, end_of_stream=i == len(resp) - 1)
        s.done()
    for call in host.pending_calls:
        host.respond_http_call(call, 200)


@SETTINGS
@given(ex=exchanges())
def test_arbitrary_exchanges_never_trap_or_hang(filter_module, ex):
    host = _host(filter_module)
    _run_exchange(host, ex)
    _run_exchange(host, ex)  # and the next request on the same VM works
    assert host.violations == []
    assert host.metric("sp_cache.buffered_body_bytes") == 0


@settings(max_examples=1, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed_examples=st.lists(exchanges(), min_size=20, max_size=20))
def test_guest_memory_does_not_grow_across_many_streams(filter_module, seed_examples):
    host = _host(filter_module)
    for _ in range(5):  # warm-up: the allocator reaches its working set
        for ex in seed_examples:
            _run_exchange(host, ex)
    before = host.memory_bytes
    for _ in range(25):
        for ex in seed_examples:
            _run_exchange(host, ex)
    assert host.memory_bytes == before, f"guest memory grew from {before} to {host.memory_bytes} bytes over 500 streams"
    assert host.violations == []


# Found by test_arbitrary_lookup_answer_never_traps: protobuf says "wire format was corrupt",
# the filter's decoder serves it as a HIT (status 100).
CORRUPT_HIT = (
    b'\n\xa2\x02\n \n \n\x0cservice.name\x12\x10\n\x0esp-istio-cache\x12\xfb\x01\n\x17\n\x0esp-istio-cache\x12'
    b'\x050.1.0\x12\xdf\x01\n\x10\xa7\xa5b\x15v\xe9\x88\xc4NlK\xcfR~7M\x12\x08qD\xe9Eg\xc3=\n*\tcache-hit0\x03'
    b'95yY|\xb4\xa7\xec\x18A5yY|\xb4\xa7\xec\x18J\x18\n\x0csp.span.type\x12\x08\n\x06injectJ\x1f\n\x19'
    b'http.response.status_code\x12\x02\x18dJ!\n\x17http.response.header.a0\x12\x06*\x04\n\x02\n\x00J(\n\x16'
    b'http.response.header.a\x12\x0e*\x0c\n\x02\n\x00\n\x02\n\x00\n\x02\n\x00J\x1a\n\x14sp.cache.age_seconds'
    b'\x12\x02\x18\x00'
)


def test_corrupt_traces_data_is_not_served(filter_module):
    try:
        decode_hit(CORRUPT_HIT)
        raise AssertionError("reference decoder accepts it")
    except MalformedSpan:
        pass
    host = _host(filter_module)
    s = host.new_stream()
    s.send_request_headers(req(), True)
    host.respond_http_call(host.pending_calls[0], 200, CORRUPT_HIT)
    assert s.local_response is None and host.metric("sp_cache.lookup_error") == 1
