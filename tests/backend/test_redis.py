"""What only the Redis storage promises, against a real redis-server: Redis-side expiry, one
server shared by several backends, and refusal of server settings it cannot work with."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from sp_istio_cache.backend.storage import StorageUnavailable, create_storage

K1, K2 = "1" * 64, "2" * 64
VA = "a" * 64


@pytest.fixture
def server(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def test_keys_layout_and_pexpireat_at_the_latest_variant(make_storage, server):
    store = make_storage("redis")
    p = store.storage.prefix
    now = time.time()
    store.insert(K1, "", b"short", now + 30, now)
    store.insert(K1, VA, b"long", now + 90, now)
    store.insert(K1, "", b"shorter", now + 10, now)  # replacing with a shorter life keeps the hash's expiry
    assert sorted(k.decode() for k in server.keys(p + "*")) == sorted(
        [f"{p}e:{K1}", f"{p}lru", f"{p}sizes", f"{p}counts", f"{p}totals"])
    assert 89_000 <= server.pttl(f"{p}e:{K1}") <= 90_000
    assert server.hlen(f"{p}e:{K1}") == 2
    assert int.from_bytes(server.hget(f"{p}e:{K1}", VA)[:8], "big") == int((now + 90) * 1000)
    assert server.hget(f"{p}e:{K1}", VA)[8:] == b"long"
    assert server.hgetall(f"{p}totals") == {b"entries": b"2", b"bytes": b"11"}
    for bookkeeping in ("lru", "sizes", "counts", "totals"):
        assert server.pttl(p + bookkeeping) == -1  # never expire: volatile-lru can never evict them


def test_redis_expires_the_hash_and_the_sweep_corrects_the_totals(make_storage, server):
    store = make_storage("redis")
    p = store.storage.prefix
    now = time.time()
    store.insert(K1, "", b"soon gone", now + 0.2, now)
    store.insert(K2, "", b"stays", now + 60, now)
    deadline = time.monotonic() + 5
    while server.exists(f"{p}e:{K1}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.exists(f"{p}e:{K1}")  # Redis dropped it by itself (PEXPIREAT)
    assert store.stats().entries == 2  # the totals learn it at the next sweep
    assert store.evict(time.time()) == 1
    stats = store.stats()
    assert (stats.entries, stats.bytes, stats.expired, stats.evicted) == (1, 5, 1, 0)
    assert server.hkeys(f"{p}sizes") == [K2.encode()]


def test_two_backends_share_one_server(make_storage):
    replica_a = make_storage("redis")
    replica_b = make_storage("redis", prefix=replica_a.storage.prefix, max_entries=2)
    now = time.time()
    replica_a.insert(K1, "", b"from a", now + 60, now)
    assert replica_b.lookup(K1, now + 1) == [b"from a"]
    replica_b.insert(K2, VA, b"from b", now + 60, now + 2)
    replica_b.insert(K2, "", b"from b too", now + 60, now + 3)  # 3 entries > 2: K1 (LRU) goes
    assert replica_a.lookup(K1, now + 4) == []
    assert replica_a.stats().entries == 2
    assert replica_a.stats().evicted == 1
    assert replica_a.invalidate([K2]) == 2
    assert replica_b.stats().entries == 0


def test_allkeys_policy_is_refused(redis_server, server):
    server.config_set("maxmemory-policy", "allkeys-lru")
    try:
        store = create_storage("redis", url=redis_server.url)
        with pytest.raises(StorageUnavailable, match=r"maxmemory-policy allkeys-lru, which may evict the "
                                                     r"storage's bookkeeping keys"):
            _open(store)
    finally:
        server.config_set("maxmemory-policy", "volatile-lru")


def test_maxmemory_below_max_bytes_is_refused(redis_server, server):
    server.config_set("maxmemory", 10 * 2**20)
    try:
        store = create_storage("redis", url=redis_server.url, max_bytes=20 * 2**20)
        with pytest.raises(StorageUnavailable, match=r"maxmemory 10485760 bytes, below --max-bytes 20971520"):
            _open(store)
        _open(create_storage("redis", url=redis_server.url, max_bytes=5 * 2**20))
    finally:
        server.config_set("maxmemory", 0)


def test_unreachable_server_names_the_url():
    from sp_istio_cache.procutil import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    store = create_storage("redis", url=url, socket_timeout_s=0.5)
    with pytest.raises(StorageUnavailable, match=f"redis INFO at {url}: "):
        _open(store)


def _open(store) -> None:
    """Open and close ``store`` on one event loop (its connections belong to that loop)."""
    async def main():
        try:
            await store.open()
        finally:
            await store.close()

    asyncio.run(main())
