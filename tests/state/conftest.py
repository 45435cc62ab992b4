"""The `store` fixture: each contract test runs on SQLite and on the Firestore emulator."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.state_firestore import FirestoreStateStore
from adapters.state_sqlite import SQLiteStateStore
from core.state import StateStore

StoreFactory = Callable[..., StateStore]

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("firestore", id="firestore", marks=pytest.mark.xdist_group("firestore")),
]


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Stores of one backend that share a database (file or project) within the test."""
    made: list[SQLiteStateStore] = []
    if request.param == "sqlite":

        def make(collection: str = "requests") -> StateStore:
            store = SQLiteStateStore(tmp_path / "state" / "state.sqlite3", collection)
            made.append(store)
            return store

        yield make
        for store in made:
            store.close()
        return

    host = request.getfixturevalue("firestore_emulator_host")
    project = f"test-{secrets.token_hex(6)}"  # the emulator accepts any project: isolation

    def make_firestore(collection: str = "requests") -> StateStore:
        return FirestoreStateStore(project=project, collection=collection, emulator_host=host)

    yield make_firestore


@pytest.fixture
def store(make_store: StoreFactory) -> StateStore:
    return make_store()
