"""SQLite store: one table in one file (WAL), the default backend storage."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from .base import Entry, Storage, StorageStats

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key        TEXT PRIMARY KEY,
    status     INTEGER NOT NULL,
    headers    TEXT    NOT NULL,  -- JSON [[name, [value, ...]], ...] in stored order
    body       BLOB    NOT NULL,
    stored_at  REAL    NOT NULL,
    expires_at REAL    NOT NULL,
    size       INTEGER NOT NULL   -- Entry.size, so stats() needs no re-parse
);
CREATE INDEX IF NOT EXISTS entries_expires_at ON entries (expires_at);
"""


def _headers_to_json(headers: dict[str, list[str]]) -> str:
    return json.dumps([[name, list(values)] for name, values in headers.items()])


def _headers_from_json(text: str) -> dict[str, list[str]]:
    return {name: values for name, values in json.loads(text)}


class SqliteStorage(Storage):
    """Entries in the ``entries`` table of the database at ``path``.

    Writes share one connection under a lock (calls are short: one statement each), so they can
    run on a worker thread of an asyncio server. A file database also gets a second, read-only
    connection for lookups: in WAL mode readers never wait for the writer
    (https://sqlite.org/wal.html), so a lookup is a short read that the server runs inline
    (``blocking_lookup`` False). ``path`` may be ``":memory:"`` (one connection for everything).

    Raises:
        sqlite3.Error: the file cannot be opened or is not a database.
    """

    blocking = True

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._read_lock = self._lock
        self._reader: sqlite3.Connection | None = self._db
        if self.path != ":memory:":
            self._read_lock = threading.Lock()
            self._reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._reader.execute("PRAGMA query_only=ON")
            self.blocking_lookup = False

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"sqlite storage {self.path} is closed")
        return self._db

    def lookup(self, key: str, now: float) -> Entry | None:
        with self._read_lock:
            if self._reader is None:
                raise RuntimeError(f"sqlite storage {self.path} is closed")
            row = self._reader.execute(
                "SELECT status, headers, body, stored_at, expires_at FROM entries"
                " WHERE key = ? AND expires_at > ?",
                (key, now),
            ).fetchone()
        if row is None:
            return None
        status, headers, body, stored_at, expires_at = row
        return Entry(status, _headers_from_json(headers), bytes(body), stored_at, expires_at)

    def insert(self, key: str, entry: Entry) -> None:
        with self._lock:
            self._conn().execute(
                "INSERT OR REPLACE INTO entries"
                " (key, status, headers, body, stored_at, expires_at, size)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    entry.status,
                    _headers_to_json(entry.headers),
                    entry.body,
                    entry.stored_at,
                    entry.expires_at,
                    entry.size,
                ),
            )

    def evict(self, now: float) -> int:
        with self._lock:
            cursor = self._conn().execute("DELETE FROM entries WHERE expires_at <= ?", (now,))
        return cursor.rowcount

    def stats(self) -> StorageStats:
        with self._lock:
            entries, size = self._conn().execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries"
            ).fetchone()
        return StorageStats(entries=entries, bytes=size)

    def close(self) -> None:
        with self._read_lock:
            if self._reader is not None and self._reader is not self._db:
                self._reader.close()
            self._reader = None
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
