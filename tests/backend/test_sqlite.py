"""What only the SQLite store promises: a file that survives reopening, in WAL mode, that several
processes write safely, and that replaces a cache file of the older schema."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import time

import pytest

from sp_istio_cache.backend.storage import create_storage
from sp_istio_cache.backend.storage.sqlite import SCHEMA_VERSION

K1, K2 = "1" * 64, "2" * 64


def test_entries_survive_reopen(make_storage, tmp_path):
    path = tmp_path / "sub" / "cache.sqlite"
    now = time.time()
    first = make_storage("sqlite", path=path)
    first.insert(K1, "", b"\x00span\xff", now + 60, now)
    first.close()
    second = make_storage("sqlite", path=path)
    assert second.lookup(K1, now + 1) == [b"\x00span\xff"]
    assert second.stats().entries == 1


def test_wal_mode_schema_version_and_tables(make_storage, tmp_path):
    make_storage("sqlite", path=tmp_path / "cache.sqlite").close()
    db = sqlite3.connect(tmp_path / "cache.sqlite")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        tables = sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        assert tables == ["entries", "totals"]
    finally:
        db.close()


def test_a_file_of_the_older_schema_is_replaced(make_storage, tmp_path, caplog):
    path = tmp_path / "cache.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, status INTEGER, headers TEXT, body BLOB,"
               " stored_at REAL, expires_at REAL, size INTEGER)")
    db.execute("INSERT INTO entries VALUES ('k', 200, '[]', x'00', 0, 1e12, 1)")
    db.commit()
    db.close()
    store = make_storage("sqlite", path=path)
    assert store.stats().entries == 0
    assert "cache schema version 0 replaced by 2 (cached entries dropped)" in caplog.text


def test_lookup_recency_is_written_by_the_next_write(make_storage, tmp_path):
    store = make_storage("sqlite", path=tmp_path / "c.sqlite", max_entries=2, touch_flush_s=3600)
    now = time.time()
    store.insert(K1, "", b"1", now + 60, now + 1)
    store.insert(K2, "", b"2", now + 60, now + 2)
    assert store.lookup(K1, now + 3) == [b"1"]  # held in memory until the next write
    db = sqlite3.connect(tmp_path / "c.sqlite")
    assert db.execute("SELECT used FROM entries WHERE key = ?", (K1,)).fetchone()[0] == now + 1
    store.insert("3" * 64, "", b"3", now + 60, now + 4)  # writes K1's use first, then evicts K2
    assert store.lookup(K2, now + 5) == []
    assert store.lookup(K1, now + 5) == [b"1"]
    db.close()


def _writer(path: str, worker: int, count: int, start: float) -> None:
    async def main() -> None:
        store = create_storage("sqlite", path=path)
        await store.open()
        for i in range(count):
            key = f"{worker:032x}{i:032x}"
            await store.insert(key, "", bytes([worker]) * (i + 1), start + 3600, start + i)
            await store.lookup(key, start + i)
        await store.close()

    asyncio.run(main())


def test_several_processes_write_one_file_safely(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    create_storage("sqlite", path=path)  # the parent prepares the schema, as the backend does
    start = time.time()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, w, 150, start)) for w in range(4)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(60)
    assert [proc.exitcode for proc in workers] == [0, 0, 0, 0]
    db = sqlite3.connect(path)
    try:
        counted = db.execute("SELECT COUNT(*), SUM(size) FROM entries").fetchone()
        totals = db.execute("SELECT entries, bytes FROM totals").fetchone()
    finally:
        db.close()
    assert counted == (600, 4 * sum(range(1, 151)))
    assert totals == counted  # the triggers kept the totals exact under concurrent writers


def test_a_write_lock_held_past_the_timeout_is_storage_unavailable(make_storage, tmp_path):
    from sp_istio_cache.backend.storage import StorageUnavailable

    store = make_storage("sqlite", path=tmp_path / "locked.sqlite", busy_timeout_ms=50)
    other = sqlite3.connect(tmp_path / "locked.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        now = time.time()
        with pytest.raises(StorageUnavailable) as info:
            store.insert(K1, "", b"x", now + 60, now)
        assert str(info.value) == f"sqlite {tmp_path / 'locked.sqlite'}: database is locked"
        assert store.lookup(K1, now) == []  # readers are not blocked by the writer (WAL)
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.insert(K1, "", b"x", time.time() + 60, time.time())
    assert store.stats().entries == 1
