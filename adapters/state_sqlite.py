"""The SQLite adapter of the `StateStore` port (local development).

One file shared by the local function processes: WAL mode, `busy_timeout`, one
table per collection plus a `versions` counter, so that a version is never reused
(not even after a delete). One connection per store, opened lazily and guarded by
a lock: safe from several threads. Every write is one `BEGIN IMMEDIATE` transaction.
`sqlite3.Error` (a locked file past the timeout, a disk error) → `StateUnavailable`.
"""

# Table names are interpolated only after matching COLLECTION; every value is bound.
# ruff: noqa: S608

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import StateUnavailable
from core.state import (
    Document,
    Stored,
    check_key,
    check_limit,
    decode_cursor,
    encode_cursor,
)

COLLECTION = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_COLUMNS = "key, data, expires_at, dead_letter_at, due_at, version"


class SQLiteStateStore:
    """`StateStore` on one table (`collection`) of the SQLite file `path`."""

    def __init__(self, path: str | Path, collection: str, *, busy_timeout: float = 10.0) -> None:
        if not COLLECTION.fullmatch(collection):
            raise ValueError("collection must be a lower-case SQL identifier")
        self.path = Path(path)
        self.collection = collection
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    # --- connection ------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            table = self.collection
            db.executescript(
                f"""
                CREATE TABLE IF NOT EXISTS versions (
                    collection TEXT PRIMARY KEY, n INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS {table} (
                    key TEXT PRIMARY KEY, data TEXT NOT NULL, expires_at REAL NOT NULL,
                    dead_letter_at REAL, due_at REAL, version INTEGER NOT NULL);
                CREATE INDEX IF NOT EXISTS {table}_dead_letter_at ON {table} (dead_letter_at);
                CREATE INDEX IF NOT EXISTS {table}_due_at ON {table} (due_at);
                """
            )
        except BaseException:
            db.close()
            raise
        return db

    @contextmanager
    def _connection(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                if self._db is None:
                    self._db = self._open()
                db = self._db
                if not write:
                    yield db
                    return
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StateUnavailable(f"SQLite state store: {type(exc).__name__}") from exc

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            db.close()

    def _next_version(self, db: sqlite3.Connection) -> str:
        row = db.execute(
            "INSERT INTO versions (collection, n) VALUES (?, 1)"
            " ON CONFLICT (collection) DO UPDATE SET n = n + 1 RETURNING n",
            (self.collection,),
        ).fetchone()
        return str(row[0])

    def _write(self, db: sqlite3.Connection, document: Document) -> Stored:
        version = self._next_version(db)
        db.execute(
            f"INSERT OR REPLACE INTO {self.collection} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (
                document.key,
                document.data_json(),
                document.expires_at,
                document.dead_letter_at,
                document.due_at,
                int(version),
            ),
        )
        return Stored(document, version)

    # --- the port --------------------------------------------------------------------

    def create(self, document: Document, *, now: float) -> Stored | None:
        with self._connection(write=True) as db:
            row = db.execute(
                f"SELECT expires_at FROM {self.collection} WHERE key = ?", (document.key,)
            ).fetchone()
            if row is not None and now < row[0]:
                return None
            return self._write(db, document)

    def get(self, key: str, *, now: float) -> Stored | None:
        check_key(key)
        with self._connection() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM {self.collection} WHERE key = ? AND expires_at > ?",
                (key, now),
            ).fetchone()
        return None if row is None else _stored(row)

    def replace(self, document: Document, *, version: str) -> Stored | None:
        with self._connection(write=True) as db:
            row = db.execute(
                f"SELECT version FROM {self.collection} WHERE key = ?", (document.key,)
            ).fetchone()
            if row is None or str(row[0]) != version:
                return None
            return self._write(db, document)

    def delete(self, key: str, *, version: str) -> bool:
        check_key(key)
        if not version.isdigit():
            return False
        with self._connection(write=True) as db:
            cursor = db.execute(
                f"DELETE FROM {self.collection} WHERE key = ? AND version = ?", (key, int(version))
            )
            return cursor.rowcount == 1

    def dead_letters(
        self,
        *,
        now: float,
        limit: int,
        after: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> tuple[list[Document], str | None]:
        check_limit(limit)
        where = ["dead_letter_at IS NOT NULL", "expires_at > ?"]
        args: list[Any] = [now]
        if since is not None:
            where.append("dead_letter_at >= ?")
            args.append(since)
        if until is not None:
            where.append("dead_letter_at < ?")
            args.append(until)
        if after is not None:
            at, key = decode_cursor(after)
            where.append("(dead_letter_at < ? OR (dead_letter_at = ? AND key < ?))")
            args += [at, at, key]
        query = (
            f"SELECT {_COLUMNS} FROM {self.collection} WHERE {' AND '.join(where)}"
            " ORDER BY dead_letter_at DESC, key DESC LIMIT ?"
        )
        with self._connection() as db:
            rows = db.execute(query, [*args, limit + 1]).fetchall()
        page = [_stored(row).document for row in rows[:limit]]
        return page, encode_cursor(page[-1]) if len(rows) > limit else None

    def due(self, *, now: float, limit: int) -> list[Document]:
        check_limit(limit)
        with self._connection() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM {self.collection}"
                " WHERE due_at IS NOT NULL AND due_at <= ? AND expires_at > ?"
                " ORDER BY due_at, key LIMIT ?",
                (now, now, limit),
            ).fetchall()
        return [_stored(row).document for row in rows]


def _stored(row: tuple[Any, ...]) -> Stored:
    key, data, expires_at, dead_letter_at, due_at, version = row
    return Stored(Document(key, json.loads(data), expires_at, dead_letter_at, due_at), str(version))
