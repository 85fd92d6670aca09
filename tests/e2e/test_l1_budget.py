"""The L1's byte budget holds in the real Envoy (issue 13): ten times more distinct fresh bytes than
`l1_max_bytes` pass through the cache; the `l1_bytes` gauge never exceeds the budget and Envoy's
RSS grows by no more than the budget plus 10 %."""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

pytestmark = pytest.mark.envoy

BUDGET = 8 * 1024 * 1024
BODY = 65536


def test_ten_budgets_of_distinct_bytes_stay_inside_the_l1_budget(make_stack, capsys):
    stack = make_stack(variant="filter", plugin_config={"l1_max_bytes": BUDGET})
    envoy = psutil.Process(stack.envoy.pid)

    def get(i: int) -> int:
        url = f"{stack.listener_url}/bytes/{BODY}?cache_control=max-age%3D600&k={i}"
        with urllib.request.urlopen(url, timeout=30) as reply:
            return len(reply.read())

    def gauge() -> int:
        return stack.filter_stats()["sp_cache.l1_bytes"]

    assert [get(-1 - i) for i in range(50)] == [BODY] * 50  # warm-up: the VM and buffers at their working size
    rss_before = envoy.memory_info().rss
    n = 10 * BUDGET // BODY
    peak = 0
    with ThreadPoolExecutor(4) as pool:
        for k, size in enumerate(pool.map(get, range(n))):
            assert size == BODY
            if k % 32 == 0:
                peak = max(peak, gauge())
    peak = max(peak, gauge())
    growth = envoy.memory_info().rss - rss_before
    stats = stack.filter_stats()
    with capsys.disabled():
        print(f"\nL1 budget {BUDGET >> 20} MiB, {n * BODY >> 20} MiB of distinct fresh bodies: l1_bytes peak "
              f"{peak / 2**20:.2f} MiB, {stats['sp_cache.l1_evicted']} evictions, Envoy RSS growth "
              f"{growth / 2**20:.1f} MiB")
    assert 0 < peak <= BUDGET
    assert stats["sp_cache.l1_evicted"] > 0
    assert growth <= 1.1 * BUDGET
