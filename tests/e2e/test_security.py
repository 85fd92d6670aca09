"""Issue 11 through the real Envoy: what someone with the backend key can plant is never served
unless the filter signed it, never splits a response, and bytes that are not UTF-8 never break
the protocol.

Entries are planted straight through the backend's API (``POST /v1/traces`` with the backend key),
built with ``sp_istio_cache.entry`` exactly as the filter builds them. What the client receives is
read as raw bytes from the socket, so a header injected by a CR/LF would show.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.request

import pytest
from e2e_support import Delta, authority, query, raw_exchange, settle, split_wire

from sp_istio_cache.entry import Envelope, Request, signed_entry, store_body
from sp_istio_cache.services import new_secret
from sp_istio_cache.upstream.payload import generate

pytestmark = pytest.mark.envoy

FRESH = ("cache_control", "max-age=60")
POISON = b"POISON-from-the-backend"


def plant(stack, path: str, headers, body: bytes = POISON, *, signing_key: str | None = None,
          tamper=None) -> None:
    """Store an entry for ``GET path`` (the listener's authority) in the stack's backend, signed
    with ``signing_key`` (default: the filter's own), optionally changed after signing."""
    request = Request("GET", "http", authority(stack), path)
    now_ms = int(time.time() * 1000)
    key = (signing_key or stack.signing_key).encode()
    entry = signed_entry(request, 200, headers, body, key, request_time_ms=now_ms, response_time_ms=now_ms)
    if tamper is not None:
        entry = tamper(entry)
    data = store_body(Envelope(), request, entry, retain_seconds=600)
    req = urllib.request.Request(stack.backend.url + "/v1/traces", data=data, method="POST", headers={
        "content-type": "application/x-protobuf", "x-public-key": stack.backend_key})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status in (200, 202)


def wire_get(stack, path: str, extra: bytes = b"") -> bytes:
    return raw_exchange(stack, f"GET {path} HTTP/1.1\r\nhost: {authority(stack)}\r\n".encode()
                        + extra + b"connection: close\r\n\r\n")


SPLITTING = [
    ("crlf-in-value", [("content-type", "text/plain"), ("x-note", "a\r\nSet-Cookie: session=attacker")]),
    ("crlf-in-name", [("content-type", "text/plain"), ("x-a\r\nset-cookie", "session=attacker")]),
    ("lf-in-value", [("content-type", "text/plain"), ("x-note", "a\nSet-Cookie: session=attacker")]),
    ("nul-in-value", [("content-type", "text/plain"), ("x-note", "a\x00Set-Cookie: session=attacker")]),
    ("content-length-lies", [("content-type", "text/plain"), ("content-length", "5")]),
]


@pytest.mark.parametrize("case,headers", SPLITTING, ids=[c[0] for c in SPLITTING])
def test_a_planted_entry_that_would_split_the_response_is_a_miss(rule_stack, case, headers):
    n = 600 + [c[0] for c in SPLITTING].index(case)
    path = f"/bytes/{n}?" + query(FRESH, ("seed", case))
    plant(rule_stack, path, headers + [("cache-control", "max-age=600")])
    d = Delta(rule_stack)
    raw = wire_get(rule_stack, path)
    status, fields, body = split_wire(raw)
    assert (status, body) == (200, generate(n, case))  # the origin's answer
    assert b"set-cookie" not in raw.lower() and b"attacker" not in raw and POISON not in raw
    assert (b"x-sp-cache", b"MISS") in fields
    assert d.filter("entry_rejected_syntax") == 1
    assert d.reasons() == {"entry_rejected": 1}
    assert d.upstream(f"/bytes/{n}") == 1


def _zeros(entry):
    return dataclasses.replace(entry, signature="0" * 64)


def _body_swapped(entry):
    return dataclasses.replace(entry, body=b"POISON-swapped-after-signing")


def _status_swapped(entry):
    return dataclasses.replace(entry, status=500)


FORGED = [
    ("zero-signature", None, _zeros),
    ("another-signing-key", "other", None),
    ("body-changed-after-signing", None, _body_swapped),
    ("status-changed-after-signing", None, _status_swapped),
]


@pytest.mark.parametrize("case,other_key,tamper", FORGED, ids=[c[0] for c in FORGED])
def test_a_planted_entry_without_the_filters_signature_is_never_served(rule_stack, case, other_key, tamper):
    n = 620 + [c[0] for c in FORGED].index(case)
    path = f"/bytes/{n}?" + query(FRESH, ("seed", case))
    plant(rule_stack, path, [("content-type", "text/plain"), ("cache-control", "max-age=600")],
          signing_key=new_secret() if other_key else None, tamper=tamper)
    d = Delta(rule_stack)
    status, fields, body = split_wire(wire_get(rule_stack, path))
    assert (status, body) == (200, generate(n, case))
    assert (b"x-sp-cache", b"MISS") in fields
    assert d.filter("entry_rejected_signature") == 1
    assert d.reasons() == {"entry_rejected": 1}
    assert d.upstream(f"/bytes/{n}") == 1


def test_a_planted_entry_signed_with_the_filters_key_is_served(rule_stack):
    """The control for the two tests above: planting works, and the signature decides."""
    path = "/bytes/640?" + query(FRESH, ("seed", "genuine"))
    plant(rule_stack, path, [("content-type", "text/plain"), ("cache-control", "max-age=600"),
                             ("x-note", "planted")])
    d = Delta(rule_stack)
    status, fields, body = split_wire(wire_get(rule_stack, path))
    assert (status, body) == (200, POISON)
    assert (b"x-note", b"planted") in fields and (b"x-sp-cache", b"HIT") in fields
    assert d.reasons() == {"backend_hit": 1}
    assert d.upstream("/bytes/640") == 0


def test_header_bytes_that_are_not_utf8_are_looked_up_and_stored(rule_stack):
    path = "/bytes/650?" + query(FRESH, ("vary", "X-Note"), ("seed", "latin1"))
    d = Delta(rule_stack)
    first = split_wire(wire_get(rule_stack, path, b"x-note: caf\xe9\r\n"))
    assert (first[0], (b"x-sp-cache", b"MISS") in first[1]) == (200, True)
    settle(rule_stack)
    assert (d.backend("lookups"), d.backend("stores"), d.backend("rejected")) == (1, 1, 0)
    again = split_wire(wire_get(rule_stack, path, b"x-note: caf\xe9\r\n"))
    assert (again[0], again[2], (b"x-sp-cache", b"HIT") in again[1]) == (200, first[2], True)
    other = split_wire(wire_get(rule_stack, path, b"x-note: cafe\r\n"))  # another variant
    assert (other[0], (b"x-sp-cache", b"MISS") in other[1]) == (200, True)
    settle(rule_stack)
    assert (d.backend("stores"), d.backend("rejected")) == (2, 0)
    assert d.upstream("/bytes/650") == 2
    assert "lookup_error" not in d.reasons()
