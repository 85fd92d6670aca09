"""Smoke check: first request MISS and reaches the upstream, store lands, second request HIT
with byte-identical body and content-type, upstream served the path once."""

from __future__ import annotations

from dataclasses import dataclass

from .httpclient import request
from .stack import Stack


@dataclass(frozen=True)
class SmokeResult:
    """Outcome of one smoke run (sizes in bytes, waits in ms)."""

    path: str
    first: str | None
    second: str | None
    first_status: int
    second_status: int
    body_bytes: int
    bodies_equal: bool
    content_type_equal: bool
    upstream_count: int
    store_wait_ms: float

    @property
    def ok(self) -> bool:
        return (self.first == "MISS" and self.second == "HIT" and self.first_status == 200
                and self.second_status == 200 and self.bodies_equal and self.content_type_equal
                and self.upstream_count == 1)

    def verdict(self) -> str:
        """One line: PASS/FAIL and the evidence."""
        word = "PASS" if self.ok else "FAIL"
        return (f"smoke {word}: GET {self.path} -> {self.first} ({self.first_status}), then "
                f"{self.second} ({self.second_status}); body {self.body_bytes} B "
                f"{'identical' if self.bodies_equal else 'DIFFERENT'} (sha256), content-type "
                f"{'same' if self.content_type_equal else 'DIFFERENT'}; upstream served it "
                f"{self.upstream_count}x; store landed in {self.store_wait_ms:.1f} ms")


def run_smoke(stack: Stack, size_bytes: int = 65536) -> SmokeResult:
    """Run the miss → store → hit sequence against a started ``filter`` stack.

    Raises:
        TimeoutError: the store did not reach the backend within 5 s.
    """
    # explicit freshness: by default the filter stores only what asks to be stored (RFC 9111)
    path = f"/bytes/{size_bytes}"
    url = stack.listener_url + path + "?cache_control=max-age%3D300"
    stores_before = stack.backend_stats()["stores"]
    first = request(url)
    wait_ms = stack.wait_for_stores(stores_before + 1)
    second = request(url)
    return SmokeResult(
        path=path,
        first=first.cache,
        second=second.cache,
        first_status=first.status,
        second_status=second.status,
        body_bytes=len(second.body),
        bodies_equal=first.sha256 == second.sha256 and len(first.body) == size_bytes,
        content_type_equal=first.header("content-type") == second.header("content-type"),
        upstream_count=stack.upstream_count(path),
        store_wait_ms=wait_ms,
    )
