"""Issue 11: a backend is untrusted. Entries it returns are served only when their HMAC signature
verifies, their key is the one looked up and they pass replay validation; a CR/LF in a header
name or value never reaches the client (response splitting), signed or not. Answers are made by
hand with the Python reference (sp_istio_cache.entry), as an attacker with backend access would."""

from __future__ import annotations

import dataclasses

import pytest

from sp_istio_cache.entry import replay_violation

from ._entries import WRONG_KEY, answer, candidate, entry_for, request_for, with_signature, without
from ._support import assert_healthy, config, lookups, req

HOSTILE = [
    # (what, status, headers, body, the filter's violation)
    ("CRLF in a value", 200, [("x-a", "a\r\nSet-Cookie: session=attacker")], b"x", "bad_header_value"),
    ("LF in a value", 200, [("x-a", "a\nSet-Cookie: session=attacker")], b"x", "bad_header_value"),
    ("CR in a value", 200, [("x-a", "a\rb")], b"x", "bad_header_value"),
    ("NUL in a value", 200, [("x-a", "a\x00b")], b"x", "bad_header_value"),
    ("CRLF in a name", 200, [("x-a\r\nset-cookie", "session=attacker")], b"x", "bad_header_name"),
    ("space in a name", 200, [("x a", "v")], b"x", "bad_header_name"),
    ("pseudo-header", 200, [(":status", "302")], b"x", "pseudo_header"),
    ("hop-by-hop", 200, [("transfer-encoding", "chunked")], b"x", "hop_by_hop"),
    ("content-length mismatch", 200, [("content-length", "5")], b"x", "content_length_mismatch"),
    ("content-length not digits", 200, [("content-length", "+1")], b"x", "content_length_mismatch"),
    ("interim status", 101, [], b"x", "bad_status"),
    ("status past 599", 600, [], b"x", "bad_status"),
]


@pytest.fixture
def model(make_host):
    return make_host(config())


def _lookup(model, path: str = "/r"):
    s = model.new_stream()
    s.send_request_headers(req("GET", path), True)
    (call,) = [c for c in model.pending_calls if c.path == "/v1/inject"]
    return s, call


def _assert_miss_and_upstream(model, s) -> None:
    assert s.local_response is None and not s.request_paused and s.request_headers_after is not None
    s.respond(200, [], b"origin")
    assert s.cache_status == "MISS" and s.downstream_body == b"origin"
    assert all("attacker" not in v for _, v in s.response_headers_after)
    s.done()


def test_an_entry_signed_by_the_python_reference_is_served_and_then_kept_in_the_l1(model):
    request = request_for()
    s, call = _lookup(model)
    answer(model, call, candidate(request, entry_for(model, request, body=b"genuine")))
    assert (s.cache_status, s.downstream_body) == ("HIT", b"genuine")
    assert model.metric("sp_cache.backend_hit") == 1 and model.metric("sp_cache.l1_insert") == 1
    s2 = model.new_stream(worker=1)
    s2.send_request_headers(req("GET", "/r"), True)
    assert (s2.cache_status, s2.downstream_body) == ("HIT", b"genuine")
    assert model.metric("sp_cache.l1_hit") == 1 and len(lookups(model)) == 1
    assert_healthy(model, s, s2)


@pytest.mark.parametrize("what,status,headers,body,violation", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_signed_entry_that_fails_replay_validation_is_a_miss(model, what, status, headers, body, violation):
    assert replay_violation(status, headers, body) == violation  # the reference agrees it is hostile
    request = request_for()
    s, call = _lookup(model)
    answer(model, call, candidate(request, entry_for(model, request, status, headers, body)))
    _assert_miss_and_upstream(model, s)
    assert model.metric("sp_cache.entry_rejected_syntax") == 1
    assert model.metric("sp_cache.entry_rejected") == 1 and model.metric("sp_cache.entry_rejected_signature") == 0
    assert model.metric("sp_cache.l1_insert") == 0  # nothing of it was kept
    assert_healthy(model, s)


@pytest.mark.parametrize("signature,counter", [("", "entry_rejected_signature"), (None, "entry_rejected_malformed")],
                         ids=["empty signature", "no signature attribute"])
@pytest.mark.parametrize("what,status,headers,body,violation", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_an_unsigned_hostile_entry_is_a_miss(model, what, status, headers, body, violation, signature, counter):
    request = request_for()
    s, call = _lookup(model)
    span = candidate(request, entry_for(model, request, status, headers, body))
    answer(model, call, without(span, "sp.cache.signature") if signature is None else with_signature(span, signature))
    _assert_miss_and_upstream(model, s)
    assert model.metric(f"sp_cache.{counter}") == 1 and model.metric("sp_cache.entry_rejected") == 1
    assert model.metric("sp_cache.entry_rejected_syntax") == 0  # the signature is checked first


def _forged(model, request):
    return candidate(request, entry_for(model, request, body=b"forged", key=WRONG_KEY))


def _tampered(model, request):
    e = entry_for(model, request, body=b"genuine")
    return candidate(request, dataclasses.replace(e, body=b"tampered"))


def _restatused(model, request):
    e = entry_for(model, request, body=b"genuine")
    return candidate(request, dataclasses.replace(e, status=203))


def _retimed(model, request):
    e = entry_for(model, request, body=b"genuine", age_ms=3_600_000)  # an old genuine entry made to look new
    return candidate(request, dataclasses.replace(e, response_time_ms=e.response_time_ms + 3_600_000))


def _unsigned(model, request):
    return with_signature(candidate(request, entry_for(model, request, body=b"unsigned")), "")


def _empty_signature(model, request):
    return candidate(request, dataclasses.replace(entry_for(model, request), signature="0" * 64))


@pytest.mark.parametrize("make", [_forged, _tampered, _restatused, _retimed, _unsigned, _empty_signature])
def test_a_forged_tampered_or_unsigned_entry_is_never_served(model, make):
    request = request_for()
    s, call = _lookup(model)
    answer(model, call, make(model, request))
    _assert_miss_and_upstream(model, s)
    assert model.metric("sp_cache.entry_rejected_signature") == 1
    assert model.metric("sp_cache.backend_hit") == 0 and model.metric("sp_cache.l1_insert") == 0


def test_a_genuine_entry_of_another_key_is_never_served(model):
    other = request_for("/other")
    s, call = _lookup(model, "/r")
    answer(model, call, candidate(other, entry_for(model, other, body=b"other's")))
    _assert_miss_and_upstream(model, s)
    assert model.metric("sp_cache.entry_rejected_key") == 1


def test_a_candidate_with_a_repeated_attribute_is_malformed(model):
    request = request_for()
    span = candidate(request, entry_for(model, request))
    span.attributes.append(span.attributes[-1])  # sp.cache.signature twice
    s, call = _lookup(model)
    answer(model, call, span)
    _assert_miss_and_upstream(model, s)
    assert model.metric("sp_cache.entry_rejected_malformed") == 1


def test_the_valid_candidate_is_served_when_a_newer_one_is_forged(model):
    request = request_for()
    s, call = _lookup(model)
    newer = dataclasses.replace(entry_for(model, request, body=b"forged", key=WRONG_KEY))
    answer(model, call, candidate(request, newer), candidate(request, entry_for(model, request, body=b"genuine",
                                                                                age_ms=1_000)))
    assert (s.cache_status, s.downstream_body) == ("HIT", b"genuine")
    assert model.metric("sp_cache.entry_rejected_signature") == 1


def test_an_old_genuine_entry_replayed_by_the_backend_is_stale_not_fresh(model):
    request = request_for()
    s, call = _lookup(model)
    answer(model, call, candidate(request, entry_for(model, request, body=b"old", age_ms=3_600_000)))
    _assert_miss_and_upstream(model, s)
    assert model.metric("sp_cache.miss_stale") == 1  # the signed times say it is an hour old


def test_a_hit_never_replays_a_header_that_could_split_the_response(model):
    request = request_for()
    s, call = _lookup(model)
    ok = entry_for(model, request, headers=[("cache-control", "max-age=60"), ("x-note", "caf\xe9 \t obs-text")])
    answer(model, call, candidate(request, ok))
    assert s.cache_status == "HIT"
    for k, v in s.response_headers_after:
        assert not set(k + v) & {"\r", "\n", "\x00"}
