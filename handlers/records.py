"""Reading and changing request records in the state store, for every handler.

Creation is create-if-absent; every later change is a compare-and-set on the
record's version (`mutate`), so that two instances never both win a transition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

from adapters.service import Service
from adapters.tasks import callback_retry
from core.errors import StateUnavailable
from core.model import DeletionRequest
from core.record import LEASE_SECONDS, Callback, Existing, Record, on_existing, to_document
from core.sealing import NONCE_BYTES, seal, unseal
from core.state import Document
from core.urlpolicy import parse_callback_url
from handlers.responses import Reply

#: Room past a request's deadline and its callback budget: before its record may expire,
#: and before a task's signed body stops being honoured (the queues' own retries).
GRACE_SECONDS = 24 * 3600.0

Claim = Literal["won"] | Existing


def location(service: Service, request_id: str) -> str:
    """The status resource of `request_id` (`Location` header)."""
    return f"{service.settings.intake_url or ''}/requests/{request_id}"


def accepted(service: Service, status: int, request_id: str, state: str, **extra: Any) -> Reply:
    """The intake's 2xx answer, `{"request_id", "status", ...}`, with its `Location`."""
    return Reply(
        status,
        {"request_id": request_id, "status": state, **extra},
        {"Location": location(service, request_id)},
    )


def callback_budget(service: Service) -> float:
    """How long one callback sequence may take: every backoff of its attempt budget."""
    return callback_retry(service.settings).sequence_seconds()


def document(service: Service, record: Record) -> Document:
    settings = service.settings
    budget = callback_budget(service)
    return to_document(
        record,
        window=settings.idempotency_window,
        retention=settings.state_retention,
        # How long a request may stay unfinished: its deadline, then its callbacks.
        running_for=settings.poll_timeout + budget + GRACE_SECONDS,
        budget=budget,
    )


def new_record(
    service: Service, request: DeletionRequest, request_id: str, environment: str | None, now: float
) -> Record:
    """The record of a request being accepted now (its intake holds the lease)."""
    url = request.callback_url
    if url is None:
        callback = Callback(host=None, sealed_url=None, state="none")
    else:
        host = parse_callback_url(url, allow_private=True).host
        key = service.settings.task_keys()[0]
        callback = Callback(
            host=host, sealed_url=seal(url, key, service.nonce(NONCE_BYTES)), state="pending"
        )
    return Record(
        request_id=request_id,
        status="accepting",
        created_at=now,
        updated_at=now,
        accepted_at=now,
        upload_id=request.upload_id,
        upload_track_id=request.upload_track_id,
        environment=environment,
        callback=callback,
        lease_until=now + LEASE_SECONDS,
        selector=request.tracks,
        metadata=request.metadata,
    )


def claim(service: Service, fresh: Record, now: float) -> tuple[Claim, Record, str | None]:
    """Create `fresh`, or say what the existing record of its id makes of this request
    (with the version written when this request won, for a `mutate` without a read).

    A record whose intake died holding the lease is taken over (the new acceptance
    cannot know whether that intake's DELETE went out: `unanswered`); a finished one
    past the duplicate window is replaced by a new acceptance.
    """
    store = service.records
    for _ in range(4):
        created = store.create(document(service, fresh), now=now)
        if created is not None:
            return "won", fresh, created.version
        stored = store.get(fresh.request_id, now=now)
        if stored is None:
            continue  # expired or abandoned in between: try to create again
        existing = Record.from_json(stored.document.data)
        verdict = on_existing(existing, now, service.settings.idempotency_window)
        if verdict in ("duplicate", "in_progress"):
            return verdict, existing, None
        successor = fresh
        if verdict == "take_over":
            successor = replace(fresh, created_at=existing.created_at, unanswered=True)
        replaced = store.replace(document(service, successor), version=stored.version)
        if replaced is not None:
            return "won", successor, replaced.version
    raise StateUnavailable(f"the record {fresh.request_id} kept changing")


def load(service: Service, request_id: str, now: float) -> Record | None:
    stored = service.records.get(request_id, now=now)
    return Record.from_json(stored.document.data) if stored is not None else None


def mutate(
    service: Service,
    request_id: str,
    change: Callable[[Record], Record],
    now: float,
    *,
    attempts: int = 8,
    known: tuple[Record, str] | None = None,
) -> Record | None:
    """Apply `change` (pure; may run several times) by compare-and-set.

    Returns the record as written, the record unchanged when `change` returned it
    as is, or None when there is no record. Raises `StateUnavailable`.
    """
    for attempt in range(attempts):
        if attempt == 0 and known is not None:
            record, version = known  # as this caller last wrote it: no read first
        else:
            stored = service.records.get(request_id, now=now)
            if stored is None:
                return None
            record, version = Record.from_json(stored.document.data), stored.version
        changed = change(record)
        if changed is record:
            return record
        if service.records.replace(document(service, changed), version=version):
            return changed
    raise StateUnavailable(f"the record {request_id} kept changing")


def abandon(service: Service, record: Record, now: float) -> None:
    """Remove the record of an acceptance that did not happen (so a retry starts clean)."""
    try:
        stored = service.records.get(record.request_id, now=now)
        if stored is not None and stored.document.data.get("accepted_at") == record.accepted_at:
            service.records.delete(record.request_id, version=stored.version)
    except StateUnavailable:
        pass  # the lease expires on its own; a retry then takes over


def request_of(service: Service, record: Record) -> DeletionRequest:
    """The deletion request a record was accepted for (its callback URL unsealed)."""
    return DeletionRequest(
        upload_id=record.upload_id,
        upload_track_id=record.upload_track_id
        if record.selector is not None
        else record.upload_track_id or "",
        environment=record.environment,
        callback_url=callback_url(service, record),
        metadata=record.metadata,
        tracks=record.selector,
    )


def callback_url(service: Service, record: Record) -> str | None:
    """The callback URL kept sealed in `record`, or None (none given, or no key opens it)."""
    if record.callback.sealed_url is None:
        return None
    return unseal(record.callback.sealed_url, service.settings.task_keys())
