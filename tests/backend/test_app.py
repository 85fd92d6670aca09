"""The backend HTTP service against a real loopback server, with an injected clock."""

from __future__ import annotations

import json
import time

import pytest

from sp_istio_cache.backend.app import create_app
from sp_istio_cache.backend.storage import create_storage
from sp_istio_cache.fingerprint import request_fingerprint
from sp_istio_cache.otlp import CachedRequest, CachedResponse, SpanType, decode_hit, encode_span
from tests.support import running

PROTOBUF = {"content-type": "application/x-protobuf"}


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_request(method: str = "GET", path: str = "/bytes/16", headers=None, vary=(), body: bytes = b"",
                 key: str | None = "compute") -> CachedRequest:
    headers = headers or {}
    if key == "compute":
        key = request_fingerprint(method, "upstream", path, headers, vary, body)
    return CachedRequest(method=method, scheme="http", authority="upstream", path=path, headers=headers,
                         body=body, service_name="svc", direction="outbound", session_id="",
                         key=key, vary=sorted(vary))


RESPONSE = CachedResponse(
    status=200,
    headers={"content-type": ["application/octet-stream"], "x-multi": ["b", "a"], "cache-control": ["max-age=60"]},
    body=bytes(range(256)) * 4,
)


def store_body(request: CachedRequest, response: CachedResponse = RESPONSE, ttl: int | None = 60) -> bytes:
    return encode_span(SpanType.EXTRACT, request, response, ttl)


def lookup_body(request: CachedRequest) -> bytes:
    return encode_span(SpanType.INJECT, request)


@pytest.fixture(params=["memory", "sqlite"])
def backend(request, tmp_path):
    """(client, clock) for a backend with default_ttl=30 over each storage."""
    options = {"path": tmp_path / "b.sqlite"} if request.param == "sqlite" else {}
    clock = FakeClock()
    app = create_app(create_storage(request.param, **options), default_ttl=30, clock=clock, evict_interval=0)
    with running(app) as client:
        yield client, clock


def stats(client) -> dict:
    reply = client.get("/stats")
    assert reply.status == 200
    return json.loads(reply.body)


def test_healthz(backend):
    client, _ = backend
    reply = client.get("/healthz")
    assert (reply.status, reply.body) == (200, b"ok\n")


def test_garbage_is_rejected_and_nothing_stored(backend):
    client, _ = backend
    for path in ("/v1/traces", "/v1/inject"):
        reply = client.post(path, b"\xff\xfe garbage", headers=PROTOBUF)
        assert reply.status == 400
        assert reply.body.startswith(b"malformed span: body is not an OTLP TracesData protobuf")
    assert stats(client) == {"entries": 0, "bytes": 0, "lookups": 0, "hits": 0, "misses": 0,
                             "stores": 0, "rejected": 2}


def test_truncated_protobuf_is_rejected(backend):
    client, _ = backend
    data = store_body(make_request())
    reply = client.post("/v1/traces", data[:-7], headers=PROTOBUF)
    assert reply.status == 400
    assert b"not an OTLP TracesData protobuf" in reply.body
    assert stats(client)["entries"] == 0


def test_missing_attribute_is_rejected(backend):
    client, _ = backend
    reply = client.post("/v1/traces", b"", headers=PROTOBUF)
    assert reply.status == 400
    assert reply.body == b"malformed span: expected exactly one span, found 0 (in 0 resource_spans)\n"


def test_store_then_lookup_returns_what_was_stored(backend):
    client, clock = backend
    request = make_request()
    assert client.post("/v1/traces", store_body(request), headers=PROTOBUF).status == 200
    clock.now += 7.9
    reply = client.post("/v1/inject", lookup_body(request), headers=PROTOBUF)
    assert reply.status == 200
    assert reply.header("content-type") == "application/x-protobuf"
    response, age = decode_hit(reply.body)
    assert response == RESPONSE
    assert list(response.headers) == ["content-type", "x-multi", "cache-control"]
    assert response.headers["x-multi"] == ["b", "a"]
    assert age == 7


def test_head_lookup_reads_the_get_entry(backend):
    client, _ = backend
    client.post("/v1/traces", store_body(make_request("GET")), headers=PROTOBUF)
    reply = client.post("/v1/inject", lookup_body(make_request("HEAD")), headers=PROTOBUF)
    assert reply.status == 200
    assert decode_hit(reply.body)[0].body == RESPONSE.body


def test_lookup_without_key_uses_the_recomputed_one(backend):
    client, _ = backend
    client.post("/v1/traces", store_body(make_request(key=None)), headers=PROTOBUF)
    assert client.post("/v1/inject", lookup_body(make_request()), headers=PROTOBUF).status == 200


def test_key_mismatch_is_rejected_naming_both_digests(backend):
    client, _ = backend
    good = make_request()
    bad = make_request(key="f" * 64)
    for path, body in (("/v1/traces", store_body(bad)), ("/v1/inject", lookup_body(bad))):
        reply = client.post(path, body, headers=PROTOBUF)
        assert reply.status == 400
        assert reply.body.decode() == (
            f"sp.cache.key {'f' * 64} disagrees with the recomputed fingerprint {good.key}\n"
        )
    assert stats(client)["entries"] == 0


def test_vary_headers_split_entries(backend):
    client, _ = backend
    gzip_req = make_request(headers={"accept-encoding": ["gzip"]}, vary=["accept-encoding"])
    br_req = make_request(headers={"accept-encoding": ["br"]}, vary=["accept-encoding"])
    client.post("/v1/traces", store_body(gzip_req), headers=PROTOBUF)
    assert client.post("/v1/inject", lookup_body(gzip_req), headers=PROTOBUF).status == 200
    assert client.post("/v1/inject", lookup_body(br_req), headers=PROTOBUF).status == 404


def test_post_body_is_part_of_the_key(backend):
    client, _ = backend
    client.post("/v1/traces", store_body(make_request("POST", body=b"\x00q=1")), headers=PROTOBUF)
    assert client.post("/v1/inject", lookup_body(make_request("POST", body=b"\x00q=1")), headers=PROTOBUF).status == 200
    assert client.post("/v1/inject", lookup_body(make_request("POST", body=b"\x00q=2")), headers=PROTOBUF).status == 404


def test_expired_entry_is_a_miss(backend):
    client, clock = backend
    request = make_request()
    client.post("/v1/traces", store_body(request, ttl=10), headers=PROTOBUF)
    clock.now += 9.99
    assert client.post("/v1/inject", lookup_body(request), headers=PROTOBUF).status == 200
    clock.now += 0.01
    reply = client.post("/v1/inject", lookup_body(request), headers=PROTOBUF)
    assert (reply.status, reply.body) == (404, b"miss\n")


def test_default_ttl_applies_without_ttl_attribute(backend):
    client, clock = backend
    request = make_request()
    client.post("/v1/traces", store_body(request, ttl=None), headers=PROTOBUF)
    clock.now += 29
    assert client.post("/v1/inject", lookup_body(request), headers=PROTOBUF).status == 200
    clock.now += 1
    assert client.post("/v1/inject", lookup_body(request), headers=PROTOBUF).status == 404


def test_restore_replaces_the_entry(backend):
    client, _ = backend
    request = make_request()
    client.post("/v1/traces", store_body(request), headers=PROTOBUF)
    newer = CachedResponse(201, {"x-version": ["2"]}, b"v2")
    client.post("/v1/traces", store_body(request, newer), headers=PROTOBUF)
    reply = client.post("/v1/inject", lookup_body(request), headers=PROTOBUF)
    assert decode_hit(reply.body) == (newer, 0)
    assert stats(client)["entries"] == 1
    assert stats(client)["bytes"] == 2 + len("x-version") + 1


def test_store_without_response_is_rejected(backend):
    client, _ = backend
    reply = client.post("/v1/traces", encode_span(SpanType.EXTRACT, make_request()), headers=PROTOBUF)
    assert reply.status == 400
    assert reply.body == b"store span carries no http.response.status_code\n"


def test_span_type_must_match_the_route(backend):
    client, _ = backend
    reply = client.post("/v1/traces", lookup_body(make_request()), headers=PROTOBUF)
    assert reply.status == 400
    assert reply.body == b"span type 'inject' sent to /v1/traces, expected 'extract'\n"
    reply = client.post("/v1/inject", store_body(make_request()), headers=PROTOBUF)
    assert reply.status == 400
    assert reply.body == b"span type 'extract' sent to /v1/inject, expected 'inject'\n"


def test_stats_counts_exact(backend):
    client, _ = backend
    a, b, c = make_request(path="/a"), make_request(path="/b"), make_request(path="/c")
    client.post("/v1/traces", store_body(a), headers=PROTOBUF)
    client.post("/v1/traces", store_body(b), headers=PROTOBUF)
    for request in (a, b, c, a):
        client.post("/v1/inject", lookup_body(request), headers=PROTOBUF)
    client.post("/v1/inject", b"junk", headers=PROTOBUF)
    entry_bytes = len(RESPONSE.body) + sum(len(n) + len(v) for n, vs in RESPONSE.headers.items() for v in vs)
    assert stats(client) == {"entries": 2, "bytes": 2 * entry_bytes, "lookups": 4, "hits": 3,
                             "misses": 1, "stores": 2, "rejected": 1}


def test_large_body_round_trip(backend):
    client, _ = backend
    big = CachedResponse(200, {}, bytes(range(256)) * 4096 * 8)  # 8 MiB
    request = make_request(path="/bytes/8388608")
    assert client.post("/v1/traces", store_body(request, big), headers=PROTOBUF).status == 200
    reply = client.post("/v1/inject", lookup_body(request), headers=PROTOBUF)
    assert decode_hit(reply.body)[0].body == big.body


def test_public_key_is_enforced(tmp_path):
    app = create_app(create_storage("memory"), public_key="s3cret", evict_interval=0)
    request = make_request()
    with running(app) as client:
        assert client.post("/v1/traces", store_body(request), headers=PROTOBUF).status == 401
        reply = client.post("/v1/inject", lookup_body(request), headers={**PROTOBUF, "x-public-key": "nope"})
        assert (reply.status, reply.body) == (401, b"missing or wrong x-public-key\n")
        keyed = {**PROTOBUF, "x-public-key": "s3cret"}
        assert client.post("/v1/inject", lookup_body(request), headers=keyed).status == 404
        assert client.post("/v1/traces", store_body(request), headers=keyed).status == 200
        assert client.post("/v1/inject", lookup_body(request), headers=keyed).status == 200
        counts = stats(client)
        assert (counts["rejected"], counts["stores"], counts["hits"], counts["misses"]) == (2, 1, 1, 1)


def test_body_size_limit(tmp_path):
    app = create_app(create_storage("memory"), max_body_bytes=1000, evict_interval=0)
    big = CachedResponse(200, {}, b"x" * 2000)
    with running(app) as client:
        reply = client.post("/v1/traces", store_body(make_request(), big), headers=PROTOBUF)
        assert reply.status == 413
        assert reply.body == b"body larger than 1000 bytes\n"
        assert stats(client)["rejected"] == 1
        assert stats(client)["entries"] == 0


def test_periodic_eviction_sweeps_expired_entries():
    clock = FakeClock()
    app = create_app(create_storage("memory"), clock=clock, evict_interval=0.05)
    with running(app) as client:
        client.post("/v1/traces", store_body(make_request(), ttl=5), headers=PROTOBUF)
        assert stats(client)["entries"] == 1
        clock.now += 5
        deadline = time.monotonic() + 5
        while stats(client)["entries"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stats(client)["entries"] == 0
