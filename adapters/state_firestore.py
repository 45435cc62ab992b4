"""The Firestore adapter of the `StateStore` port, over the v1 REST API with `requests`.

REST rather than `google.cloud.firestore`, whose import alone slows a cold start.
Every write carries a precondition (`exists: false` to create, the read `updateTime`
to replace or delete), so two instances never both win. Concurrent writes of one
process go out together (`adapters.group_commit`, one `:batchWrite`; each write keeps
its own precondition and outcome). Fields: `data`
(compact JSON string), `expire_at` (timestamp, the TTL field), `expires`,
`dead_letter_at`, `due_at` (doubles). Expired documents are filtered on read.
Timeouts, connection errors, 5xx, 401/403 and any unexpected answer → `StateUnavailable`.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from adapters.group_commit import GroupCommit
from adapters.http import settle_environment
from core.errors import StateUnavailable
from core.state import (
    Document,
    Stored,
    check_key,
    check_limit,
    decode_cursor,
    encode_cursor,
)

SCOPES = ("https://www.googleapis.com/auth/datastore",)
#: A write's status when its precondition failed: NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION.
_LOST = frozenset({5, 6, 9})
#: Writes per `:batchWrite`: nine documents of Firestore's 1 MiB maximum stay under its
#: 10 MiB request limit.
BATCH_LIMIT = 9


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_timestamp(text: str) -> float:
    head, _, fraction = text.rstrip("Z").partition(".")
    whole = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return whole + (float("0." + fraction) if fraction else 0.0)


def to_fields(document: Document) -> dict[str, Any]:
    """The Firestore `fields` of a document."""
    fields: dict[str, Any] = {
        "data": {"stringValue": document.data_json()},
        "expire_at": {"timestampValue": _timestamp(document.expires_at)},
        "expires": {"doubleValue": float(document.expires_at)},
    }
    if document.dead_letter_at is not None:
        fields["dead_letter_at"] = {"doubleValue": float(document.dead_letter_at)}
    if document.due_at is not None:
        fields["due_at"] = {"doubleValue": float(document.due_at)}
    return fields


def _outcome(write: dict[str, Any], code: int, result: Any) -> str | StateUnavailable | None:
    """One write of a `:batchWrite`: its updateTime ("" for a delete), None when its
    precondition failed, or why it failed."""
    if code in _LOST:
        return None
    if code != 0:
        return StateUnavailable(f"Firestore write failed (code {code})")
    version = result.get("updateTime") if isinstance(result, dict) else None
    if isinstance(version, str) and version:
        return version
    if "delete" in write:
        return ""  # a delete has no new version
    return StateUnavailable("Firestore write answered without its update time")


def _batch_failed(failure: BaseException) -> StateUnavailable:
    """What each write of a batch that could not be sent raises."""
    if isinstance(failure, StateUnavailable):
        return StateUnavailable(str(failure))
    return StateUnavailable(f"Firestore batchWrite failed ({type(failure).__name__})")


def _number(value: dict[str, Any] | None) -> float | None:
    if value is None:
        return None
    return float(value.get("doubleValue", value.get("integerValue", 0)))


def from_json(body: dict[str, Any]) -> Stored:
    """A `Stored` from a Firestore REST document; StateUnavailable if it is not one of ours."""
    try:
        return _from_json(body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateUnavailable(
            f"Firestore document of another shape ({type(exc).__name__})"
        ) from exc


def _from_json(body: dict[str, Any]) -> Stored:
    fields = body.get("fields", {})
    expires = _number(fields.get("expires"))
    if expires is None:
        expires = _parse_timestamp(fields["expire_at"]["timestampValue"])
    document = Document(
        key=body["name"].rsplit("/", 1)[1],
        data=json.loads(fields["data"]["stringValue"]),
        expires_at=expires,
        dead_letter_at=_number(fields.get("dead_letter_at")),
        due_at=_number(fields.get("due_at")),
    )
    return Stored(document, body["updateTime"])


class FirestoreStateStore:
    """`StateStore` on one Firestore collection; thread-safe (one session, made lazily)."""

    def __init__(
        self,
        *,
        project: str,
        collection: str,
        database: str = "(default)",
        emulator_host: str | None = None,
        timeout: tuple[float, float] = (3.0, 10.0),
        session: requests.Session | None = None,
    ) -> None:
        if not project or not collection or "/" in collection:
            raise ValueError("project and a collection id are required")
        self.collection = collection
        self.database_path = f"projects/{project}/databases/{database or '(default)'}"
        origin = f"http://{emulator_host}" if emulator_host else "https://firestore.googleapis.com"
        self.emulator_host = emulator_host or None
        self.base = f"{origin}/v1/{self.database_path}/documents"
        self.timeout = timeout
        self._session = session
        self._given_session = session is not None
        self._lock = threading.Lock()
        self._writes: GroupCommit[dict[str, Any], str | None] = GroupCommit(
            self._write_batch, _batch_failed, limit=BATCH_LIMIT
        )

    # --- transport -------------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                self._session = self._new_session()
            return self._session

    def _new_session(self) -> requests.Session:
        if self.emulator_host:
            session = settle_environment(requests.Session(), self.base)
            session.headers["Authorization"] = "Bearer owner"
            return session
        import google.auth  # noqa: PLC0415
        from google.auth.exceptions import GoogleAuthError  # noqa: PLC0415
        from google.auth.transport.requests import AuthorizedSession  # noqa: PLC0415

        try:
            credentials, _ = google.auth.default(scopes=list(SCOPES))
        except GoogleAuthError as exc:
            raise StateUnavailable(f"no usable Google credentials ({type(exc).__name__})") from exc
        authorized: requests.Session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
        return settle_environment(authorized, self.base)

    def _failures(self) -> tuple[type[Exception], ...]:
        """What a call may raise: `google.auth` is imported only when credentials are used
        (against the emulator, a plain session of this store's own: a cheaper first call)."""
        if self.emulator_host and not self._given_session:
            return (requests.RequestException, ValueError)
        from google.auth.exceptions import GoogleAuthError  # noqa: PLC0415

        return (requests.RequestException, GoogleAuthError, ValueError)

    def _call(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        """(status, parsed body) of a 2xx or 4xx answer; StateUnavailable otherwise."""
        failures = self._failures()
        try:
            response = self.session.request(method, url, json=body, timeout=self.timeout)
            status = response.status_code
            parsed = response.json() if response.content else {}
        except failures as exc:
            raise StateUnavailable(f"Firestore {method} failed ({type(exc).__name__})") from exc
        if status >= 500 or status in (401, 403, 429):
            raise StateUnavailable(f"Firestore {method} answered {status}")
        return status, parsed

    def _status(self, parsed: Any) -> str:
        error = parsed.get("error", {}) if isinstance(parsed, dict) else {}
        return str(error.get("status", "")) if isinstance(error, dict) else ""

    def _name(self, key: str) -> str:
        return f"{self.database_path}/documents/{self.collection}/{check_key(key)}"

    def _commit(self, key: str, write: dict[str, Any]) -> str | None:
        """The new updateTime, or None when the precondition failed (sent with the
        writes other threads make meanwhile: `adapters.group_commit`)."""
        return self._writes.write(key, write)

    def _write_batch(self, writes: list[dict[str, Any]]) -> list[str | Exception | None]:
        """One `:batchWrite`: per write, its updateTime, None (precondition failed) or why not.

        Preconditions go in the request body: the emulator ignores a
        `currentDocument.updateTime` query parameter on PATCH/DELETE (seen: it compares with 0).
        Firestore refuses a whole batch with a 400 when one write is invalid: then each is
        sent alone, so that only the invalid one fails.
        """
        status, parsed = self._call("POST", f"{self.base}:batchWrite", {"writes": writes})
        if status == 400 and len(writes) > 1:
            return [self._write_alone(write) for write in writes]
        if status >= 300:
            raise StateUnavailable(f"Firestore batchWrite answered {status} {self._status(parsed)}")
        try:
            results, statuses = parsed["writeResults"], parsed["status"]
            codes = [int(state.get("code", 0)) for state in statuses]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateUnavailable(f"Firestore batchWrite answer unreadable ({exc!r})") from exc
        if len(codes) != len(writes) or len(results) != len(writes):
            raise StateUnavailable("Firestore batchWrite answered for other writes")
        return [_outcome(*each) for each in zip(writes, codes, results, strict=True)]

    def _write_alone(self, write: dict[str, Any]) -> str | Exception | None:
        try:
            return self._write_batch([write])[0]
        except StateUnavailable as failure:
            return failure

    def _put(self, document: Document, precondition: dict[str, Any]) -> Stored | None:
        update = {"name": self._name(document.key), "fields": to_fields(document)}
        version = self._commit(document.key, {"update": update, "currentDocument": precondition})
        return None if version is None else Stored(document, version)

    def _read(self, key: str) -> Stored | None:
        url = f"{self.base}/{self.collection}/{quote(check_key(key))}"
        status, parsed = self._call("GET", url)
        if status == 404:
            return None
        if status >= 300:
            raise StateUnavailable(f"Firestore get answered {status} {self._status(parsed)}")
        return from_json(parsed)

    # --- the port --------------------------------------------------------------------

    def create(self, document: Document, *, now: float) -> Stored | None:
        for _ in range(4):
            created = self._put(document, {"exists": False})
            if created is not None:
                return created
            current = self._read(document.key)
            if current is None:
                continue  # deleted (by TTL?) since: try again
            if current.document.is_live(now):
                return None
            replaced = self._put(document, {"updateTime": current.version})
            if replaced is not None:
                return replaced
        raise StateUnavailable(f"Firestore create of {document.key} kept losing races")

    def get(self, key: str, *, now: float) -> Stored | None:
        stored = self._read(key)
        return stored if stored is not None and stored.document.is_live(now) else None

    def replace(self, document: Document, *, version: str) -> Stored | None:
        return self._put(document, {"updateTime": version})

    def delete(self, key: str, *, version: str) -> bool:
        write = {"delete": self._name(key), "currentDocument": {"updateTime": version}}
        return self._commit(key, write) is not None

    def _query(self, query: dict[str, Any]) -> list[Document]:
        query["from"] = [{"collectionId": self.collection}]
        url = f"{self.base}:runQuery"
        status, parsed = self._call("POST", url, {"structuredQuery": query})
        if status >= 300 or not isinstance(parsed, list):
            raise StateUnavailable(f"Firestore query answered {status} {self._status(parsed)}")
        return [from_json(item["document"]).document for item in parsed if "document" in item]

    def _live(
        self, query: dict[str, Any], limit: int, now: float, order: list[str]
    ) -> list[Document]:
        """Up to `limit` live documents of `query`, skipping expired ones page by page."""
        found: list[Document] = []
        while True:
            query["limit"] = limit + 1 - len(found)
            batch = self._query(dict(query))
            found += [d for d in batch if d.is_live(now)]
            if len(found) > limit or len(batch) < query["limit"]:
                return found
            last = batch[-1]
            values = [{"doubleValue": getattr(last, field)} for field in order]
            query["startAt"] = {
                "values": [*values, {"referenceValue": self._name(last.key)}],
                "before": False,
            }

    def dead_letters(
        self,
        *,
        now: float,
        limit: int,
        after: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> tuple[list[Document], str | None]:
        check_limit(limit)
        filters = []
        if since is not None:
            filters.append(_filter("dead_letter_at", "GREATER_THAN_OR_EQUAL", since))
        if until is not None:
            filters.append(_filter("dead_letter_at", "LESS_THAN", until))
        query: dict[str, Any] = {"orderBy": _order("dead_letter_at", "DESCENDING")}
        if filters:
            query["where"] = {"compositeFilter": {"op": "AND", "filters": filters}}
        if after is not None:
            at, key = decode_cursor(after)
            query["startAt"] = {
                "values": [{"doubleValue": at}, {"referenceValue": self._name(key)}],
                "before": False,
            }
        found = self._live(query, limit, now, ["dead_letter_at"])
        page = found[:limit]
        return page, encode_cursor(page[-1]) if len(found) > limit else None

    def due(self, *, now: float, limit: int) -> list[Document]:
        check_limit(limit)
        query: dict[str, Any] = {
            "where": _filter("due_at", "LESS_THAN_OR_EQUAL", now),
            "orderBy": _order("due_at", "ASCENDING"),
        }
        return self._live(query, limit, now, ["due_at"])[:limit]


def _filter(field: str, op: str, value: float) -> dict[str, Any]:
    return {
        "fieldFilter": {
            "field": {"fieldPath": field},
            "op": op,
            "value": {"doubleValue": float(value)},
        }
    }


def _order(field: str, direction: str) -> list[dict[str, Any]]:
    return [
        {"field": {"fieldPath": field}, "direction": direction},
        {"field": {"fieldPath": "__name__"}, "direction": direction},
    ]
