"""What only the SQLite store promises: a file that survives reopening, in WAL mode."""

from __future__ import annotations

import sqlite3

from sp_istio_cache.backend.storage import Entry, create_storage


def test_entries_survive_reopen(tmp_path):
    path = tmp_path / "sub" / "cache.sqlite"
    stored = Entry(200, {"x-a": ["1", "2"]}, b"\x00body\xff", 10.0, 70.0)
    with create_storage("sqlite", path=path) as store:
        store.insert("k" * 64, stored)
    with create_storage("sqlite", path=path) as store:
        assert store.lookup("k" * 64, 20.0) == stored
        assert store.stats().entries == 1


def test_wal_mode_and_one_table(tmp_path):
    path = tmp_path / "cache.sqlite"
    create_storage("sqlite", path=path).close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert tables == ["entries"]
    finally:
        db.close()
