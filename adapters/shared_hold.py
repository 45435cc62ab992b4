"""DatoCMS's announced rate-limit reset, shared by every instance through the state store.

After a `429`, DatoCMS says when its window resets (`X-RateLimit-Reset`). The instance
that got it writes the reset time to one small shared document; every instance holds
its calls until then. An instance reads that document at most once per
`FRESH_SECONDS` (a busy intake would otherwise pay one store round trip per request):
a reset announced elsewhere is obeyed within that bound, and a call sent in between
meets the 429 itself and holds every instance again. A store that cannot be read holds
nothing back: the instance's own hold still applies.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from core.errors import StateUnavailable
from core.state import Document, StateStore, upsert

KEY = "datocms-hold"
#: How long a read of the shared document is trusted (well under DatoCMS's window).
FRESH_SECONDS = 1.0


class SharedHold:
    """The latest announced reset any instance has seen (unix seconds)."""

    def __init__(
        self, store: StateStore, wall: Callable[[], float], *, fresh: float = FRESH_SECONDS
    ) -> None:
        self._store = store
        self._wall = wall
        self._fresh = fresh
        self._lock = threading.Lock()
        self._until = 0.0  # the latest reset known here
        self._read_at = float("-inf")

    def remaining(self) -> float:
        """Seconds until the latest announced reset (0 when none is pending)."""
        now = self._wall()
        with self._lock:
            fresh = now - self._read_at < self._fresh
        if not fresh:
            self.read()
        with self._lock:
            return max(0.0, self._until - now)

    def read(self) -> None:
        """Read the shared document now (`remaining` does when its copy is stale)."""
        now = self._wall()
        try:
            stored = self._store.get(KEY, now=now)
        except StateUnavailable:
            return  # tried again on the next call
        until = stored.document.data.get("until") if stored is not None else None
        with self._lock:
            if isinstance(until, int | float):
                self._until = max(self._until, float(until))
            self._read_at = now

    def warm(self) -> None:
        """Read in the background (a cold start's first call then finds a fresh copy)."""
        threading.Thread(target=self.read, name="hold-read", daemon=True).start()

    def announce(self, seconds: float) -> None:
        """Hold every instance's calls for `seconds` (a later reset wins)."""
        now = self._wall()
        until = now + seconds
        with self._lock:
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
