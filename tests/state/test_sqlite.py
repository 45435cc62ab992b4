"""`SQLiteStateStore` specifics: one WAL file shared by connections and processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from adapters.state_sqlite import SQLiteStateStore
from core.errors import StateUnavailable
from core.state import Document

T = 1_900_000_000.0


def test_the_file_is_created_with_its_parent_directories_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.sqlite3"
    store = SQLiteStateStore(path, "requests")

    store.get("x", now=T)
    store.close()

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        indexes = {row[1] for row in db.execute("PRAGMA index_list(requests)")}
    assert {"requests_dead_letter_at", "requests_due_at"} <= indexes


def test_two_connections_to_one_file_see_each_others_writes(tmp_path: Path) -> None:
    one = SQLiteStateStore(tmp_path / "state.sqlite3", "requests")
    two = SQLiteStateStore(tmp_path / "state.sqlite3", "requests")

    first = one.create(Document("a", {"n": 1}, T + 60), now=T)
    assert first is not None
    second = two.replace(Document("a", {"n": 2}, T + 60), version=first.version)

    assert second is not None
    assert one.get("a", now=T) == second
    assert one.create(Document("a", {"n": 3}, T + 60), now=T) is None
    one.close()
    two.close()


def _race(path: str, n: int, barrier: Barrier) -> None:
    store = SQLiteStateStore(path, "requests")
    store.get("warm-up", now=T)  # open the file before the start line
    barrier.wait()
    won = store.create(Document("race", {"process": n}, T + 60), now=T)
    store.close()
    raise SystemExit(0 if won is not None else 3)


def test_exactly_one_of_several_processes_creates_a_document(tmp_path: Path) -> None:
    path = str(tmp_path / "state.sqlite3")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    processes = [context.Process(target=_race, args=(path, n, barrier)) for n in range(4)]

    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)

    codes = sorted(process.exitcode or 0 for process in processes)
    assert codes == [0, 3, 3, 3]
    store = SQLiteStateStore(path, "requests")
    assert store.get("race", now=T) is not None
    store.close()


def test_a_file_locked_past_the_busy_timeout_raises_state_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = SQLiteStateStore(path, "requests", busy_timeout=0.05)
    store.get("x", now=T)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StateUnavailable, match="OperationalError"):
            store.create(Document("a", {}, T + 60), now=T)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.create(Document("a", {}, T + 60), now=T) is not None
    store.close()


def test_a_path_that_cannot_be_opened_raises_state_unavailable(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path, "requests")  # a directory

    with pytest.raises(StateUnavailable):
        store.get("a", now=T)
    store.close()


def test_a_collection_name_that_is_not_an_identifier_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="collection"):
        SQLiteStateStore(tmp_path / "s.sqlite3", "requests; DROP TABLE x")
