"""Group commit: concurrent writes share batches, one write per document per batch."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from adapters.group_commit import GroupCommit


class Recorder:
    """A `send` that records its batches; the first one blocks until released."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, int]]] = []
        self.first_started = threading.Event()
        self.release = threading.Event()

    def send(self, batch: list[tuple[str, int]]) -> list[str | BaseException]:
        self.batches.append(batch)
        if len(self.batches) == 1:
            self.first_started.set()
            assert self.release.wait(10)
        return [f"{key}:{n}" for key, n in batch]


def test_a_lone_write_is_sent_at_once_and_alone() -> None:
    recorder = Recorder()
    recorder.release.set()
    group: GroupCommit[tuple[str, int], str] = GroupCommit(recorder.send, RuntimeError, limit=100)
    assert group.write("a", ("a", 1)) == "a:1"
    assert recorder.batches == [[("a", 1)]]


def test_writes_arriving_during_a_batch_go_together_in_the_next() -> None:
    recorder = Recorder()
    group: GroupCommit[tuple[str, int], str] = GroupCommit(recorder.send, RuntimeError, limit=100)
    results: dict[str, str] = {}

    def write(key: str) -> None:
        results[key] = group.write(key, (key, 1))

    first = threading.Thread(target=write, args=("first",))
    first.start()
    assert recorder.first_started.wait(10)
    others = [threading.Thread(target=write, args=(f"k{n}",)) for n in range(6)]
    for thread in others:
        thread.start()
    while group.waiting() < 6:  # all six queued behind the batch in flight
        threading.Event().wait(0.01)
    recorder.release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert len(recorder.batches) == 2
    assert sorted(key for key, _ in recorder.batches[1]) == [f"k{n}" for n in range(6)]
    assert results == {key: f"{key}:1" for key in ["first", *(f"k{n}" for n in range(6))]}


def test_two_writes_of_one_document_never_share_a_batch() -> None:
    recorder = Recorder()
    recorder.release.set()
    group: GroupCommit[tuple[str, int], str] = GroupCommit(recorder.send, RuntimeError, limit=3)
    barrier = threading.Barrier(12)

    def write(key: str, n: int) -> None:
        barrier.wait()
        assert group.write(key, (key, n)) == f"{key}:{n}"

    threads = [threading.Thread(target=write, args=(k, n)) for k in "ab" for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sum(len(batch) for batch in recorder.batches) == 12
    for batch in recorder.batches:
        assert len(batch) <= 3
        assert max(Counter(key for key, _ in batch).values()) == 1


class Unavailable(Exception):
    pass


def test_a_failed_batch_fails_each_of_its_writes_and_an_outcome_fails_only_its_own() -> None:
    def send(batch: list[str]) -> list[str | Exception]:
        if "boom" in batch:
            raise ConnectionError("down")
        return [ValueError(w) if w == "bad" else w.upper() for w in batch]

    group: GroupCommit[str, str] = GroupCommit(send, lambda e: Unavailable(str(e)), limit=9)
    with pytest.raises(Unavailable, match="down") as failed:
        group.write("x", "boom")
    assert isinstance(failed.value.__cause__, ConnectionError)
    with pytest.raises(ValueError, match="bad"):
        group.write("y", "bad")
    assert group.write("z", "ok") == "OK"  # nothing left waiting or stuck


def test_each_caller_of_a_failed_batch_gets_its_own_error_and_an_interruption_stays_put() -> None:
    started, release = threading.Event(), threading.Event()
    batches: list[list[str]] = []

    def send(batch: list[str]) -> list[str | Exception]:
        batches.append(batch)
        if len(batches) == 1:
            started.set()
            assert release.wait(10)
            return [w.upper() for w in batch]
        raise KeyboardInterrupt  # the second batch: its sender is interrupted

    group: GroupCommit[str, str] = GroupCommit(send, lambda e: Unavailable(repr(e)), limit=9)
    outcomes: dict[str, BaseException | str] = {}

    def write(key: str) -> None:
        try:
            outcomes[key] = group.write(key, key)
        except BaseException as error:  # what each thread got is the point
            outcomes[key] = error

    threads = [threading.Thread(target=write, args=(key,)) for key in ("a", "b", "c", "d")]
    threads[0].start()
    assert started.wait(10)
    for thread in threads[1:]:
        thread.start()
    while group.waiting() < 3:
        threading.Event().wait(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    assert outcomes["a"] == "A"
    errors = [outcomes[key] for key in "bcd"]
    interrupted = [e for e in errors if isinstance(e, KeyboardInterrupt)]
    wrapped = [e for e in errors if isinstance(e, Unavailable)]
    assert len(interrupted) == 1 and len(wrapped) == 2  # the sender alone is interrupted
    assert wrapped[0] is not wrapped[1]
    assert all(isinstance(e.__cause__, KeyboardInterrupt) for e in wrapped)
