"""Benchmark request keys, shared by the Locust users and the orchestrator's warm-up.

A key is one distinct cache entry:
``/bytes/<payload>?seed=<seed>&cache_control=<cc>[&delay_ms=<d>]&k=<key>``.
The upstream ignores ``k`` (it serves the same bytes), the caches key on the whole path.
"""

from __future__ import annotations

from urllib.parse import quote


def request_path(payload_bytes: int, key: str, *, seed: str = "1", cache_control: str = "",
                 delay_ms: float = 0.0) -> str:
    """The request path (with query) for one key; ``cache_control`` '' sends none; ``delay_ms``
    > 0 makes the test upstream wait that long (the origin-latency axis)."""
    query = f"seed={quote(str(seed))}"
    if cache_control:
        query += f"&cache_control={quote(cache_control)}"
    if delay_ms:
        query += f"&delay_ms={delay_ms:g}"
    return f"/bytes/{int(payload_bytes)}?{query}&k={quote(key)}"


def hot_key(index: int) -> str:
    """Name of hot key ``index`` (0-based)."""
    return f"hot-{index}"


def is_hot(i: int, hit_ratio: float) -> bool:
    """Whether request ``i`` of a user goes to a hot key: exactly ``hit_ratio`` of any run of
    consecutive requests (to within one request), spread evenly."""
    return int((i + 1) * hit_ratio) > int(i * hit_ratio)
