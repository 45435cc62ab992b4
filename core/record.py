"""A request's record: what every instance knows of one request, as pure values.

    accepting ──DELETE answered──► queued | pending ──► deleted | not_found | failed | timed_out
    (a selector: accepting ──► queued ──listed──► pending ──► deleted | none_matched
                                                             | partially_failed | failed)

`accepted_at` names the chain of tasks allowed to act on the request (tasks carry it,
signed); `lease_until` marks an intake deciding the DELETE right now (`409 in_progress`).
A record never holds a secret, nor the callback URL beyond its host: the URL is kept
sealed (`core.sealing`) so that a dead letter can be sent again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from core.model import EVENT_TYPES, SELECTOR_EVENT_TYPES, TRACK_ENTRY, OutcomeStatus, rfc3339
from core.state import Document

RecordStatus = Literal[
    "accepting",
    "queued",
    "pending",
    "deleted",
    "not_found",
    "failed",
    "timed_out",
    "none_matched",
    "partially_failed",
]
CallbackState = Literal["none", "pending", "delivered", "dead_letter"]
FINAL: frozenset[str] = frozenset(
    {"deleted", "not_found", "failed", "timed_out", "none_matched", "partially_failed"}
)

#: How long an intake may take to decide the DELETE before another may take over.
LEASE_SECONDS = 30.0
#: How long past its due time a sweep leaves a request alone (a task may still be on its way).
SWEEP_GRACE = 60.0
#: A callback sequence may take this much longer than the sum of its backoffs (the queue
#: dispatches late under load; its backoff is not exact).
AGE_SLACK = 1.25


@dataclass(frozen=True)
class Callback:
    """Where the callback of a request stands."""

    host: str | None
    sealed_url: str | None
    state: CallbackState
    attempts: int = 0
    last_status: int | None = None
    delivered_at: float | None = None
    failed_at: float | None = None  # the last failed attempt (the dead-letter listing's key)
    resends: int = 0  # times an operator asked for the callback again
    since: float | None = None  # when the current delivery sequence began


@dataclass(frozen=True)
class Record:
    """One request, as stored (`Document.data`)."""

    request_id: str
    status: RecordStatus
    created_at: float
    updated_at: float
    accepted_at: float
    upload_id: str
    upload_track_id: str | None
    environment: str | None
    callback: Callback
    lease_until: float | None = None
    unanswered: bool = False  # a DELETE of this request may have taken effect unanswered
    job_id: str | None = None
    polls: int = 0
    next_at: float | None = None
    outcome: dict[str, Any] | None = None  # the callback's `data`, once final
    finished_at: float | None = None
    selector: dict[str, Any] | None = None
    tracks: list[dict[str, Any]] | None = field(default=None)
    metadata: dict[str, Any] | None = None  # the request's, echoed in its callback

    @property
    def done(self) -> bool:
        return self.status in FINAL

    def to_json(self) -> dict[str, Any]:
        # Shallow (`asdict` deep-copies every value: a tenth of an intake's own time); the
        # values are JSON already, and the stored form is serialised at once.
        data: dict[str, Any] = {"v": 1, **vars(self)}
        data["callback"] = dict(vars(self.callback))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        fields = {k: v for k, v in data.items() if k != "v"}
        fields["callback"] = Callback(**fields["callback"])
        return cls(**fields)

    def touched(self, now: float, **changes: Any) -> Record:
        return replace(self, updated_at=now, **changes)

    def with_callback(self, now: float, **changes: Any) -> Record:
        return replace(self, updated_at=now, callback=replace(self.callback, **changes))

    def callback_body(self) -> dict[str, Any]:
        """The final callback, rebuilt from the record (same body as first sent)."""
        if self.outcome is None or self.finished_at is None:
            raise ValueError("the request is not final")
        status = cast(OutcomeStatus, self.outcome["status"])
        kind = SELECTOR_EVENT_TYPES[status] if self.selector is not None else EVENT_TYPES[status]
        return {
            "type": kind,
            "timestamp": rfc3339(self.finished_at),
            "data": self.outcome,
        }


Existing = Literal["duplicate", "in_progress", "take_over", "renew"]


def on_existing(record: Record, now: float, window: float) -> Existing:
    """What a new request with the id of an existing `record` becomes."""
    if record.status == "accepting":
        return "in_progress" if (record.lease_until or 0.0) > now else "take_over"
    if record.done and record.created_at + window <= now:
        return "renew"
    return "duplicate"


def grace(budget: float) -> float:
    """Room for a task still on its way: as long as the budget, between 1 s and a minute."""
    return min(SWEEP_GRACE, max(1.0, budget))


def callback_deadline(record: Record, budget: float) -> float | None:
    """When the current callback sequence has spent its time (None: no sequence running):
    an attempt after it is the last, and a sweep after it (plus grace) ends it."""
    callback = record.callback
    if not record.done or callback.state != "pending" or callback.since is None:
        return None
    return callback.since + budget * AGE_SLACK + grace(budget)


def due_at(record: Record, budget: float) -> float | None:
    """When a sweep should look at `record`: an intake that died holding the lease, a
    callback never attempted (its task may have been lost), or a callback sequence past
    its budget (the queue may have given up on it)."""
    if record.status == "accepting":
        return (record.lease_until or record.created_at) + SWEEP_GRACE
    deadline = callback_deadline(record, budget)
    if deadline is None:
        return None
    if record.callback.attempts == 0 and record.callback.since is not None:
        return min(record.callback.since + grace(budget), deadline + grace(budget))
    return deadline + grace(budget)


Sweep = Literal["dead_letter", "requeue", "resume", "none"]


def sweep_action(record: Record, now: float, budget: float) -> Sweep:
    """What a sweep does to `record` now: resume an acceptance whose intake died, queue
    again a callback never attempted, end an overdue callback sequence as a dead letter,
    or nothing."""
    due = due_at(record, budget)
    if due is None or due > now:
        return "none"
    if record.status == "accepting":
        return "resume"
    deadline = callback_deadline(record, budget)
    if record.callback.attempts == 0 and deadline is not None and now < deadline + grace(budget):
        return "requeue"
    return "dead_letter"


def to_document(
    record: Record, *, window: float, retention: float, running_for: float, budget: float
) -> Document:
    """The stored form: kept for the duplicate window, and `retention` after the end.

    `running_for` bounds how long a request may stay unfinished (deadline and callbacks);
    `budget` is the time a callback sequence may take.
    """
    end = record.finished_at if record.finished_at is not None else record.created_at + running_for
    dead = record.callback.state == "dead_letter"
    return Document(
        key=record.request_id,
        data=record.to_json(),
        expires_at=max(record.created_at + window, end + retention),
        dead_letter_at=(record.callback.failed_at or record.updated_at) if dead else None,
        due_at=due_at(record, budget),
    )


def status_resource(record: Record) -> dict[str, Any]:
    """The public view (`schemas/request_status.json`)."""
    callback = record.callback
    view: dict[str, Any] = {
        "request_id": record.request_id,
        "status": "queued" if record.status == "accepting" else record.status,
        "done": record.done,
        "created_at": rfc3339(record.created_at),
        "updated_at": rfc3339(record.updated_at),
        "upload_id": record.upload_id,
        "upload_track_id": record.upload_track_id,
        "selector": record.selector,
        "environment": record.environment,
        "job_id": record.job_id,
        "polls": record.polls,
        "tracks": _public_tracks(record.tracks),
        "outcome": record.outcome if record.done else None,
        "callback": {
            "host": callback.host,
            "state": callback.state,
            "attempts": callback.attempts,
            "last_status": callback.last_status,
            "delivered_at": rfc3339(callback.delivered_at) if callback.delivered_at else None,
        },
    }
    if record.selector is not None:
        view["matched"] = _matched(record)
    return view


def _public_tracks(tracks: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """A selector request's per-track entries, without their chains' private keys."""
    if tracks is None:
        return None
    return [{key: entry.get(key) for key in TRACK_ENTRY} for entry in tracks]


def _matched(record: Record) -> int | None:
    if record.outcome is not None and isinstance(record.outcome.get("matched"), int):
        return int(record.outcome["matched"])
    return len(record.tracks) if record.tracks is not None else None


def retry_after(record: Record, now: float) -> int:
    """Seconds until the next scheduled step of a request not yet done (at least 1)."""
    if record.next_at is None:
        return 1
    return max(1, int(record.next_at - now + 0.999))
