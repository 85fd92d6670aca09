"""Property tests (hypothesis): the lookup-answer decoder and the replay path, fed CR, LF, NUL,
bytes that are not UTF-8, huge header and span counts and random bytes, never trap the VM, never
hang a request and never serve an entry that is unsigned, forged, of another key or invalid for
replay; arbitrary exchanges never trap, hang or leak buffered bytes."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sp_istio_cache.entry import Entry, Envelope, replay_violation, signed_entry, traces_data
from sp_istio_cache.testhost import EnvoyModel
from sp_istio_cache.testhost.headermap import raw, text

from ._entries import WRONG_KEY, candidate, request_for, with_signature, without
from ._support import SIGNING_KEY, config, now_ms, req

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PATH = "/items?id=7"
NASTY = "\r\n\x00 :;,\"\té\x7f"

_names = st.one_of(st.sampled_from(["x-a", "content-type", "content-length", "transfer-encoding", "set-cookie",
                                    ":status", "vary", "x-sp-cache", "age", "connection"]),
                   st.text(st.sampled_from("abc-" + NASTY), min_size=0, max_size=8))
_values = st.one_of(st.binary(max_size=24), st.text(st.sampled_from("ab0 " + NASTY), max_size=12).map(str.encode),
                    st.sampled_from([b"max-age=60", b"no-store", b"1", b"*", b"accept-language"]))


@st.composite
def _candidates(draw, model: EnvoyModel):
    path = draw(st.sampled_from([PATH, PATH, "/other"]))  # mostly the key looked up
    request = request_for(path)
    headers = draw(st.lists(st.tuples(_names, _values), max_size=draw(st.sampled_from([0, 2, 6]))))
    freshness = ["max-age=60"] * 4 + ["max-age=0", "no-cache", "s-maxage=5"]
    headers.append(("cache-control", draw(st.sampled_from(freshness))))
    status = draw(st.sampled_from([200, 200, 204, 404, 500, 100, 199, 600, 65535]))
    body = draw(st.binary(max_size=64))
    key = draw(st.sampled_from([SIGNING_KEY, SIGNING_KEY, WRONG_KEY]))
    t = now_ms(model) - draw(st.sampled_from([0, 0, 1_000, 59_999, 60_000, 120_000]))
    try:
        entry = signed_entry(request, status, headers, body, key, request_time_ms=t, response_time_ms=t)
    except ValueError:  # Vary: * has no variant
        entry = Entry(request.key, "", status, t, t, tuple((n, v) for n, v in headers), body).signed(key)
    span = candidate(request, entry)
    tamper = draw(st.sampled_from(["none"] * 5 + ["unsigned", "empty signature", "body"]))
    if tamper == "unsigned":
        span = without(span, "sp.cache.signature")
    elif tamper == "empty signature":
        span = with_signature(span, "")
    elif tamper == "body":
        span = candidate(request, dataclasses.replace(entry, body=entry.body + b"!"))
    genuine = key == SIGNING_KEY and tamper == "none" and path == PATH
    return span, entry, genuine


@st.composite
def _answers(draw, model: EnvoyModel):
    drawn = draw(st.lists(_candidates(model), min_size=1, max_size=4))
    spans = [d[0] for d in drawn]
    filler = draw(st.sampled_from([0, 0, 0, 61]))  # past 64 spans the whole answer is refused
    spans += [spans[0]] * filler
    data = bytearray(traces_data(spans, Envelope()))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        op = draw(st.sampled_from(["truncate", "flip", "insert"]))
        if op == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)):]
        elif op == "flip" and data:
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        else:
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    servable = [e for (_, e, genuine) in drawn if genuine and replay_violation(e.status, e.headers, e.body) is None]
    return bytes(data), servable


def _model(module) -> EnvoyModel:
    model = EnvoyModel(plugin_config=config(), module=module)
    assert model.start()
    return model


def _check_served(s, servable: list[Entry]) -> None:
    for name, value in s.response_headers_after or []:
        assert not set(raw(name) + raw(value)) & {0x0D, 0x0A, 0x00}, (name, value)
    if s.local_response is None:
        return
    served = [e for e in servable if e.status == s.local_response.status and e.body == s.downstream_body
              or s.local_response.status == 304]
    assert served, f"served {s.local_response.status} {s.downstream_body!r}, not a genuine valid candidate"


@SETTINGS
@given(data=st.data())
def test_a_lookup_answer_never_traps_and_only_a_genuine_valid_entry_is_served(filter_module, data):
    model = _model(filter_module)
    s = model.new_stream()
    s.send_request_headers(req("GET", PATH), True)
    if data.draw(st.sampled_from([True, True, True, False])):
        body, servable = data.draw(_answers(model))
    else:
        body, servable = data.draw(st.binary(max_size=600)), []
    model.respond_http_call(model.pending_calls[0], [(":status", "200")], body)
    assert not s.request_paused
    event("served" if s.local_response is not None else "miss")
    _check_served(s, servable)
    if s.local_response is None:
        s.respond(200, [], b"origin")
        assert s.cache_status == "MISS" and s.downstream_body == b"origin"
    s.done()
    assert model.violations == [] and model.metric("sp_cache.buffered_body_bytes") == 0


_response_headers = st.lists(st.tuples(_names.filter(lambda n: n and not n.startswith(":")), _values), max_size=6)


@SETTINGS
@given(headers=_response_headers, body=st.binary(max_size=200), status=st.sampled_from([200, 203, 301, 404, 410]))
def test_whatever_the_origin_sent_a_replay_is_valid_and_exact(filter_module, headers, body, status):
    model = _model(filter_module)
    origin = [("cache-control", "max-age=60"), *[(n, text(v)) for n, v in headers]]
    first = model.new_stream(worker=0)
    first.send_request_headers(req("GET", PATH), True)
    model.respond_http_call(model.pending_calls[0], 404)
    first.respond(status, origin, body)  # the origin's own answer passes as the origin sent it
    first.done()
    for call in model.pending_calls:
        model.respond_http_call(call, 200)
    replay = model.new_stream(worker=1)
    replay.send_request_headers(req("GET", PATH), True)
    event("replayed" if replay.local_response is not None else "not stored")
    if replay.local_response is not None:  # an L1 hit: exact status and body, only valid fields
        assert (replay.local_response.status, replay.downstream_body) == (status, body)
        sent = {(raw(n).lower(), raw(v)) for n, v in origin}
        for name, value in replay.response_headers_after:
            assert not set(raw(name) + raw(value)) & {0x0D, 0x0A, 0x00}, (name, value)
            if name not in (":status", "age", "x-sp-cache", "content-length", "content-type"):
                assert (raw(name), raw(value)) in sent, (name, value)
    else:
        for call in model.pending_calls:
            model.respond_http_call(call, 404)
        replay.respond(200, [], b"again")
    replay.done()
    assert model.violations == [] and model.metric("sp_cache.buffered_body_bytes") == 0


_req_names = st.sampled_from(["accept", "authorization", "cache-control", "content-type", "if-none-match", "range",
                              "traceparent", "pragma", "accept-encoding", "x-a", "upgrade", "x-note"])
_req_values = st.one_of(st.sampled_from(["no-store", "no-cache", "max-age=0", "max-stale", "only-if-cached", "gzip",
                                         "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", '"v1"', "*",
                                         "bytes=0-1", "application/grpc", ""]),
                        st.binary(max_size=16).map(text))
_chunks = st.lists(st.binary(max_size=2000), max_size=3)


@st.composite
def _exchanges(draw):
    return dict(
        method=draw(st.sampled_from(["GET"] * 6 + ["HEAD", "POST", "PUT", "DELETE", "CONNECT"])),
        path=draw(st.sampled_from(["/a", "/a", "/b"])),
        req_headers=draw(st.lists(st.tuples(_req_names, _req_values), max_size=draw(st.sampled_from([0, 0, 2, 4])))),
        req_body=draw(_chunks) if draw(st.integers(0, 4)) == 0 else [],
        answer=draw(st.sampled_from(["404", "404", "hit", "forged", "reset", "timeout", "500", "garbage", "late"])),
        status=draw(st.sampled_from([200, 204, 304, 404, 500, 503])),
        resp_headers=[("cache-control", draw(st.sampled_from(["max-age=60", "max-age=60", "no-store", "no-cache",
                                                               "max-age=1, stale-if-error=60", "private"])))]
        + draw(st.lists(st.tuples(st.sampled_from(["etag", "vary", "set-cookie", "age", "content-encoding", "location",
                                                   "x-b"]), _req_values), max_size=3)),
        resp_body=draw(_chunks),
        advance=draw(st.sampled_from([0, 1, 30_000])),
        worker=draw(st.integers(0, 1)),
    )


def _answer(model: EnvoyModel, call, kind: str, s, path: str) -> None:
    request = request_for(path)
    t = now_ms(model)
    if kind == "404":
        model.respond_http_call(call, 404)
    elif kind in ("hit", "forged"):
        key = SIGNING_KEY if kind == "hit" else WRONG_KEY
        e = signed_entry(request, 200, [("cache-control", "max-age=60")], b"cached", key, request_time_ms=t,
                         response_time_ms=t)
        model.respond_http_call(call, [(":status", "200")], traces_data([candidate(request, e)], Envelope()))
    elif kind == "reset":
        model.fail_http_call(call)
    elif kind == "timeout":
        model.timeout_http_call(call)
    elif kind == "500":
        model.respond_http_call(call, 500, b"oops")
    elif kind == "garbage":
        model.respond_http_call(call, 200, b"\x0a\xff\xff\xff\xff\x0f")
    else:
        s.done()
        model.respond_http_call(call, 404)


def _run_exchange(model: EnvoyModel, ex: dict) -> None:
    s = model.new_stream(worker=ex["worker"])
    body = ex["req_body"]
    s.send_request_headers(req(ex["method"], ex["path"], *ex["req_headers"]), end_of_stream=not body)
    for i, chunk in enumerate(body):
        s.send_request_body(chunk, end_of_stream=i == len(body) - 1)
    for _ in range(10):
        lookups = [c for c in model.pending_calls if c.path == "/v1/inject"]
        if not lookups:
            break
        _answer(model, lookups[0], ex["answer"], s, ex["path"])
    model.advance(6)  # a waiting request rechecks on its tick
    if not s.deleted:
        assert not s.hung, "request hung"
        if s.local_response is None and s.request_headers_after is not None:
            resp = ex["resp_body"]
            s.send_response_headers([(":status", str(ex["status"])), *ex["resp_headers"]], end_of_stream=not resp)
            for i, chunk in enumerate(resp):
                if s.deleted:
                    break
                s.send_response_body(chunk, end_of_stream=i == len(resp) - 1)
        s.done()
    for call in model.pending_calls:
        if call.path != "/v1/inject":
            model.respond_http_call(call, 200)
    model.advance(ex["advance"])


@SETTINGS
@given(exchanges=st.lists(_exchanges(), min_size=1, max_size=6))
def test_arbitrary_exchanges_never_trap_hang_or_leak(filter_module, exchanges):
    model = _model(filter_module)
    for ex in exchanges:
        _run_exchange(model, ex)
    for name in ("l1_hit", "backend_hit", "coalesced", "revalidated", "not_modified", "hit_for_pass"):
        if model.metric(f"sp_cache.{name}"):
            event(name)
    for call in list(model.pending_calls):
        model.respond_http_call(call, 404)
    model.advance(6_000)  # every waiter's deadline passed
    assert model.violations == [], model.violations
    assert model.metric("sp_cache.buffered_body_bytes") == 0
    assert model.hung_streams == [] and [s for s in model.streams if s.request_paused] == []


def test_an_entry_with_more_header_values_than_proxy_wasm_accepts_is_not_replayed_headerless(filter_module):
    """Envoy's Wasm host takes at most 1,024 pairs in a header map: an entry with more values (even
    signed) fails replay validation (too_many_headers, over 512) and the origin answers."""
    model = _model(filter_module)
    s = model.new_stream()
    s.send_request_headers(req("GET", PATH), True)
    request_ = request_for(PATH)
    t = now_ms(model)
    headers = [("cache-control", "max-age=60")] + [(f"x-h{i}", "v") for i in range(1030)]
    e = signed_entry(request_, 200, headers, b"b", SIGNING_KEY, request_time_ms=t, response_time_ms=t)
    model.respond_http_call(model.pending_calls[0], [(":status", "200")], traces_data([candidate(request_, e)],
                                                                                     Envelope()))
    assert s.local_response is None and not s.request_paused
    s.respond(200, [("cache-control", "max-age=60")], b"origin")
    assert model.violations == [] and s.cache_status == "MISS" and s.downstream_body == b"origin"
    assert model.metric("sp_cache.entry_rejected_syntax") == 1
