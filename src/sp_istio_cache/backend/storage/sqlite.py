"""SQLite store: one file in WAL mode, the default backend storage; several processes may share it.

- **Reads** (lookups, stats) run inline on the event loop on a read-only connection: in WAL mode
  a reader never waits for the writer (https://sqlite.org/wal.html), and a lookup is one indexed
  SELECT.
- **Writes** run on one worker thread per process, each in a ``BEGIN IMMEDIATE`` transaction, so
  writes from every process on the file are serialized by SQLite's write lock (waiting up to
  ``busy_timeout`` ms for it) and the loop never blocks on them.
- **Totals** (entries, bytes) are kept by triggers in the ``totals`` row, so they stay exact
  whatever process or statement adds or removes an entry, and stats cost one row read.
- **Recency** for LRU: a lookup records its key in memory and the next write transaction (or a
  flush at most ``touch_flush_s`` later) stores it, so the read path never writes. Within one
  process the LRU order is exact; across processes it lags by at most that delay.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .base import Storage, StorageStats, StorageUnavailable

log = logging.getLogger("sp_istio_cache.backend.sqlite")

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key        TEXT    NOT NULL,  -- primary key, 64 hex (docs/protocol.md)
    variant    TEXT    NOT NULL,  -- 64 hex or ''
    span       BLOB    NOT NULL,  -- the serialized Span exactly as stored
    expires_at REAL    NOT NULL,  -- seconds since the epoch
    used       REAL    NOT NULL,  -- last use of the key (lookup or store), seconds since the epoch
    size       INTEGER NOT NULL,  -- length(span)
    PRIMARY KEY (key, variant)
);
CREATE INDEX IF NOT EXISTS entries_expires_at ON entries (expires_at);
CREATE INDEX IF NOT EXISTS entries_used ON entries (used, key);
CREATE TABLE IF NOT EXISTS totals (
    id      INTEGER PRIMARY KEY CHECK (id = 0),
    entries INTEGER NOT NULL,
    bytes   INTEGER NOT NULL,
    evicted INTEGER NOT NULL,
    expired INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals VALUES (0, 0, 0, 0, 0);
CREATE TRIGGER IF NOT EXISTS entries_inserted AFTER INSERT ON entries BEGIN
    UPDATE totals SET entries = entries + 1, bytes = bytes + NEW.size;
END;
CREATE TRIGGER IF NOT EXISTS entries_deleted AFTER DELETE ON entries BEGIN
    UPDATE totals SET entries = entries - 1, bytes = bytes - OLD.size;
END;
CREATE TRIGGER IF NOT EXISTS entries_resized AFTER UPDATE OF size ON entries BEGIN
    UPDATE totals SET bytes = bytes - OLD.size + NEW.size;
END;
"""


def _statements(script: str) -> list[str]:
    """Split ``script`` into complete statements (trigger bodies hold semicolons of their own)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out


def _connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return db


def prepare(path: str | Path, busy_timeout_ms: int = 5000) -> None:
    """Create the file, WAL mode and the schema; replace a file of another schema version (its
    entries are dropped: it is a cache). Done once by the parent before worker processes start.

    Raises:
        sqlite3.Error: the file cannot be opened or is not a database.
    """
    path = str(path)
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = _connect(path, busy_timeout_ms)
    try:
        _prepare(db)
    finally:
        db.close()


def _prepare(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        if tables and version != SCHEMA_VERSION:
            log.warning("cache schema version %s replaced by %s (cached entries dropped)", version, SCHEMA_VERSION)
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                db.execute(f'DROP TRIGGER "{name}"')
            for name in tables:
                db.execute(f'DROP TABLE "{name}"')
        for statement in _statements(_SCHEMA):
            db.execute(statement)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class SqliteStorage(Storage):
    """Entries in the ``entries`` table of the database at ``path`` (module docstring).

    Args:
        path: database file (created with its directory), or ``":memory:"`` (one connection,
            no sharing).
        busy_timeout_ms: how long a write waits for another process's write lock.
        touch_flush_s: most seconds a lookup's recency waits before it is written.
        max_bytes, max_entries, max_variants: see :class:`Storage`.

    Raises:
        sqlite3.Error: the file cannot be opened or is not a database.
    """

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000, touch_flush_s: float = 1.0,
                 **limits: int) -> None:
        super().__init__(**limits)
        self.path = str(path)
        self.touch_flush_s = touch_flush_s
        in_memory = self.path == ":memory:"
        self.shared = not in_memory
        if not in_memory:
            prepare(self.path, busy_timeout_ms)
        self._writer: sqlite3.Connection | None = _connect(self.path, busy_timeout_ms)
        self._writer.execute("PRAGMA synchronous=NORMAL")
        if in_memory:
            _prepare(self._writer)
            self._reader = self._writer
        else:
            self._reader = _connect(self.path, busy_timeout_ms)
            self._reader.execute("PRAGMA query_only=ON")
        self._executor = ThreadPoolExecutor(1, "sp-cache-sqlite")
        self._touches: dict[str, float] = {}
        self._touches_since = 0.0
        self._flush_pending = False

    # -- helpers ---------------------------------------------------------------------------
    def _read(self) -> sqlite3.Connection:
        if self._writer is None:
            raise RuntimeError(f"sqlite storage {self.path} is closed")
        return self._reader

    async def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(db, *args)`` in a write transaction on the worker thread (pending lookup
        recency first).

        Raises:
            StorageUnavailable: SQLite failed (locked past ``busy_timeout_ms``, disk full, I/O).
        """
        self._read()
        touches, self._touches = self._touches, {}
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._transaction, fn,
                                                                     touches, args)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"sqlite {self.path}: {exc}") from exc

    def _select(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._read().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"sqlite {self.path}: {exc}") from exc

    def _transaction(self, fn: Callable[..., Any], touches: dict[str, float], args: tuple) -> Any:
        db = self._writer
        if db is None:
            raise RuntimeError(f"sqlite storage {self.path} is closed")
        db.execute("BEGIN IMMEDIATE")
        try:
            if touches:
                db.executemany("UPDATE entries SET used = ? WHERE key = ? AND used < ?",
                               [(t, k, t) for k, t in touches.items()])
            result = fn(db, *args)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return result

    def _touch(self, key: str, now: float) -> None:
        if not self._touches:
            self._touches_since = time.monotonic()
        self._touches[key] = now
        if not self._flush_pending and time.monotonic() - self._touches_since >= self.touch_flush_s:
            self._flush_pending = True
            task = asyncio.get_running_loop().create_task(self._write(lambda db: None))
            task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task) -> None:
        self._flush_pending = False
        if not task.cancelled() and task.exception() is not None:
            log.warning("writing lookup recency failed: %s", task.exception())

    # -- the interface ---------------------------------------------------------------------
    async def lookup(self, key: str, now: float) -> list[bytes]:
        rows = self._select("SELECT span FROM entries WHERE key = ? AND expires_at > ?", (key, now))
        if rows:
            self._touch(key, now)
        return [row[0] for row in rows]

    async def insert(self, key: str, variant: str, span: bytes, expires_at: float, now: float) -> int:
        self.check_size(span)
        return await self._write(self._insert, key, variant, span, expires_at, now)

    def _insert(self, db: sqlite3.Connection, key: str, variant: str, span: bytes, expires_at: float,
                now: float) -> int:
        db.execute(
            "INSERT INTO entries (key, variant, span, expires_at, used, size) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (key, variant) DO UPDATE SET span = excluded.span, expires_at = excluded.expires_at,"
            " used = excluded.used, size = excluded.size",
            (key, variant, span, expires_at, now, len(span)))
        db.execute("UPDATE entries SET used = ? WHERE key = ? AND used < ?", (now, key, now))
        evicted = db.execute(
            "DELETE FROM entries WHERE key = ? AND variant IN (SELECT variant FROM entries WHERE key = ?"
            " AND variant != ? ORDER BY expires_at DESC, variant LIMIT -1 OFFSET ?)",
            (key, key, variant, self.max_variants - 1)).rowcount
        while True:
            entries, size = db.execute("SELECT entries, bytes FROM totals").fetchone()
            if entries <= self.max_entries and size <= self.max_bytes:
                break
            victim = db.execute("SELECT key FROM entries ORDER BY used, key LIMIT 1").fetchone()
            if victim is None:
                break
            evicted += db.execute("DELETE FROM entries WHERE key = ?", victim).rowcount
        if evicted:
            db.execute("UPDATE totals SET evicted = evicted + ?", (evicted,))
        return evicted

    async def invalidate(self, keys: Sequence[str]) -> int:
        return await self._write(
            lambda db: sum(db.execute("DELETE FROM entries WHERE key = ?", (k,)).rowcount for k in set(keys)))

    async def evict(self, now: float) -> int:
        def sweep(db: sqlite3.Connection) -> int:
            removed = db.execute("DELETE FROM entries WHERE expires_at <= ?", (now,)).rowcount
            if removed:
                db.execute("UPDATE totals SET expired = expired + ?", (removed,))
            return removed

        return await self._write(sweep)

    async def stats(self) -> StorageStats:
        ((entries, size, evicted, expired),) = self._select("SELECT entries, bytes, evicted, expired FROM totals")
        return StorageStats(entries, size, self.max_entries, self.max_bytes, evicted, expired)

    async def ping(self) -> None:
        self._select("SELECT 1")

    async def close(self) -> None:
        if self._writer is None:
            return
        if self._touches:
            await self._write(lambda db: None)
        self._executor.shutdown(wait=True)
        if self._reader is not self._writer:
            self._reader.close()
        self._writer.close()
        self._writer = None
