"""DatoCMS's announced rate-limit reset, shared by every instance through the state store.

After a `429`, DatoCMS says when its window resets (`X-RateLimit-Reset`). The instance
that got it writes the reset time to one small shared document; every instance reads
that document before each DatoCMS call and holds the call until then. Concurrent
callers of one instance share a read, but only one that began after they asked: a
busy intake pays one store round trip per batch of calls, not per call, and never
trusts a read older than its own question. A store that cannot be read holds nothing
back: the instance's own hold still applies.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from core.errors import StateUnavailable
from core.state import Document, StateStore, upsert

KEY = "datocms-hold"


class SharedHold:
    """The latest announced reset any instance has seen (unix seconds)."""

    def __init__(self, store: StateStore, wall: Callable[[], float]) -> None:
        self._store = store
        self._wall = wall
        self._changed = threading.Condition()
        self._until = 0.0  # the latest reset known here
        self._started = 0  # reads of the shared document begun ...
        self._finished = 0  # ... and ended (one at a time)
        self._waiting = 0

    def remaining(self) -> float:
        """Seconds until the latest announced reset (0 when none is pending), from a read
        of the shared document that began after this call did."""
        with self._changed:
            wanted = self._started + 1  # the first read to begin after this call asked
            while self._finished < wanted:
                if self._started > self._finished:  # a read is in flight: wait for it
                    self._waiting += 1
                    self._changed.wait()
                    self._waiting -= 1
                    continue
                self._started += 1  # none in flight, none begun since: read now
                self._changed.release()
                try:
                    self._read()
                finally:
                    self._changed.acquire()
                    self._finished = self._started
                    self._changed.notify_all()
            return max(0.0, self._until - self._wall())

    def waiting(self) -> int:
        """Callers waiting for a read in flight or for the next one."""
        with self._changed:
            return self._waiting

    def _read(self) -> None:
        try:
            stored = self._store.get(KEY, now=self._wall())
        except StateUnavailable:
            return  # this read holds nothing back; the next call reads again
        until = stored.document.data.get("until") if stored is not None else None
        if isinstance(until, int | float):
            with self._changed:
                self._until = max(self._until, float(until))

    def announce(self, seconds: float) -> None:
        """Hold every instance's calls for `seconds` (a later reset wins)."""
        now = self._wall()
        until = now + seconds
        with self._changed:
            self._until = max(self._until, until)

        def later(document: Document) -> Document:
            held = document.data.get("until")
            if isinstance(held, int | float) and held >= until:
                return document
            return _document(until)

        with contextlib.suppress(StateUnavailable):  # this instance still holds its own calls
            upsert(self._store, KEY, later, lambda: _document(until), now=now)


def _document(until: float) -> Document:
    return Document(key=KEY, data={"until": until}, expires_at=until + 60.0)
