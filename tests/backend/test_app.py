"""The backend HTTP service (protocol version 2) on a real loopback server, with an injected clock."""

from __future__ import annotations

import json
import time

import pytest

from sp_istio_cache.backend.app import create_app
from sp_istio_cache.backend.storage import create_storage
from sp_istio_cache.otlp import (
    CachedResponse,
    SpanType,
    decode_candidates,
    decode_span,
    encode_candidates,
    encode_span,
)
from tests.backend.conftest import storage_options
from tests.backend.spans import KEY, KEYED, RESPONSE, invalidate_body, lookup_body, request, store_body
from tests.support import running

VA, VB = "a" * 64, "b" * 64


class FakeClock:
    """A settable clock (starts at the real time: Redis expires hashes on its own clock)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request, tmp_path):
    """(client, clock) for a keyed backend over each storage."""
    url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    clock = FakeClock()
    storage = create_storage(request.param, **storage_options(request.param, tmp_path, url))
    with running(create_app(storage, key=KEY, clock=clock, evict_interval=0)) as client:
        yield client, clock


@pytest.fixture
def memory_backend():
    clock = FakeClock()
    with running(create_app(create_storage("memory"), key=KEY, clock=clock, evict_interval=0)) as client:
        yield client, clock


def post(client, path: str, body: bytes):
    return client.post(path, body, headers=KEYED)


def stats(client) -> dict:
    reply = client.get("/stats", headers=KEYED)
    assert reply.status == 200
    return json.loads(reply.body)


def test_store_then_lookup_answers_the_stored_span_verbatim(backend):
    client, clock = backend
    req = request()
    body = store_body(req)
    stored_span = decode_span(body).raw
    assert post(client, "/v1/traces", body).status == 200
    clock.now += 5
    reply = post(client, "/v1/inject", lookup_body(req))
    assert reply.status == 200
    assert reply.header("content-type") == "application/x-protobuf"
    assert reply.body == encode_candidates([stored_span], "sp-istio-cache-backend")  # framing only, no re-encoding
    (candidate,) = decode_candidates(reply.body)
    assert candidate.raw == stored_span
    assert candidate.key == req.fingerprint()
    assert candidate.response == RESPONSE
    assert list(candidate.response.headers) == ["content-type", "x-multi", "cache-control"]


def test_every_variant_comes_back_and_a_store_replaces_its_own(backend):
    client, _ = backend
    req = request(path="/v")
    for variant, text in (("", b"plain"), (VA, b"a"), (VB, b"b"), (VA, b"a, second")):
        response = CachedResponse(200, {"vary": ["accept"]}, text)
        assert post(client, "/v1/traces", store_body(req, response, variant=variant)).status == 200
    candidates = decode_candidates(post(client, "/v1/inject", lookup_body(req)).body)
    assert sorted((c.entry.variant, c.response.body) for c in candidates) == [
        ("", b"plain"), (VA, b"a, second"), (VB, b"b")]
    assert stats(client)["entries"] == 3


def test_expiry_follows_retain_seconds(backend):
    client, clock = backend
    req = request(path="/short")
    post(client, "/v1/traces", store_body(req, retain=10))
    clock.now += 9.9
    assert post(client, "/v1/inject", lookup_body(req)).status == 200
    clock.now += 0.1
    reply = post(client, "/v1/inject", lookup_body(req))
    assert (reply.status, reply.body) == (404, b"miss\n")


def test_invalidate_deletes_every_variant_of_each_key(backend):
    client, _ = backend
    page, other, kept = request(path="/page"), request(path="/other"), request(path="/kept")
    post(client, "/v1/traces", store_body(page, variant=VA))
    post(client, "/v1/traces", store_body(page, variant=VB))
    post(client, "/v1/traces", store_body(other))
    post(client, "/v1/traces", store_body(kept))
    unsafe = request("POST", "/page", body=b"x=1")
    reply = post(client, "/v1/invalidate", invalidate_body(unsafe, [page.fingerprint(), other.fingerprint()]))
    assert (reply.status, reply.body) == (200, b"invalidated 3 entries\n")
    assert post(client, "/v1/inject", lookup_body(page)).status == 404
    assert post(client, "/v1/inject", lookup_body(other)).status == 404
    assert post(client, "/v1/inject", lookup_body(kept)).status == 200
    reply = post(client, "/v1/invalidate", invalidate_body(unsafe, [page.fingerprint()]))
    assert (reply.status, reply.body) == (200, b"invalidated 0 entries\n")
    counts = stats(client)
    assert (counts["invalidations"], counts["invalidated_entries"], counts["entries"]) == (2, 3, 1)


def test_non_utf8_header_and_path_travel_as_bytes(backend):
    client, _ = backend
    req = request(path=b"/caf\xe9?q=\xff", headers={"x-note": [b"caf\xe9", "plain"]})
    body = store_body(req)
    span = decode_span(body)
    assert span.request.headers["x-note"] == [b"caf\xe9", "plain"]
    assert span.request.path == b"/caf\xe9?q=\xff"
    assert post(client, "/v1/traces", body).status == 200
    reply = post(client, "/v1/inject", lookup_body(req))
    assert reply.status == 200
    assert decode_candidates(reply.body)[0].raw == span.raw
    utf8 = request(path="/caf\u00e9")  # the same bytes as text or as bytes_value are the same key
    assert request(path="/caf\u00e9".encode()).fingerprint() == utf8.fingerprint() != req.fingerprint()


def test_head_lookup_reads_the_get_entry_and_body_is_part_of_the_key(memory_backend):
    client, _ = memory_backend
    post(client, "/v1/traces", store_body(request("GET", "/h")))
    assert post(client, "/v1/inject", lookup_body(request("HEAD", "/h"))).status == 200
    post(client, "/v1/traces", store_body(request("POST", "/rpc", body=b"\x00q=1")))
    assert post(client, "/v1/inject", lookup_body(request("POST", "/rpc", body=b"\x00q=1"))).status == 200
    assert post(client, "/v1/inject", lookup_body(request("POST", "/rpc", body=b"\x00q=2"))).status == 404


def test_retain_seconds_zero_stores_nothing_and_long_ones_are_capped():
    clock = FakeClock()
    app = create_app(create_storage("memory"), key=KEY, clock=clock, evict_interval=0, max_retain_seconds=100)
    with running(app) as client:
        reply = post(client, "/v1/traces", store_body(request(path="/zero"), retain=0))
        assert (reply.status, reply.body) == (200, b"stored 0\n")
        post(client, "/v1/traces", store_body(request(path="/long"), retain=10**12))
        clock.now += 99.9
        assert post(client, "/v1/inject", lookup_body(request(path="/long"))).status == 200
        clock.now += 0.1
        assert post(client, "/v1/inject", lookup_body(request(path="/long"))).status == 404
        assert stats(client)["stores"] == 1


# ---------------------------------------------------------------------------------- authentication


def test_authentication(memory_backend):
    client, _ = memory_backend
    req = request()
    for headers in ({"content-type": "application/x-protobuf"}, {"x-public-key": "wrong-key-0123456789"},
                    {"x-public-key": KEY[:-1]}, {"x-public-key": KEY + "x"}):
        reply = client.post("/v1/traces", store_body(req), headers=headers)
        assert (reply.status, reply.body) == (401, b"missing or wrong x-public-key\n")
        assert reply.header("www-authenticate") == 'SP-Cache-Key realm="sp-cache-backend"'
    for path in ("/stats", "/nowhere"):
        assert client.get(path).status == 401
    assert client.post("/v1/invalidate", b"").status == 401
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status == 200
    assert post(client, "/v1/traces", store_body(req)).status == 200
    assert post(client, "/v1/inject", lookup_body(req)).status == 200
    assert client.get("/nowhere", headers=KEYED).status == 404
    counts = stats(client)
    assert (counts["auth_failures"], counts["rejected"], counts["stores"], counts["hits"]) == (7, 7, 1, 1)


def test_anonymous_backend_takes_calls_without_key():
    with running(create_app(create_storage("memory"), key=None, evict_interval=0)) as client:
        assert client.post("/v1/traces", store_body(request())).status == 200
        assert client.get("/stats").status == 200


@pytest.mark.parametrize("key, message", [
    ("short", "the backend key must be 16..256 characters long, got 5"),
    ("x" * 257, "the backend key must be 16..256 characters long, got 257"),
    ("sixteen chars ok", "the backend key must be visible ASCII (no spaces or control characters)"),
])
def test_bad_keys_are_refused(key, message):
    with pytest.raises(ValueError) as info:
        create_app(create_storage("memory"), key=key)
    assert str(info.value) == message


# ---------------------------------------------------------------------------------- refusals


def test_garbage_and_wrong_span_counts(memory_backend):
    client, _ = memory_backend
    for path in ("/v1/traces", "/v1/inject", "/v1/invalidate"):
        reply = post(client, path, b"\xff\xfe garbage")
        assert reply.status == 400
        assert reply.body.startswith(b"malformed span: body is not an OTLP TracesData protobuf")
    assert post(client, "/v1/traces", b"").body == b"malformed span: expected 1 to 256 spans, found 0\n"
    assert post(client, "/v1/inject", b"").body == b"malformed span: expected exactly one span, found 0\n"
    one = store_body(request())
    assert post(client, "/v1/traces", one[:-7]).status == 400
    two = encode_candidates([decode_span(one).raw] * 2)
    assert post(client, "/v1/inject", two).body == b"malformed span: expected exactly one span, found 2\n"
    many = encode_candidates([decode_span(one).raw] * 257)
    assert post(client, "/v1/traces", many).body == b"malformed span: expected 1 to 256 spans, found 257\n"
    assert stats(client)["entries"] == 0


def test_a_batched_store_keeps_every_valid_span_and_names_the_first_refused(memory_backend):
    # The filter queues its stores and sends them together: TracesData messages back to back.
    client, _ = memory_backend
    a, b, bad = request(path="/a"), request(path="/b"), request(path="/c", key="f" * 64)
    batch = store_body(a) + store_body(b, CachedResponse(200, {}, b"bee"))
    assert (post(client, "/v1/traces", batch).status, post(client, "/v1/traces", batch).body) == (200, b"stored 2\n")
    (got,) = decode_candidates(post(client, "/v1/inject", lookup_body(b)).body)
    assert got.response.body == b"bee"
    mixed = store_body(request(path="/d")) + store_body(bad) + store_body(request(path="/e"), retain=0)
    reply = post(client, "/v1/traces", mixed)
    assert (reply.status, reply.body.decode()) == (
        400, f"sp.cache.key {'f' * 64} disagrees with the recomputed fingerprint {bad.fingerprint()} "
             "(1 of 3 spans refused, 1 stored)\n")
    assert post(client, "/v1/inject", lookup_body(request(path="/d"))).status == 200
    assert post(client, "/v1/inject", lookup_body(request(path="/e"))).status == 404
    assert stats(client)["entries"] == 3


def test_key_mismatch_names_both_digests(memory_backend):
    client, _ = memory_backend
    good, bad = request(), request(key="f" * 64)
    for path, body in (("/v1/traces", store_body(bad)), ("/v1/inject", lookup_body(bad)),
                       ("/v1/invalidate", invalidate_body(bad, []))):
        reply = post(client, path, body)
        assert (reply.status, reply.body.decode()) == (
            400, f"sp.cache.key {'f' * 64} disagrees with the recomputed fingerprint {good.fingerprint()}\n")
    assert stats(client)["entries"] == 0


def test_span_type_must_match_the_route(memory_backend):
    client, _ = memory_backend
    reply = post(client, "/v1/traces", lookup_body(request()))
    assert reply.body == b"malformed span: span type 'inject' where 'extract' was expected\n"
    reply = post(client, "/v1/inject", store_body(request()))
    assert reply.body == b"malformed span: span type 'extract' where 'inject' was expected\n"


@pytest.mark.parametrize("drop, message", [
    ("sp.cache.key", "missing required attribute 'sp.cache.key'"),
    ("sp.cache.variant", "missing required attribute 'sp.cache.variant'"),
    ("sp.cache.signature", "missing required attribute 'sp.cache.signature'"),
    ("sp.cache.retain_seconds", "missing required attribute 'sp.cache.retain_seconds'"),
    ("sp.cache.request_time_ms", "missing required attribute 'sp.cache.request_time_ms'"),
    ("http.response.status_code", "missing required attribute 'http.response.status_code'"),
    ("url.scheme", "missing required attribute 'url.scheme'"),
])
def test_store_without_an_attribute_it_needs(memory_backend, drop, message):
    from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

    client, _ = memory_backend
    traces = TracesData.FromString(store_body(request()))
    span = traces.resource_spans[0].scope_spans[0].spans[0]
    kept = [kv for kv in span.attributes if kv.key != drop]
    del span.attributes[:]
    span.attributes.extend(kept)
    reply = post(client, "/v1/traces", traces.SerializeToString())
    assert (reply.status, reply.body.decode()) == (400, f"malformed span: {message}\n")


def test_invalidate_keys_must_be_keys(memory_backend):
    client, _ = memory_backend
    reply = post(client, "/v1/invalidate", invalidate_body(request(), ["not-a-key"]))
    assert reply.body == (b"malformed span: attribute 'sp.cache.invalidate.keys' element 0 must be a string "
                          b"of 64 lower-case hex characters\n")
    reply = post(client, "/v1/invalidate", invalidate_body(request(), ["a" * 64] * 65))
    assert reply.body == (b"malformed span: attribute 'sp.cache.invalidate.keys' holds 65 keys, at most 64 "
                          b"are accepted\n")
    reply = post(client, "/v1/invalidate", encode_span(SpanType.INVALIDATE, request(), invalidate_keys=[]))
    assert reply.status == 200


def test_body_size_limit_and_entry_over_the_storage_limit():
    storage = create_storage("memory", max_bytes=1500)
    with running(create_app(storage, key=KEY, max_body_bytes=3000, evict_interval=0)) as client:
        reply = post(client, "/v1/traces", store_body(request(), CachedResponse(200, {}, b"x" * 4000)))
        assert (reply.status, reply.body) == (413, b"body larger than 3000 bytes\n")
        body = store_body(request(), CachedResponse(200, {}, b"x" * 1600))
        reply = post(client, "/v1/traces", body)
        size = len(decode_span(body).raw)
        assert (reply.status, reply.body.decode()) == (
            413, f"entry of {size} bytes exceeds the storage byte limit of 1500\n")
        assert stats(client)["entries"] == 0


class FakeUnavailableStorage:
    """A fake storage (unit test only) whose every call fails the way an unreachable Redis does."""

    max_bytes = max_entries = 1

    async def open(self):
        pass

    async def close(self):
        pass

    async def _down(self, *args):
        from sp_istio_cache.backend.storage import StorageUnavailable

        raise StorageUnavailable("redis lookup at redis://127.0.0.1:1/0: Connection refused")

    lookup = insert = invalidate = stats = ping = evict = _down


def test_storage_failure_is_503_and_not_ready():
    with running(create_app(FakeUnavailableStorage(), key=KEY, evict_interval=0)) as client:
        reply = post(client, "/v1/inject", lookup_body(request()))
        assert (reply.status, reply.body) == (
            503, b"storage unavailable: redis lookup at redis://127.0.0.1:1/0: Connection refused\n")
        assert client.get("/readyz").status == 503
        assert client.get("/healthz").status == 200
        metrics = samples(client.get("/metrics").body.decode())
        assert metrics[("sp_cache_backend_rejected_total", (("code", "503"), ("route", "/v1/inject")))] == 1


# ---------------------------------------------------------------------------------- observability


def test_stats_and_metrics_exact(memory_backend):
    client, _ = memory_backend
    a, b, c = request(path="/a"), request(path="/b"), request(path="/c")
    sizes = []
    for req in (a, b):
        body = store_body(req)
        sizes.append(len(decode_span(body).raw))
        post(client, "/v1/traces", body)
    for req in (a, b, c, a):
        post(client, "/v1/inject", lookup_body(req))
    post(client, "/v1/inject", b"junk")
    client.post("/v1/inject", b"", headers={"x-public-key": "nope"})
    assert stats(client) == {"entries": 2, "bytes": sum(sizes), "max_entries": 1_000_000, "max_bytes": 512 * 2**20,
                             "evicted": 0, "expired": 0, "lookups": 4, "hits": 3, "misses": 1, "stores": 2,
                             "stored_bytes": sum(sizes), "invalidations": 0, "invalidated_entries": 0,
                             "rejected": 2, "auth_failures": 1}
    metrics = samples(client.get("/metrics").body.decode())
    assert metrics[("sp_cache_backend_lookups_total", (("result", "hit"),))] == 3
    assert metrics[("sp_cache_backend_lookups_total", (("result", "miss"),))] == 1
    assert metrics[("sp_cache_backend_stores_total", ())] == 2
    assert metrics[("sp_cache_backend_stored_bytes_total", ())] == sum(sizes)
    assert metrics[("sp_cache_backend_auth_failures_total", ())] == 1
    assert metrics[("sp_cache_backend_rejected_total", (("code", "400"), ("route", "/v1/inject")))] == 1
    assert metrics[("sp_cache_backend_rejected_total", (("code", "401"), ("route", "/v1/inject")))] == 1
    assert metrics[("sp_cache_backend_request_duration_seconds_count", (("route", "/v1/inject"),))] == 6
    assert metrics[("sp_cache_backend_request_duration_seconds_count", (("route", "/v1/traces"),))] == 2
    assert metrics[("sp_cache_backend_storage_entries", ())] == 2
    assert metrics[("sp_cache_backend_storage_bytes", ())] == sum(sizes)
    assert metrics[("sp_cache_backend_storage_max_bytes", ())] == 512 * 2**20
    assert metrics[("sp_cache_backend_storage_max_entries", ())] == 1_000_000


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus text exposition: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_periodic_sweep_removes_expired_entries():
    clock = FakeClock()
    with running(create_app(create_storage("memory"), key=KEY, clock=clock, evict_interval=0.05)) as client:
        post(client, "/v1/traces", store_body(request(), retain=5))
        assert stats(client)["entries"] == 1
        clock.now += 5
        deadline = time.monotonic() + 5
        while stats(client)["entries"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stats(client)["entries"] == 0
        metrics = samples(client.get("/metrics").body.decode())
        assert metrics[("sp_cache_backend_evictions_total", (("reason", "expired"),))] == 1
