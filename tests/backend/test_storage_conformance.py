"""One conformance suite that every registered storage passes (STYLE.md §7): memory, SQLite, and
Redis against a real redis-server.

Times start at the real clock (``t0``): Redis expires hashes on its own clock, so the suite
works with times Redis agrees with. Every operation moves time forward so LRU order is defined.
"""

from __future__ import annotations

import time

import pytest

from sp_istio_cache.backend.storage import EntryTooLarge, create_storage, storage_names

K1, K2, K3, K4 = ("1" * 64, "2" * 64, "3" * 64, "4" * 64)
VA, VB = "a" * 64, "b" * 64


@pytest.fixture
def t0() -> float:
    return time.time()


@pytest.fixture(params=storage_names())
def name(request) -> str:
    return request.param


@pytest.fixture
def store(make_storage, name):
    return make_storage(name)


def test_registry_lists_every_storage():
    assert storage_names() == ["memory", "redis", "sqlite"]


def test_unknown_storage_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown storage 'nope'; known: memory, redis, sqlite"):
        create_storage("nope")


def test_limits_below_one_are_refused(name, tmp_path):
    with pytest.raises(ValueError, match=r"storage limits must be >= 1, got max_bytes=0 max_entries=5"):
        create_storage(name, **({"path": tmp_path / "x"} if name == "sqlite" else {}), max_bytes=0, max_entries=5)


def test_empty_store(store, t0):
    assert store.lookup(K1, t0) == []
    stats = store.stats()
    assert (stats.entries, stats.bytes, stats.evicted, stats.expired) == (0, 0, 0, 0)
    assert store.evict(t0 + 1e6) == 0
    assert store.invalidate([K1]) == 0


def test_exact_bytes_round_trip(store, t0):
    span = bytes(range(256)) * 5 + b"\x00"
    assert store.insert(K1, "", span, t0 + 60, t0) == 0
    got = store.lookup(K1, t0 + 1)
    assert got == [span]
    assert type(got[0]) is bytes
    assert store.lookup(K2, t0 + 1) == []


def test_variants_of_one_key_all_come_back(store, t0):
    store.insert(K1, "", b"plain", t0 + 60, t0)
    store.insert(K1, VA, b"variant-a", t0 + 60, t0 + 1)
    store.insert(K1, VB, b"variant-b!", t0 + 60, t0 + 2)
    store.insert(K2, VA, b"other key", t0 + 60, t0 + 3)
    assert sorted(store.lookup(K1, t0 + 4)) == [b"plain", b"variant-a", b"variant-b!"]
    assert store.lookup(K2, t0 + 4) == [b"other key"]
    stats = store.stats()
    assert (stats.entries, stats.bytes) == (4, 5 + 9 + 10 + 9)


def test_store_replaces_the_same_key_and_variant(store, t0):
    store.insert(K1, VA, b"first version", t0 + 100, t0)
    store.insert(K1, VB, b"b", t0 + 100, t0 + 1)
    store.insert(K1, VA, b"second", t0 + 10, t0 + 2)
    assert sorted(store.lookup(K1, t0 + 3)) == [b"b", b"second"]
    assert store.lookup(K1, t0 + 50) == [b"b"]  # the replaced entry's longer life went with it
    stats = store.stats()
    assert (stats.entries, stats.bytes) == (2, 1 + 6)


def test_expiry_per_variant(store, t0):
    store.insert(K1, VA, b"ten", t0 + 10, t0)
    store.insert(K1, VB, b"twenty", t0 + 20, t0)
    assert sorted(store.lookup(K1, t0 + 9.999)) == [b"ten", b"twenty"]
    assert store.lookup(K1, t0 + 10) == [b"twenty"]  # fresh while now < expires_at
    assert store.lookup(K1, t0 + 20) == []
    assert store.stats().entries == 2  # counted until evicted


def test_evict_removes_exactly_the_expired(store, t0):
    store.insert(K1, VA, b"a", t0 + 10, t0)
    store.insert(K1, VB, b"bb", t0 + 30, t0)
    store.insert(K2, "", b"ccc", t0 + 20, t0)
    store.insert(K3, "", b"dddd", t0 + 30, t0)
    assert store.evict(t0 + 9) == 0
    assert store.evict(t0 + 20) == 2
    assert store.evict(t0 + 20) == 0
    stats = store.stats()
    assert (stats.entries, stats.bytes, stats.expired, stats.evicted) == (2, 2 + 4, 2, 0)
    assert store.lookup(K1, t0 + 21) == [b"bb"]
    assert store.lookup(K2, t0 + 1) == []  # removed, not just expired
    assert store.evict(t0 + 30) == 2
    assert (store.stats().entries, store.stats().bytes, store.stats().expired) == (0, 0, 4)


def test_invalidate_deletes_every_variant_of_each_key(store, t0):
    store.insert(K1, "", b"1", t0 + 60, t0)
    store.insert(K1, VA, b"22", t0 + 60, t0)
    store.insert(K2, VB, b"333", t0 + 60, t0)
    store.insert(K3, "", b"4444", t0 + 60, t0)
    assert store.invalidate([K1, K2, K4, K1]) == 3
    assert store.lookup(K1, t0 + 1) == []
    assert store.lookup(K2, t0 + 1) == []
    assert store.lookup(K3, t0 + 1) == [b"4444"]
    stats = store.stats()
    assert (stats.entries, stats.bytes, stats.evicted) == (1, 4, 0)
    assert store.invalidate([]) == 0


def test_entry_limit_evicts_least_recently_used_keys(make_storage, name, t0):
    store = make_storage(name, max_entries=3)
    store.insert(K1, "", b"1", t0 + 60, t0 + 1)
    store.insert(K2, "", b"2", t0 + 60, t0 + 2)
    store.insert(K3, "", b"3", t0 + 60, t0 + 3)
    assert store.lookup(K1, t0 + 4) == [b"1"]  # K1 is now the most recently used
    assert store.insert(K4, "", b"4", t0 + 60, t0 + 5) == 1  # K2 goes
    assert store.lookup(K2, t0 + 6) == []
    assert [store.lookup(k, t0 + 6) for k in (K1, K3, K4)] == [[b"1"], [b"3"], [b"4"]]
    stats = store.stats()
    assert (stats.entries, stats.evicted, stats.max_entries) == (3, 1, 3)


def test_eviction_takes_every_variant_of_the_victim(make_storage, name, t0):
    store = make_storage(name, max_entries=3)
    store.insert(K1, VA, b"a", t0 + 60, t0 + 1)
    store.insert(K1, VB, b"b", t0 + 60, t0 + 2)
    store.insert(K2, "", b"c", t0 + 60, t0 + 3)
    assert store.insert(K3, "", b"d", t0 + 60, t0 + 4) == 2
    assert store.lookup(K1, t0 + 5) == []
    assert (store.stats().entries, store.stats().evicted) == (2, 2)


def test_byte_limit_evicts_least_recently_used_keys(make_storage, name, t0):
    store = make_storage(name, max_bytes=100)
    store.insert(K1, "", b"a" * 40, t0 + 60, t0 + 1)
    store.insert(K2, "", b"b" * 40, t0 + 60, t0 + 2)
    assert store.lookup(K1, t0 + 3) == [b"a" * 40]
    assert store.insert(K3, "", b"c" * 30, t0 + 60, t0 + 4) == 1  # 110 > 100: K2 (LRU) goes
    assert store.lookup(K2, t0 + 5) == []
    stats = store.stats()
    assert (stats.entries, stats.bytes, stats.evicted, stats.max_bytes) == (2, 70, 1, 100)
    assert store.insert(K1, "", b"a" * 70, t0 + 60, t0 + 6) == 0  # 70 + 30 = 100 still fits
    assert store.insert(K1, "", b"a" * 71, t0 + 60, t0 + 7) == 1  # a replaced entry that grows counts
    assert store.lookup(K3, t0 + 8) == []
    assert (store.stats().entries, store.stats().bytes) == (1, 71)


def test_an_entry_over_the_byte_limit_is_refused(make_storage, name, t0):
    store = make_storage(name, max_bytes=100)
    store.insert(K1, "", b"k" * 100, t0 + 60, t0)  # exactly the limit fits
    with pytest.raises(EntryTooLarge, match="entry of 101 bytes exceeds the storage byte limit of 100"):
        store.insert(K2, "", b"x" * 101, t0 + 60, t0 + 1)
    assert store.lookup(K1, t0 + 2) == [b"k" * 100]
    assert (store.stats().entries, store.stats().bytes) == (1, 100)


def test_large_span(store, t0):
    span = bytes(range(256)) * 4096 * 8  # 8 MiB
    store.insert(K1, "", span, t0 + 60, t0)
    assert store.lookup(K1, t0 + 1) == [span]
    assert store.stats().bytes == 8 * 1024 * 1024


def test_closed_store_refuses_calls(make_storage, name, t0):
    store = make_storage(name)
    store.close()
    store.close()  # twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        store.lookup(K1, t0)
    with pytest.raises(RuntimeError, match="closed"):
        store.insert(K1, "", b"x", t0 + 1, t0)


def test_a_key_keeps_at_most_max_variants_those_that_expire_last(make_storage, name, t0):
    """A client that sends a new value of a Vary-nominated header on every request cannot grow a
    key (and so every lookup answer of it) past max_variants."""
    store = make_storage(name, max_variants=3)
    variants = [f"{i:064x}" for i in range(6)]
    for i, variant in enumerate(variants[:3]):
        assert store.insert(K1, variant, b"v%d" % i, t0 + 60 + i, t0 + 1 + i) == 0
    assert store.insert(K1, variants[3], b"v3", t0 + 100, t0 + 4) == 1  # v0 expires first: it goes
    assert sorted(store.lookup(K1, t0 + 5)) == [b"v1", b"v2", b"v3"]
    assert store.insert(K1, variants[4], b"v4", t0 + 30, t0 + 6) == 1  # the new one stays, v1 goes
    assert sorted(store.lookup(K1, t0 + 7)) == [b"v2", b"v3", b"v4"]
    assert store.insert(K1, variants[2], b"v2'", t0 + 90, t0 + 8) == 0  # a replacement adds none
    stats = store.stats()
    assert (stats.entries, stats.bytes, stats.evicted) == (3, 7, 2)  # v2' v3 v4


def test_max_variants_out_of_range_is_refused(name, tmp_path):
    with pytest.raises(ValueError, match=r"max_variants must be 1\.\.64, got 65"):
        create_storage(name, **({"path": tmp_path / "x"} if name == "sqlite" else {}), max_variants=65)
