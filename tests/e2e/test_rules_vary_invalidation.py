"""Variants (RFC 9111 §4.1), content-coding safety (RFC 9110 §12.5.3) and invalidation after
unsafe methods (RFC 9111 §4.4) through the real Envoy, with ``allow_on_headers_stop_iteration``
on and off.

The upstream echoes the request it received (``echo_headers=1``), so every variant's body names
the header values it was made for: a variant served to another request shows in the bytes.
"""

from __future__ import annotations

import json

import pytest
from e2e_support import Delta, authority, fetch, query, settle

pytestmark = pytest.mark.envoy

FRESH = ("cache_control", "max-age=60")

VARY = [
    ("Accept-Encoding", [None, "gzip", "br", "identity", "gzip, br"], [("GZIP", "gzip"), ("gzip,br", "gzip, br")]),
    ("Cookie", [None, "session=a", "session=b"], []),
    ("X-Tenant", [None, "", "blue", "green"], [("blue ", "blue")]),
]


def echoed(reply, name: str) -> list[str]:
    """Values of request header ``name`` as the upstream received them (from the echoed body)."""
    return [v for n, v in json.loads(reply.body)["headers"] if n.lower() == name.lower()]


@pytest.mark.parametrize("name,values,equivalent", VARY, ids=[v[0] for v in VARY])
def test_a_variant_is_only_ever_served_to_requests_it_was_made_for(rule_stack, name, values, equivalent):
    path = "/bytes/1?" + query(("echo_headers", "1"), ("vary", name), FRESH, ("seed", "vary-" + name))

    def get(value: str | None):
        return fetch(rule_stack, path, headers=[] if value is None else [(name, value)])

    d = Delta(rule_stack)
    first = {}
    for value in values:
        reply = get(value)
        assert (reply.status, reply.cache) == (200, "MISS"), value
        assert echoed(reply, name) == ([] if value is None else [value])
        first[value] = reply
    for _ in range(2):
        for value in values:
            reply = get(value)
            assert (reply.cache, reply.body) == ("HIT", first[value].body), value
    for value, same_as in equivalent:  # RFC 9111 §4.1 normalisation: case, whitespace
        reply = get(value)
        assert (reply.cache, reply.body) == ("HIT", first[same_as].body), value
    assert d.upstream("/bytes/1") == len(values)
    settle(rule_stack)
    assert d.backend("stores") == len(values)


def test_a_stored_content_coding_is_never_served_to_a_client_that_does_not_accept_it(rule_stack):
    path = "/bytes/300?" + query(FRESH, ("gzip", "1"), ("seed", "coding"))  # and no Vary
    d = Delta(rule_stack)
    gzipped = fetch(rule_stack, path, headers=[("Accept-Encoding", "gzip")])
    assert (gzipped.cache, gzipped.header("content-encoding")) == ("MISS", "gzip")
    identity = fetch(rule_stack, path, headers=[("Accept-Encoding", "identity")])
    assert identity.cache == "MISS"  # the origin answers (this test app gzips regardless)
    again = fetch(rule_stack, path, headers=[("Accept-Encoding", "br, gzip")])
    assert (again.cache, again.body) == ("HIT", gzipped.body)
    assert d.upstream("/bytes/300") == 2
    assert d.reasons() == {"not_found": 1, "encoding_mismatch": 1, "l1_hit": 1}


UNSAFE = ["POST", "PUT", "PATCH", "DELETE"]


@pytest.mark.parametrize("method", UNSAFE)
def test_a_non_error_response_to_an_unsafe_method_invalidates_the_target(rule_stack, method):
    n = 400 + UNSAFE.index(method)
    path = f"/bytes/{n}?" + query(FRESH, ("seed", "invalidate-" + method))
    first = fetch(rule_stack, path)
    assert (first.cache, fetch(rule_stack, path).cache) == ("MISS", "HIT")
    d = Delta(rule_stack)
    unsafe = fetch(rule_stack, path, method=method, body=None if method == "DELETE" else b"change")
    assert (unsafe.status, unsafe.cache) == (200, "BYPASS")
    settle(rule_stack)
    assert (d.filter("invalidate_sent"), d.backend("invalidations"), d.backend("invalidated_entries")) == (1, 1, 1)
    after = fetch(rule_stack, path)
    assert (after.status, after.cache, after.body) == (200, "MISS", first.body)
    assert (d.upstream(f"/bytes/{n}", method), d.upstream(f"/bytes/{n}")) == (1, 1)
    assert fetch(rule_stack, path).cache == "HIT"  # stored again


def test_an_error_response_to_an_unsafe_method_invalidates_nothing(rule_stack):
    path = "/status/500?" + query(FRESH, ("seed", "no-invalidate"))
    assert [fetch(rule_stack, path).cache for _ in range(2)] == ["MISS", "HIT"]
    d = Delta(rule_stack)
    failed = fetch(rule_stack, path, method="POST", body=b"x")
    assert (failed.status, failed.cache) == (500, "BYPASS")
    still = fetch(rule_stack, path)
    assert (still.status, still.cache) == (500, "HIT")
    settle(rule_stack)
    assert (d.filter("invalidate_sent"), d.backend("invalidations")) == (0, 0)


LOCATIONS = [
    ("location-relative", "Location", "{target}", True),
    ("content-location-relative", "Content-Location", "{target}", True),
    ("location-absolute-same-origin", "Location", "http://{authority}{target}", True),
    ("location-other-origin", "Location", "http://other.example{target}", False),
]


@pytest.mark.parametrize("case,field,form,invalidated", LOCATIONS, ids=[c[0] for c in LOCATIONS])
def test_location_and_content_location_of_an_unsafe_response_are_invalidated_on_the_same_origin(
        rule_stack, case, field, form, invalidated):
    n = 410 + [c[0] for c in LOCATIONS].index(case)
    target = f"/bytes/{n}?" + query(FRESH, ("seed", case))
    stored = fetch(rule_stack, target)
    assert fetch(rule_stack, target).cache == "HIT"
    value = form.format(target=target, authority=authority(rule_stack))
    d = Delta(rule_stack)
    created = fetch(rule_stack, "/status/201?" + query(("header", f"{field}:{value}"), ("seed", case)),
                    method="POST", body=b"new")
    assert (created.status, created.header(field)) == (201, value)
    settle(rule_stack)
    assert d.backend("invalidated_entries") == (1 if invalidated else 0)
    after = fetch(rule_stack, target)
    assert (after.cache, after.body) == ("MISS" if invalidated else "HIT", stored.body)
    assert d.upstream(f"/bytes/{n}") == (1 if invalidated else 0)


def test_a_key_keeps_at_most_max_variants_whatever_header_values_clients_send(make_stack):
    """A client that sends a new value of a Vary-nominated header on every request cannot grow
    the key: the backend keeps max_variants variants (the stack passes the filter's value), so a
    lookup answer never holds more."""
    stack = make_stack(variant="filter", plugin_config={"max_variants": 2, "l1_max_bytes": 0})
    path = "/bytes/2048?" + query(("vary", "X-V"), FRESH, ("seed", "many-variants"))
    for i in range(6):
        assert fetch(stack, path, headers=[("X-V", str(i))]).cache == "MISS"
        settle(stack)
    stats = stack.backend_stats()
    assert (stats["entries"], stats["evicted"], stats["stores"]) == (2, 4, 6)
    # the two newest stay (equal lifetimes: those stored last expire last), the older ones are gone
    assert [fetch(stack, path, headers=[("X-V", str(i))]).cache for i in (5, 4)] == ["HIT", "HIT"]
    assert fetch(stack, path, headers=[("X-V", "0")]).cache == "MISS"
