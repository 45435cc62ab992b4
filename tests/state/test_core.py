"""The pure parts: document values, the cursor, `update` exhausting its attempts, the factory."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from adapters.state_firestore import FirestoreStateStore, to_fields
from adapters.state_sqlite import SQLiteStateStore
from adapters.state_store import open_state_store
from core.errors import Misconfigured, StateUnavailable
from core.state import Document, Stored, decode_cursor, encode_cursor, update, upsert

T = 1_900_000_000.0


@pytest.mark.parametrize("key", ["", "a/b", "a b", "é", "x" * 201])
def test_a_key_outside_the_alphabet_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        Document(key, {}, T)


@pytest.mark.parametrize("value", [math.nan, math.inf, True])
def test_times_must_be_finite_numbers(value: float) -> None:
    with pytest.raises(ValueError, match="expires_at"):
        Document("a", {}, value)
    with pytest.raises(ValueError, match="due_at"):
        Document("a", {}, T, due_at=value)


def test_a_cursor_round_trips_and_is_url_safe() -> None:
    cursor = encode_cursor(Document("Key_9-x", {}, T, dead_letter_at=T + 1 / 3))

    assert decode_cursor(cursor) == (T + 1 / 3, "Key_9-x")
    assert cursor.isascii()
    assert all(c.isalnum() or c in "-_" for c in cursor)


@pytest.mark.parametrize("cursor", ["", "!!", "WzEsMl0", "bnVsbA", "WyJ4IiwiYSJd"])
def test_a_cursor_this_module_did_not_make_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(cursor)


class AlwaysLosing:
    """A store whose every compare-and-set loses."""

    def __init__(self) -> None:
        self.replaces = 0

    def get(self, key: str, *, now: float) -> Stored:
        return Stored(Document(key, {}, T + 60), "v")

    def replace(self, document: Document, *, version: str) -> None:
        self.replaces += 1


def test_update_gives_up_with_state_unavailable_after_its_attempts() -> None:
    store = AlwaysLosing()

    with pytest.raises(StateUnavailable, match="3 attempts"):
        update(store, "a", lambda d: d, now=T, attempts=3)  # type: ignore[arg-type]

    assert store.replaces == 3


def test_expire_at_is_written_as_rfc3339_with_microseconds() -> None:
    fields = to_fields(Document("a", {}, T + 0.5))

    assert fields["expire_at"] == {"timestampValue": "2030-03-17T17:46:40.500000Z"}


def test_the_factory_opens_the_configured_backend_without_io(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "state.sqlite3"

    sqlite = open_state_store(backend="sqlite", collection="shared", sqlite_path=path)
    firestore = open_state_store(
        backend="firestore",
        collection="requests",
        firestore_project="proj",
        firestore_emulator_host="127.0.0.1:1",
    )

    assert isinstance(sqlite, SQLiteStateStore)
    assert (sqlite.path, sqlite.collection) == (path, "shared")
    assert not path.parent.exists()
    assert isinstance(firestore, FirestoreStateStore)
    assert firestore.base == ("http://127.0.0.1:1/v1/projects/proj/databases/(default)/documents")


def test_the_factory_names_the_missing_or_wrong_setting() -> None:
    with pytest.raises(Misconfigured) as missing:
        open_state_store(backend="firestore", collection="requests", firestore_project="")
    with pytest.raises(Misconfigured) as unknown:
        open_state_store(backend="redis", collection="requests")

    assert missing.value.variables == ("FIRESTORE_PROJECT",)
    assert unknown.value.variables == ("STATE_BACKEND",)


def test_upsert_creates_when_absent_and_changes_when_present(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "s.db", "shared")

    def counted(doc: Document) -> Document:
        return Document(doc.key, {"n": doc.data["n"] + 1}, doc.expires_at)

    def first() -> Document:
        return Document("k", {"n": 1}, 100.0)

    created = upsert(store, "k", counted, first, now=0.0)
    changed = upsert(store, "k", counted, first, now=0.0)
    assert created is not None and created.document.data == {"n": 1}
    assert changed is not None and changed.document.data == {"n": 2}


def test_upsert_changes_the_document_a_racing_writer_created_first(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "s.db", "shared")

    def counted(doc: Document) -> Document:
        return Document(doc.key, {"n": doc.data["n"] + 1}, doc.expires_at)

    def first() -> Document:  # another writer creates it between our read and our create
        store.create(Document("k", {"n": 10}, 100.0), now=0.0)
        return Document("k", {"n": 1}, 100.0)

    stored = upsert(store, "k", counted, first, now=0.0)
    assert stored is not None and stored.document.data == {"n": 11}
