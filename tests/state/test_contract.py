"""The `StateStore` contract, run against every adapter (`store` is parametrised).

Time is passed as `now`; nothing sleeps. T is an arbitrary instant.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.state import Document, StateStore, Stored, update
from tests.state.conftest import StoreFactory

T = 1_900_000_000.0
DAY = 86_400.0


def doc(key: str, expires_at: float = T + DAY, **fields: object) -> Document:
    data = fields.pop("data", {"key": key})
    return Document(key, data, expires_at, **fields)  # type: ignore[arg-type]


def created(store: StateStore, document: Document, now: float = T) -> Stored:
    stored = store.create(document, now=now)
    assert stored is not None
    return stored


def test_exactly_one_of_20_concurrent_creators_wins(store: StateStore) -> None:
    barrier = threading.Barrier(20)

    def attempt(n: int) -> Stored | None:
        barrier.wait()
        return store.create(doc("race", data={"writer": n}), now=T)

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(attempt, range(20)))

    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert store.get("race", now=T) == winners[0]


def test_a_live_document_is_not_created_again(store: StateStore) -> None:
    first = created(store, doc("a", data={"n": 1}))

    assert store.create(doc("a", data={"n": 2}), now=T + 10) is None
    assert store.get("a", now=T + 10) == first


def test_get_returns_what_was_written_with_its_version(store: StateStore) -> None:
    document = doc("a", dead_letter_at=T - 5, due_at=T + 7)

    stored = created(store, document)

    assert store.get("a", now=T) == stored
    assert stored.document == document
    assert store.get("missing", now=T) is None


def test_replace_with_a_stale_version_fails_and_keeps_the_newer_document(
    store: StateStore,
) -> None:
    first = created(store, doc("a", data={"n": 1}))
    second = store.replace(doc("a", data={"n": 2}), version=first.version)

    stale = store.replace(doc("a", data={"n": 3}), version=first.version)

    assert second is not None
    assert second.version != first.version
    assert stale is None
    assert store.get("a", now=T) == second


def test_replace_of_a_deleted_or_recreated_document_fails(store: StateStore) -> None:
    first = created(store, doc("a"))
    assert store.delete("a", version=first.version)

    assert store.replace(doc("a"), version=first.version) is None
    assert store.get("a", now=T) is None
    again = created(store, doc("a", data={"n": 2}))
    assert again.version != first.version
    assert store.replace(doc("a"), version=first.version) is None


def test_delete_needs_the_current_version(store: StateStore) -> None:
    first = created(store, doc("a"))
    second = store.replace(doc("a", data={"n": 2}), version=first.version)
    assert second is not None

    assert store.delete("a", version=first.version) is False
    assert store.delete("a", version=second.version) is True
    assert store.delete("a", version=second.version) is False
    assert store.get("a", now=T) is None


def test_an_expired_document_reads_as_absent_before_any_deletion(store: StateStore) -> None:
    created(store, doc("a", expires_at=T + 60))

    assert store.get("a", now=T + 59.999) is not None
    assert store.get("a", now=T + 60) is None


def test_an_expired_document_can_be_created_again(store: StateStore) -> None:
    old = created(store, doc("a", expires_at=T + 60, data={"n": 1}))

    new = store.create(doc("a", expires_at=T + 600, data={"n": 2}), now=T + 60)

    assert new is not None
    assert store.get("a", now=T + 60) == new
    assert store.replace(doc("a"), version=old.version) is None


def test_creators_racing_over_an_expired_document_have_one_winner(store: StateStore) -> None:
    created(store, doc("a", expires_at=T + 60))
    barrier = threading.Barrier(8)

    def attempt(n: int) -> Stored | None:
        barrier.wait()
        return store.create(doc("a", expires_at=T + 600, data={"writer": n}), now=T + 60)

    with ThreadPoolExecutor(8) as pool:
        results = [r for r in pool.map(attempt, range(8)) if r is not None]

    assert len(results) == 1
    assert store.get("a", now=T + 60) == results[0]


def test_unicode_and_nested_json_round_trip_exactly(store: StateStore) -> None:
    data = {
        "text": 'é ü ✓ 漢字 🎵 \u2028 "quoted" \\ </script>',
        "nested": {"list": [1, 2.5, -0.0, None, True, {"deep": ["x", []]}], "empty": {}},
        "big": 2**53 + 1,
        "float": 0.1 + 0.2,
    }

    created(store, doc("a", data=data))

    stored = store.get("a", now=T)
    assert stored is not None
    assert stored.document.data == data
    assert stored.document.data["nested"]["list"][1] == 2.5


def test_fractional_times_round_trip_exactly(store: StateStore) -> None:
    document = doc("a", expires_at=T + 0.123456789, dead_letter_at=T - 1e-6, due_at=T + 1 / 3)

    created(store, document)

    stored = store.get("a", now=T)
    assert stored is not None
    assert stored.document == document


def test_collections_are_separate(make_store: StoreFactory) -> None:
    requests_, shared = make_store("requests"), make_store("shared")

    created(requests_, doc("a", data={"in": "requests"}))

    assert shared.get("a", now=T) is None
    assert created(shared, doc("a", data={"in": "shared"})).document.data == {"in": "shared"}


def test_dead_letters_are_listed_newest_first_across_pages_including_ties(
    store: StateStore,
) -> None:
    times = {"k0": T - 1, "k1": T - 3, "k2": T - 2, "k3": T - 2, "k4": T - 2, "k5": T - 9}
    for key, at in times.items():
        created(store, doc(key, dead_letter_at=at))
    created(store, doc("not-dead"))

    pages, cursor = [], None
    while True:
        page, cursor = store.dead_letters(now=T, limit=2, after=cursor)
        pages.append([d.key for d in page])
        if cursor is None:
            break

    assert pages == [["k0", "k4"], ["k3", "k2"], ["k1", "k5"]]


def test_a_dead_letter_cursor_is_stable_under_concurrent_inserts(store: StateStore) -> None:
    for key, at in {"a": T - 1, "b": T - 2, "c": T - 3}.items():
        created(store, doc(key, dead_letter_at=at))
    first, cursor = store.dead_letters(now=T, limit=2)

    created(store, doc("newer", dead_letter_at=T))
    created(store, doc("b0", dead_letter_at=T - 2))  # a tie listed before "b": not seen
    created(store, doc("a9", dead_letter_at=T - 2))  # a tie listed after "b"
    second, last = store.dead_letters(now=T, limit=3, after=cursor)

    assert [d.key for d in first] == ["a", "b"]
    assert [d.key for d in second] == ["a9", "c"]
    assert last is None
    assert cursor is not None and cursor.isascii()
    assert all(c.isalnum() or c in "-_" for c in cursor)


def test_dead_letters_range_includes_since_and_excludes_until(store: StateStore) -> None:
    for n in range(6):
        created(store, doc(f"k{n}", dead_letter_at=T + n))

    page, cursor = store.dead_letters(now=T, limit=10, since=T + 1, until=T + 4)
    paged, next_cursor = store.dead_letters(now=T, limit=2, since=T + 1)
    rest, end = store.dead_letters(now=T, limit=10, since=T + 1, after=next_cursor)

    assert [d.key for d in page] == ["k3", "k2", "k1"]
    assert cursor is None
    assert [d.key for d in paged + rest] == ["k5", "k4", "k3", "k2", "k1"]
    assert end is None


def test_dead_letters_and_due_skip_expired_documents(store: StateStore) -> None:
    for n in range(5):
        expires = T + 10 if n % 2 else T + DAY
        created(store, doc(f"k{n}", expires_at=expires, dead_letter_at=T - n, due_at=T - n))

    page, cursor = store.dead_letters(now=T + 10, limit=2)
    rest, end = store.dead_letters(now=T + 10, limit=2, after=cursor)

    assert [d.key for d in page] == ["k0", "k2"]
    assert [d.key for d in rest] == ["k4"]
    assert end is None
    assert [d.key for d in store.due(now=T + 10, limit=10)] == ["k4", "k2", "k0"]


def test_due_lists_documents_due_by_now_oldest_first(store: StateStore) -> None:
    created(store, doc("later", due_at=T + 1))
    created(store, doc("now", due_at=T))
    created(store, doc("earlier", due_at=T - 100))
    created(store, doc("tie", due_at=T - 100))
    created(store, doc("never"))

    assert [d.key for d in store.due(now=T, limit=10)] == ["earlier", "tie", "now"]
    assert [d.key for d in store.due(now=T, limit=2)] == ["earlier", "tie"]
    assert [d.key for d in store.due(now=T + 1, limit=10)][-1] == "later"


def test_update_applies_a_change_with_compare_and_set(store: StateStore) -> None:
    created(store, doc("a", data={"n": 1}))

    result = update(store, "a", lambda d: doc("a", data={"n": d.data["n"] + 1}), now=T)

    assert result is not None
    assert store.get("a", now=T) == result
    assert result.document.data == {"n": 2}


def test_update_retries_when_another_writer_wins_the_race(store: StateStore) -> None:
    created(store, doc("a", data={"n": 1}))
    calls: list[int] = []

    def change(current: Document) -> Document:
        calls.append(current.data["n"])
        if len(calls) == 1:  # another instance writes between our read and our write
            assert update(store, "a", lambda d: doc("a", data={"n": 10}), now=T) is not None
        return doc("a", data={"n": current.data["n"] + 1})

    result = update(store, "a", change, now=T)

    assert calls == [1, 10]
    assert result is not None
    assert result.document.data == {"n": 11}


def test_update_writes_nothing_when_absent_or_when_the_change_declines(
    store: StateStore,
) -> None:
    first = created(store, doc("a"))

    assert update(store, "missing", lambda d: d, now=T) is None
    assert update(store, "a", lambda d: None, now=T) is None
    assert store.get("a", now=T) == first


def test_a_malformed_cursor_raises_value_error(store: StateStore) -> None:
    with pytest.raises(ValueError, match="cursor"):
        store.dead_letters(now=T, limit=2, after="not a cursor!")
