"""DatoCMS's announced rate-limit reset, shared by every instance through the state store.

After a `429`, DatoCMS says when its window resets (`X-RateLimit-Reset`). The instance
that got it writes the reset time to one small shared document; every instance reads
that document before each DatoCMS call (one key lookup) and holds the call until then.
A store that cannot be read holds nothing back: the instance's own hold still applies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from core.errors import StateUnavailable
from core.state import Document, StateStore, upsert

KEY = "datocms-hold"


class SharedHold:
    """The latest announced reset any instance has seen (unix seconds)."""

    def __init__(self, store: StateStore, wall: Callable[[], float]) -> None:
        self._store = store
        self._wall = wall

    def remaining(self) -> float:
        """Seconds until the latest announced reset (0 when none is pending)."""
        now = self._wall()
        try:
            stored = self._store.get(KEY, now=now)
        except StateUnavailable:
            return 0.0
        if stored is None:
            return 0.0
        until = stored.document.data.get("until")
        return max(0.0, float(until) - now) if isinstance(until, int | float) else 0.0

    def announce(self, seconds: float) -> None:
        """Hold every instance's calls for `seconds` (a later reset wins)."""
        now = self._wall()
        until = now + seconds

        def later(document: Document) -> Document:
            held = document.data.get("until")
            if isinstance(held, int | float) and held >= until:
                return document
            return _document(until)

        with contextlib.suppress(StateUnavailable):  # this instance still holds its own calls
            upsert(self._store, KEY, later, lambda: _document(until), now=now)


def _document(until: float) -> Document:
    return Document(key=KEY, data={"until": until}, expires_at=until + 60.0)
