"""The upstream test app: deterministic bodies, response options, counters."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import time

import pytest

from sp_istio_cache.upstream.app import create_app
from sp_istio_cache.upstream.payload import PayloadCache, generate
from tests.support import running


@pytest.fixture
def client():
    with running(create_app()) as c:
        yield c


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_bytes_are_deterministic_per_seed(client):
    first = client.get("/bytes/1024?seed=1")
    second = client.get("/bytes/1024?seed=1")
    other = client.get("/bytes/1024?seed=2")
    assert first.status == 200
    assert len(first.body) == 1024
    assert sha(first.body) == sha(second.body)
    assert sha(other.body) != sha(first.body)
    assert first.body == generate(1024, "1")
    assert first.header("content-type") == "application/octet-stream"


def test_generation_is_pinned():
    # random.Random(str) seeds through SHA-512: the bytes do not depend on the process or hash seed
    assert sha(generate(1024, "1")) == "64138df8fce2587146470d0cd1cde1387a9820387a67dcb535f1d21fad55a810"
    assert generate(8, "0").hex() == "45bf975cb861a614"
    assert generate(0, "0") == b""
    with pytest.raises(ValueError, match="size must be >= 0, got -1"):
        generate(-1, "0")


@pytest.mark.parametrize("n", [0, 1, 1024 * 1024 + 1])
def test_sizes_are_exact(client, n):
    reply = client.get(f"/bytes/{n}")
    assert reply.status == 200
    assert len(reply.body) == n
    assert reply.header("content-length") == str(n)


def test_head_has_length_but_no_body(client):
    reply = client.request("HEAD", "/bytes/4096")
    assert reply.status == 200
    assert reply.header("content-length") == "4096"
    assert reply.body == b""


def test_post_returns_the_same_bytes_and_records_body_length(client):
    reply = client.post("/bytes/64?seed=7", b"x" * 300)
    assert reply.body == generate(64, "7")
    client.post("/bytes/64?seed=7", b"y" * 5)
    assert json.loads(client.get("/__stats").body)["request_body_bytes"] == 305


def read_raw(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def parse_chunked(raw: bytes) -> tuple[bytes, list[int], bytes]:
    head, _, rest = raw.partition(b"\r\n\r\n")
    sizes, body = [], bytearray()
    while True:
        line, _, rest = rest.partition(b"\r\n")
        size = int(line, 16)
        if size == 0:
            return head, sizes, bytes(body)
        sizes.append(size)
        body += rest[:size]
        rest = rest[size + 2:]


def test_chunked_has_no_content_length_and_the_same_bytes(client):
    reply = client.get("/bytes/100000?seed=3&chunked=1")
    assert reply.header("content-length") is None
    assert reply.header("transfer-encoding") == "chunked"
    assert reply.body == generate(100000, "3")
    head, sizes, body = parse_chunked(read_raw(client.port, "/bytes/100000?seed=3&chunked=1"))
    assert b"content-length" not in head.lower()
    assert sizes == [25000, 25000, 25000, 25000]
    assert body == generate(100000, "3")


def test_gzip_encodes_the_same_bytes(client):
    reply = client.get("/bytes/5000?seed=9&gzip=1")
    assert reply.header("content-encoding") == "gzip"
    assert gzip.decompress(reply.body) == generate(5000, "9")
    assert reply.header("content-length") == str(len(reply.body))
    assert client.get("/bytes/5000?seed=9&gzip=1").body == reply.body  # mtime=0: stable bytes


def test_header_options(client):
    reply = client.get(
        "/bytes/8?cache_control=max-age%3D60&vary=Accept-Encoding&set_cookie=a%3D1&set_cookie=b%3D2"
        "&header=X-Tag:one&header=X-Tag:two&header=X-Other:%20spaced%20"
    )
    assert reply.status == 200
    assert reply.header("cache-control") == "max-age=60"
    assert reply.header("vary") == "Accept-Encoding"
    assert reply.header_all("set-cookie") == ["a=1", "b=2"]
    assert reply.header_all("x-tag") == ["one", "two"]
    assert reply.header("x-other") == "spaced"


def test_status_option(client):
    reply = client.get("/bytes/10?status=404")
    assert (reply.status, len(reply.body)) == (404, 10)
    reply = client.get("/bytes/10?status=204")
    assert (reply.status, reply.body) == (204, b"")


def test_etag_and_if_none_match(client):
    reply = client.get("/bytes/10?seed=1&etag=1")
    etag = reply.header("etag")
    assert etag.startswith('"') and etag.endswith('"') and len(etag) == 34
    assert client.get("/bytes/10?seed=2&etag=1").header("etag") != etag
    assert client.get("/bytes/10?seed=1").header("etag") is None
    revalidated = client.get("/bytes/10?seed=1&etag=1", headers={"If-None-Match": etag})
    assert (revalidated.status, revalidated.body, revalidated.header("etag")) == (304, b"", etag)
    stale = client.get("/bytes/10?seed=1&etag=1", headers={"If-None-Match": '"other"'})
    assert (stale.status, len(stale.body)) == (200, 10)


def test_delay(client):
    start = time.monotonic()
    reply = client.get("/bytes/1?delay_ms=200")
    elapsed = time.monotonic() - start
    assert reply.status == 200
    assert 0.2 <= elapsed < 2.0


def test_status_route_is_headers_only(client):
    reply = client.get("/status/204?cache_control=no-store")
    assert (reply.status, reply.body, reply.header("cache-control")) == (204, b"", "no-store")
    reply = client.get("/status/200")
    assert (reply.status, reply.body, reply.header("content-length")) == (200, b"", "0")
    reply = client.request("HEAD", "/status/404")
    assert (reply.status, reply.body) == (404, b"")


@pytest.mark.parametrize(
    "path, message",
    [
        ("/bytes/1?delay_ms=soon", b"delay_ms='soon': not a number\n"),
        ("/bytes/1?status=99", b"status=99: must be within 200..599\n"),
        ("/bytes/1?status=abc", b"status='abc': not an integer\n"),
        ("/bytes/1?chunked=maybe", b"chunked='maybe': expected 1/0/true/false\n"),
        ("/bytes/1?header=NoColon", b"header='NoColon': expected Name:Value\n"),
        ("/status/700", b"code=700: must be within 200..599\n"),
        ("/bytes/2000000000", b"n=2000000000: at most 1073741824\n"),
    ],
)
def test_bad_options_are_400(client, path, message):
    reply = client.get(path)
    assert (reply.status, reply.body) == (400, message)


def test_unknown_query_parameters_are_ignored(client):
    reply = client.get("/bytes/4?seed=1&bust=12345")
    assert reply.body == generate(4, "1")


def test_counters_exact_and_reset(client):
    for _ in range(3):
        client.get("/bytes/65536")
    client.request("HEAD", "/bytes/65536")
    client.post("/bytes/16", b"abc")
    client.get("/status/204")
    client.get("/healthz")  # control routes are not counted
    assert json.loads(client.get("/__stats").body) == {
        "total": 6,
        "by_path": {"/bytes/65536": 4, "/bytes/16": 1, "/status/204": 1},
        "by_method": {"GET": 4, "HEAD": 1, "POST": 1},
        "by_method_path": {"GET /bytes/65536": 3, "HEAD /bytes/65536": 1, "POST /bytes/16": 1,
                           "GET /status/204": 1},
        "request_body_bytes": 3,
    }
    reset = client.post("/__reset")
    assert reset.status == 200
    client.get("/bytes/1")
    assert json.loads(client.get("/__stats").body) == {
        "total": 1, "by_path": {"/bytes/1": 1}, "by_method": {"GET": 1},
        "by_method_path": {"GET /bytes/1": 1}, "request_body_bytes": 0,
    }


def test_payload_cache_is_bounded():
    cache = PayloadCache(budget_bytes=100)
    assert cache.get(60, "a") == generate(60, "a")
    assert cache.bytes == 60
    cache.get(30, "b")
    assert cache.bytes == 90
    cache.get(50, "c")  # evicts the least recently used (60, "a")
    assert cache.bytes == 80
    cache.get(500, "big")  # larger than the budget: served, never kept
    assert cache.bytes == 80


def test_large_body_is_fast(client):
    start = time.monotonic()
    first = client.get("/bytes/8388608?seed=big")
    second = client.get("/bytes/8388608?seed=big")
    assert len(first.body) == 8 * 1024 * 1024
    assert first.body == second.body
    assert time.monotonic() - start < 5


LAST_MODIFIED = "Sun, 06 Nov 1994 08:49:37 GMT"


def test_last_modified_and_if_modified_since(client):
    path = "/bytes/10?last_modified=" + LAST_MODIFIED.replace(" ", "%20")
    reply = client.get(path)
    assert (reply.status, reply.header("last-modified"), len(reply.body)) == (200, LAST_MODIFIED, 10)
    same = client.get(path, headers={"If-Modified-Since": LAST_MODIFIED})
    assert (same.status, same.body, same.header("last-modified")) == (304, b"", LAST_MODIFIED)
    later = client.get(path, headers={"If-Modified-Since": "Mon, 07 Nov 1994 08:49:37 GMT"})
    assert later.status == 304
    earlier = client.get(path, headers={"If-Modified-Since": "Sat, 05 Nov 1994 08:49:37 GMT"})
    assert (earlier.status, len(earlier.body)) == (200, 10)
    invalid = client.get(path, headers={"If-Modified-Since": "yesterday"})
    assert invalid.status == 200
    # RFC 9110 §13.1.3: If-Modified-Since is ignored when If-None-Match is present
    both = client.get(path, headers={"If-Modified-Since": LAST_MODIFIED, "If-None-Match": '"x"'})
    assert both.status == 200


def test_bad_last_modified_is_400(client):
    reply = client.get("/bytes/1?last_modified=soon")
    assert reply.status == 400
    assert reply.body == b"last_modified='soon': not an HTTP-date (e.g. Sun, 06 Nov 1994 08:49:37 GMT)\n"


def test_echo_headers_returns_the_request_as_received(client):
    reply = client.get("/bytes/5?echo_headers=1&cache_control=max-age%3D9",
                       headers={"X-Note": "one", "Accept-Encoding": "br"})
    assert (reply.status, reply.header("content-type")) == (200, "application/json")
    assert reply.header("cache-control") == "max-age=9"
    echo = json.loads(reply.body)
    assert (echo["method"], echo["path"]) == ("GET", "/bytes/5?echo_headers=1&cache_control=max-age%3D9")
    assert ["X-Note", "one"] in echo["headers"] and ["Accept-Encoding", "br"] in echo["headers"]
    zipped = client.get("/bytes/5?echo_headers=1&gzip=1")
    assert json.loads(gzip.decompress(zipped.body))["path"] == "/bytes/5?echo_headers=1&gzip=1"


def test_non_latin1_request_bytes_survive_the_echo():
    with running(create_app()) as c:
        with socket.create_connection(("127.0.0.1", c.port), timeout=5) as s:
            s.sendall(b"GET /bytes/1?echo_headers=1 HTTP/1.1\r\n"
                      b"host: x\r\nx-note: caf\xe9\r\nconnection: close\r\n\r\n")
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        echo = json.loads(raw.split(b"\r\n\r\n", 1)[1])
        assert ["x-note", "caf\xe9"] in echo["headers"]
        log = json.loads(c.get("/__requests").body)
        assert [r["headers"] for r in log] == [echo["headers"]]


def test_request_log_keeps_the_last_requests_and_resets(client):
    client.get("/bytes/1?a=1", headers={"X-Trace": "t1"})
    client.request("PUT", "/status/204", body=b"x")
    client.request("DELETE", "/bytes/2")
    client.get("/__stats")  # control routes are not logged
    log = json.loads(client.get("/__requests").body)
    assert [(r["method"], r["path"]) for r in log] == [("GET", "/bytes/1?a=1"), ("PUT", "/status/204"),
                                                        ("DELETE", "/bytes/2")]
    assert ["X-Trace", "t1"] in log[0]["headers"]
    client.post("/__reset")
    assert json.loads(client.get("/__requests").body) == []


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_unsafe_methods_are_answered_and_counted(client, method):
    reply = client.request(method, "/status/201?header=Location:/bytes/1")
    assert (reply.status, reply.header("location")) == (201, "/bytes/1")
    assert json.loads(client.get("/__stats").body)["by_method"] == {method: 1}


def test_an_etag_given_as_a_header_option_never_matches(client):
    reply = client.get('/bytes/3?header=ETag:"v1"', headers={"If-None-Match": '"v1"'})
    assert (reply.status, reply.header("etag"), len(reply.body)) == (200, '"v1"', 3)
