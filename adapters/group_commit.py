"""Group commit: the concurrent writes of one process, sent to the store together.

Under load every intake writes its record twice; sent one by one, each write is a
round trip to Firestore. Here the first writer sends at once; writers that arrive
while a batch is in flight wait for it, and the next batch takes them all, at most
one write per document (Firestore's `batchWrite` refuses two) and oldest first.
Nothing ever waits for a timer: at low load every batch is a single write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

W = TypeVar("W")
R = TypeVar("R")


@dataclass(eq=False)
class _Pending(Generic[W, R]):
    key: Hashable
    write: W
    done: bool = False
    outcome: R | None = None
    error: Exception | None = None


class GroupCommit(Generic[W, R]):
    """Sends writes through `send(batch) -> outcome per write, in order`.

    An outcome that is an exception is raised to that write's caller alone. When
    `send` raises, every caller of the batch gets its own `failed(error)`, chained to
    it; an interruption (`KeyboardInterrupt`, `SystemExit`) is raised again in the
    thread that sent the batch.
    """

    def __init__(
        self,
        send: Callable[[list[W]], list[R | Exception]],
        failed: Callable[[BaseException], Exception],
        *,
        limit: int,
    ) -> None:
        self._send = send
        self._failed = failed
        self._limit = limit
        self._changed = threading.Condition()
        self._queue: list[_Pending[W, R]] = []
        self._sending = False

    def write(self, key: Hashable, write: W) -> R:
        """Send `write` (of the document `key`) with the others waiting; its outcome."""
        pending: _Pending[W, R] = _Pending(key, write)
        with self._changed:
            self._queue.append(pending)
            # Not done and still queued: wait for the batch in flight, or lead the next.
            # (A write taken from the queue is in a batch in flight until it is done.)
            while not pending.done:
                if self._sending:
                    self._changed.wait()
                    continue
                batch = self._take()
                self._sending = True
                self._changed.release()
                try:
                    self._flush(batch)
                finally:
                    self._changed.acquire()
                    self._sending = False
                    self._changed.notify_all()  # publishes the batch's outcomes
        if pending.error is not None:
            raise pending.error
        return cast(R, pending.outcome)

    def waiting(self) -> int:
        """Writes queued behind the batch in flight."""
        with self._changed:
            return len(self._queue)

    def _take(self) -> list[_Pending[W, R]]:
        """The oldest waiting writes, one per document, up to the limit (lock held)."""
        batch: list[_Pending[W, R]] = []
        keys: set[Hashable] = set()
        for pending in self._queue:
            if len(batch) == self._limit:
                break
            if pending.key not in keys:
                keys.add(pending.key)
                batch.append(pending)
        taken = {id(pending) for pending in batch}
        self._queue = [pending for pending in self._queue if id(pending) not in taken]
        return batch

    def _flush(self, batch: list[_Pending[W, R]]) -> None:
        """Send one batch and note each write's outcome (lock released)."""
        try:
            outcomes = self._send([pending.write for pending in batch])
            if len(outcomes) != len(batch):
                raise ValueError(f"{len(outcomes)} outcomes for {len(batch)} writes")
        except BaseException as failure:
            for pending in batch:  # each caller raises its own error, chained to this one
                error = self._failed(failure)
                error.__cause__ = failure
                pending.error, pending.done = error, True
            if not isinstance(failure, Exception):
                raise  # an interruption belongs to this thread
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                pending.error = outcome
            else:
                pending.outcome = outcome
            pending.done = True
