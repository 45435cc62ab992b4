"""The state store port: documents with a few indexed fields, compare-and-set by version.

Pure: values, the `StateStore` protocol, the dead-letter cursor and the `update`
loop. Adapters: `adapters.state_sqlite` (local), `adapters.state_firestore`.
A document is live while `now < expires_at`; an expired one reads as absent even
before anything deletes it. Adapters raise `StateUnavailable` for any I/O failure
and `ValueError` for a malformed key, document or cursor (a caller's mistake).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import StateUnavailable

KEY = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


def check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY.fullmatch(key):
        raise ValueError("a state key must be 1 to 200 characters of [A-Za-z0-9_-]")
    return key


def _finite(value: float | None, what: str) -> None:
    if value is not None and (isinstance(value, bool) or not math.isfinite(value)):
        raise ValueError(f"{what} must be a finite number of unix seconds")


@dataclass(frozen=True)
class Document:
    """One stored document; `data` is opaque JSON, the other fields are indexed."""

    key: str
    data: dict[str, Any]
    expires_at: float
    dead_letter_at: float | None = None
    due_at: float | None = None

    def __post_init__(self) -> None:
        check_key(self.key)
        if not isinstance(self.data, dict):
            raise ValueError("document data must be a JSON object")
        _finite(self.expires_at, "expires_at")
        _finite(self.dead_letter_at, "dead_letter_at")
        _finite(self.due_at, "due_at")

    def is_live(self, now: float) -> bool:
        return now < self.expires_at

    def data_json(self) -> str:
        """`data` as compact JSON text (raises ValueError/TypeError if not JSON-compatible)."""
        return json.dumps(self.data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class Stored:
    """A document as read or written, with the opaque version a `replace` must name."""

    document: Document
    version: str


class StateStore(Protocol):
    def create(self, document: Document, *, now: float) -> Stored | None:
        """Create if absent (an expired one counts as absent). None if a live one exists."""

    def get(self, key: str, *, now: float) -> Stored | None:
        """The live document `key`, or None."""

    def replace(self, document: Document, *, version: str) -> Stored | None:
        """Write only if the stored version is still `version`; None if it moved on or vanished."""

    def delete(self, key: str, *, version: str) -> bool:
        """Delete only if the stored version is still `version`."""

    def dead_letters(
        self,
        *,
        now: float,
        limit: int,
        after: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> tuple[list[Document], str | None]:
        """Live documents with `dead_letter_at` in [since, until), newest first, and the
        cursor of the next page (None on the last page)."""

    def due(self, *, now: float, limit: int) -> list[Document]:
        """Live documents whose `due_at <= now`, oldest `due_at` first."""


def encode_cursor(document: Document) -> str:
    """The URL-safe position just after `document` in the dead-letter order."""
    raw = json.dumps([document.dead_letter_at, document.key], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """(dead_letter_at, key) of a cursor; ValueError if it is not one this module made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, key = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError("malformed cursor") from exc
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise ValueError("malformed cursor")
    if not isinstance(key, str) or not KEY.fullmatch(key):
        raise ValueError("malformed cursor")
    return float(at), key


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError("limit must be a positive integer")
    return limit


def update(
    store: StateStore,
    key: str,
    change: Callable[[Document], Document | None],
    *,
    now: float,
    attempts: int = 8,
) -> Stored | None:
    """Read, change, compare-and-set; again on a lost race, at most `attempts` times.

    None when the document is absent or `change` returns None (nothing written).
    `change` may run several times. Raises `StateUnavailable` when every attempt lost.
    """
    for _ in range(attempts):
        stored = store.get(key, now=now)
        if stored is None:
            return None
        changed = change(stored.document)
        if changed is None:
            return None
        if changed.key != key:
            raise ValueError("change must keep the document's key")
        written = store.replace(changed, version=stored.version)
        if written is not None:
            return written
    raise StateUnavailable(f"state document {key} kept changing ({attempts} attempts)")


def upsert(
    store: StateStore,
    key: str,
    change: Callable[[Document], Document | None],
    absent: Callable[[], Document],
    *,
    now: float,
) -> Stored | None:
    """`update` the document `key`, or create `absent()` when there is none; when another
    writer creates it first, `update` theirs. Raises `StateUnavailable` like `update`."""
    stored = update(store, key, change, now=now)
    if stored is None:
        stored = store.create(absent(), now=now) or update(store, key, change, now=now)
    return stored
