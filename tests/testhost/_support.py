"""Request builders and end-of-test checks shared by the test-host tests."""

from __future__ import annotations

from sp_istio_cache.testhost import ProxyWasmHost, Stream
from sp_istio_cache.testhost.fakes import LOOKUP_PATH, STORE_PATH

AUTHORITY = "svc.example:8080"


def req(method: str = "GET", path: str = "/items?id=7", *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [(":method", method), (":path", path), (":authority", AUTHORITY), (":scheme", "http"), *extra]


def lookups(host: ProxyWasmHost):
    return [c for c in host.calls if c.path == LOOKUP_PATH]


def stores(host: ProxyWasmHost):
    return [c for c in host.calls if c.path == STORE_PATH]


def counters(host: ProxyWasmHost) -> dict[str, int]:
    """Non-zero counters (the gauge excluded)."""
    return {k: v for k, v in host.metrics.items() if v and k != "sp_cache.buffered_body_bytes"}


def assert_healthy(host: ProxyWasmHost, *streams: Stream) -> None:
    """What every test ends with: no ABI violations, nothing buffered, no stream left hanging."""
    assert host.violations == []
    assert host.metric("sp_cache.buffered_body_bytes") == 0
    for s in streams:
        assert not s.request_paused, f"stream {s.id} request still held"
        assert not s.response_paused, f"stream {s.id} response still held"
