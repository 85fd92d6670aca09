"""One conformance suite that every registered storage implementation must pass."""

from __future__ import annotations

import pytest

from sp_istio_cache.backend.storage import Entry, Storage, create_storage, storage_names

# Options a storage needs to run in a test; storages absent here are created without options.
TEST_OPTIONS = {"sqlite": lambda tmp_path: {"path": tmp_path / "cache.sqlite"}}

KEY_A = "a" * 64
KEY_B = "b" * 64
KEY_C = "c" * 64


def entry(body: bytes = b"hello", headers=None, status: int = 200, stored_at: float = 1000.0,
          ttl: float = 60.0) -> Entry:
    return Entry(status, headers if headers is not None else {"a": ["xy", "z"]}, body,
                 stored_at, stored_at + ttl)


@pytest.fixture(params=storage_names())
def store(request, tmp_path) -> Storage:
    options = TEST_OPTIONS.get(request.param, lambda _: {})(tmp_path)
    s = create_storage(request.param, **options)
    yield s
    s.close()


def test_registry_names():
    assert storage_names() == ["memory", "sqlite"]


def test_unknown_storage_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown storage 'redis'; known: memory, sqlite"):
        create_storage("redis")


def test_entry_size_counts_body_and_every_header_value():
    assert entry().size == 5 + (1 + 2) + (1 + 1)
    assert entry(body=b"", headers={}).size == 0
    assert entry(body=b"", headers={"é": ["ü"]}).size == 4


def test_empty_store(store):
    assert store.lookup(KEY_A, 0.0) is None
    assert store.stats().entries == 0
    assert store.stats().bytes == 0
    assert store.evict(1e12) == 0


def test_round_trip_exact_bytes_and_header_order(store):
    headers = {
        "content-type": ["application/octet-stream"],
        "x-multi": ["b", "a", "c"],
        "cache-control": ["max-age=60"],
        "x-empty": [""],
        "x-unicode": ["grüße ✓"],
    }
    body = bytes(range(256)) * 3 + b"\x00"
    stored = Entry(203, headers, body, 1000.5, 1060.5)
    store.insert(KEY_A, stored)
    got = store.lookup(KEY_A, 1000.5)
    assert got == stored
    assert type(got.body) is bytes
    assert list(got.headers.items()) == list(headers.items())
    assert got.status == 203
    assert got.stored_at == 1000.5
    assert got.expires_at == 1060.5
    assert store.lookup(KEY_B, 1000.5) is None


def test_empty_body_and_headers(store):
    store.insert(KEY_A, entry(body=b"", headers={}, status=204))
    got = store.lookup(KEY_A, 1000.0)
    assert got.body == b""
    assert got.headers == {}
    assert got.status == 204


def test_ttl_honoured_at_lookup(store):
    store.insert(KEY_A, entry(stored_at=1000.0, ttl=60.0))
    assert store.lookup(KEY_A, 999.0).body == b"hello"
    assert store.lookup(KEY_A, 1059.999).body == b"hello"
    assert store.lookup(KEY_A, 1060.0) is None
    assert store.lookup(KEY_A, 5000.0) is None
    # expired entries stay counted until evicted
    assert store.stats().entries == 1


def test_zero_ttl_is_never_fresh(store):
    store.insert(KEY_A, entry(stored_at=1000.0, ttl=0.0))
    assert store.lookup(KEY_A, 1000.0) is None


def test_upsert_replaces(store):
    store.insert(KEY_A, entry(body=b"first", headers={"x": ["1"]}, stored_at=1000.0, ttl=100))
    second = entry(body=b"second!", headers={"y": ["2", "3"]}, status=404, stored_at=1001.0, ttl=10)
    store.insert(KEY_A, second)
    assert store.lookup(KEY_A, 1001.0) == second
    assert store.lookup(KEY_A, 1050.0) is None  # the old entry's longer freshness went with it
    stats = store.stats()
    assert stats.entries == 1
    assert stats.bytes == 7 + 2 + 2


def test_evict_counts_expired(store):
    store.insert(KEY_A, entry(stored_at=0.0, ttl=10.0))
    store.insert(KEY_B, entry(stored_at=0.0, ttl=20.0))
    store.insert(KEY_C, entry(stored_at=0.0, ttl=30.0))
    assert store.evict(9.0) == 0
    assert store.evict(20.0) == 2
    assert store.evict(20.0) == 0
    assert store.stats().entries == 1
    assert store.lookup(KEY_C, 20.0) is not None
    assert store.lookup(KEY_A, 0.0) is None  # evicted, not just expired
    assert store.evict(100.0) == 1
    assert store.stats().entries == 0
    assert store.stats().bytes == 0


def test_stats_exact(store):
    store.insert(KEY_A, entry(body=b"12345", headers={"a": ["xy", "z"]}))  # 10 bytes
    store.insert(KEY_B, entry(body=b"x" * 1000, headers={}))  # 1000 bytes
    stats = store.stats()
    assert stats.entries == 2
    assert stats.bytes == 1010


def test_large_body(store):
    body = bytes(range(256)) * 4096 * 8  # 8 MiB
    store.insert(KEY_A, entry(body=body, headers={}))
    assert store.lookup(KEY_A, 1000.0).body == body
    assert store.stats().bytes == 8 * 1024 * 1024


def test_closed_store_refuses_calls(store):
    store.close()
    store.close()  # twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        store.lookup(KEY_A, 0.0)
    with pytest.raises(RuntimeError, match="closed"):
        store.insert(KEY_A, entry())
