"""Choose the `StateStore` adapter for a collection (`requests` or `shared`) from plain values.

Wired from the settings `STATE_BACKEND`, `STATE_PATH`, `FIRESTORE_PROJECT` (or
`TASKS_PROJECT`), `FIRESTORE_DATABASE` and `FIRESTORE_EMULATOR_HOST`. Opening is
cheap and does no I/O: each adapter connects on first use.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import Misconfigured
from core.state import StateStore

COLLECTIONS = ("requests", "shared")
DEFAULT_SQLITE_PATH = ".devstack/state.sqlite3"


def open_state_store(
    *,
    backend: str,
    collection: str,
    sqlite_path: str | Path = DEFAULT_SQLITE_PATH,
    firestore_project: str | None = None,
    firestore_database: str | None = None,
    firestore_emulator_host: str | None = None,
) -> StateStore:
    """The store of `collection`. Raises `Misconfigured` for an unknown backend or a
    Firestore backend without a project."""
    if collection not in COLLECTIONS:
        raise ValueError(f"collection must be one of {', '.join(COLLECTIONS)}")
    if backend == "sqlite":
        from adapters.state_sqlite import SQLiteStateStore  # noqa: PLC0415

        return SQLiteStateStore(sqlite_path or DEFAULT_SQLITE_PATH, collection)
    if backend == "firestore":
        if not firestore_project:
            raise Misconfigured(["FIRESTORE_PROJECT"])
        from adapters.state_firestore import FirestoreStateStore  # noqa: PLC0415

        return FirestoreStateStore(
            project=firestore_project,
            collection=collection,
            database=firestore_database or "(default)",
            emulator_host=firestore_emulator_host or None,
        )
    raise Misconfigured(["STATE_BACKEND"], "unknown value of")
