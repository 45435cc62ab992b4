"""Values that cross a boundary, with their to/from-JSON next to them.

- `DeletionRequest`: what a caller asks for (validated by `schemas/deletion_request.json`):
  one track by id, or the tracks a selector (`tracks`) matches.
- `Step`: the body of every task the service enqueues (`schemas/task.json`).
- `Outcome`: how a request ended; `callback_body` renders it for the receiver
  (`schemas/callback.json`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, cast

from core.validation import compact_json

StepKind = Literal["resume", "list", "delete", "poll", "callback"]
OutcomeStatus = Literal["deleted", "not_found", "failed", "timed_out"]

EVENT_TYPES: dict[OutcomeStatus, str] = {
    "deleted": "upload_track.deleted",
    "not_found": "upload_track.already_deleted",
    "failed": "upload_track.deletion_failed",
    "timed_out": "upload_track.deletion_timed_out",
}
#: The summary callback of a selector request, by `data.status`.
SELECTOR_EVENT_TYPES: dict[str, str] = {
    "deleted": "upload_tracks.deleted",
    "none_matched": "upload_tracks.none_matched",
    "partially_failed": "upload_tracks.partially_failed",
    "failed": "upload_tracks.deletion_failed",
}
#: The public keys of a selector request's per-track entry.
TRACK_ENTRY = ("upload_track_id", "status", "job_id", "track", "error")


def canonical_selector(tracks: dict[str, Any]) -> dict[str, Any]:
    """A selector's one form: keys sorted, the language code in lower case."""
    return {
        key: value.lower() if key == "language_code" else value
        for key, value in sorted(tracks.items())
    }


@dataclass(frozen=True)
class DeletionRequest:
    """One validated request: delete `upload_track_id`, or every track `tracks` matches."""

    upload_id: str
    upload_track_id: str | None
    environment: str | None = None
    callback_url: str | None = None
    idempotency_key: str | None = None
    metadata: dict[str, Any] | None = None
    tracks: dict[str, Any] | None = None  # the canonical selector

    @property
    def track_id(self) -> str:
        """The one track this request deletes (a selector's per-track steps name theirs)."""
        if self.upload_track_id is None:
            raise ValueError("a selector request names no single track")
        return self.upload_track_id

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeletionRequest:
        """Build from a dict that already passed the schema."""
        tracks = data.get("tracks")
        return cls(
            upload_id=data["upload_id"],
            upload_track_id=data.get("upload_track_id"),
            environment=data.get("environment"),
            callback_url=data.get("callback_url"),
            idempotency_key=data.get("idempotency_key"),
            metadata=data.get("metadata"),
            tracks=canonical_selector(tracks) if tracks is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"upload_id": self.upload_id}
        for key in (
            "upload_track_id",
            "tracks",
            "environment",
            "callback_url",
            "idempotency_key",
            "metadata",
        ):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data

    def request_id(self, default_environment: str | None) -> str:
        """Deterministic id: from the idempotency key, else from the track's coordinates
        (or the upload's and the canonical selector's)."""
        if self.idempotency_key is not None:
            seed = "key\x00" + self.idempotency_key
        elif self.tracks is not None:
            environment = self.environment or default_environment or ""
            selector = compact_json(canonical_selector(self.tracks))
            seed = f"tracks\x00{environment}\x00{self.upload_id}\x00{selector}"
        else:
            environment = self.environment or default_environment or ""
            seed = f"track\x00{environment}\x00{self.upload_id}\x00{self.upload_track_id}"
        return "req_" + hashlib.sha256(seed.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Outcome:
    """How a deletion ended; what the callback reports."""

    status: OutcomeStatus
    job_id: str | None = None
    track: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def event_type(self) -> str:
        return EVENT_TYPES[self.status]

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "job_id": self.job_id,
            "track": self.track,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        return cls(
            status=cast(OutcomeStatus, data["status"]),
            job_id=data.get("job_id"),
            track=data.get("track"),
            error=data.get("error"),
        )


def failure(code: str, message: str, http_status: int | None) -> dict[str, Any]:
    """The callback's `error` object."""
    return {"code": code, "message": message, "http_status": http_status}


@dataclass(frozen=True)
class Step:
    """The body of one task: where a request stands, and what to do next.

    `number` orders the tasks of one acceptance: the intake is 0, its task 1 is a
    `resume` (enqueued before the DELETE goes out, it continues from the request's
    record). `accepted_at` names the acceptance; only the chain the record names acts.
    `not_after` (unix seconds) bounds how long the signed body is honoured.
    `failures` counts consecutive retryable errors, for the backoff. `unanswered`:
    an earlier DELETE of this request may have taken effect without an answer.
    `resend` counts an operator's re-deliveries of the callback. `pending_at`: seconds
    after acceptance of the last poll that saw the job still running (what is learned).
    `track_index`: the matched track a selector request's step deletes (its own chain).
    """

    kind: StepKind
    request_id: str
    request: DeletionRequest
    environment: str | None
    accepted_at: float
    number: int
    not_after: float
    polls: int = 0
    failures: int = 0
    job_id: str | None = None
    unanswered: bool = False
    resend: int = 0
    pending_at: float | None = None
    callback: dict[str, Any] | None = field(default=None)
    track_index: int | None = None

    @property
    def name(self) -> str:
        """The deterministic task name: `<request_id>-<acceptance>-<n>` (`-cb`, `-cb-r<k>`,
        `-t<i>-<n>` for the chain of a selector's matched track `i`).

        A step delivered twice cannot fork the chain, and a later acceptance of
        the same request never runs into an earlier chain's names.
        """
        if self.kind == "callback":
            suffix = f"cb-r{self.resend}" if self.resend else "cb"
        elif self.track_index is not None:
            suffix = f"t{self.track_index}-{self.number}"
        else:
            suffix = str(self.number)
        return f"{self.request_id}-{int(self.accepted_at * 1000):x}-{suffix}"

    def next(self, kind: StepKind, **changes: Any) -> Step:
        """The step that follows this one."""
        return replace(self, kind=kind, number=self.number + 1, **changes)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "v": 1,
            "kind": self.kind,
            "request_id": self.request_id,
            "request": self.request.to_json(),
            "environment": self.environment,
            "accepted_at": self.accepted_at,
            "number": self.number,
            "not_after": self.not_after,
            "polls": self.polls,
            "failures": self.failures,
            "job_id": self.job_id,
        }
        if self.unanswered:
            data["unanswered"] = True
        if self.resend:
            data["resend"] = self.resend
        if self.pending_at is not None:
            data["pending_at"] = self.pending_at
        if self.callback is not None:
            data["callback"] = self.callback
        if self.track_index is not None:
            data["track_index"] = self.track_index
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Step:
        """Build from a dict that already passed `schemas/task.json`."""
        return cls(
            kind=data["kind"],
            request_id=data["request_id"],
            request=DeletionRequest.from_json(data["request"]),
            environment=data["environment"],
            accepted_at=data["accepted_at"],
            number=data["number"],
            not_after=data["not_after"],
            polls=data["polls"],
            failures=data["failures"],
            job_id=data["job_id"],
            unanswered=data.get("unanswered", False),
            resend=data.get("resend", 0),
            pending_at=data.get("pending_at"),
            callback=data.get("callback"),
            track_index=data.get("track_index"),
        )


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def callback_body(step: Step, outcome: Outcome, *, polls: int, now: float) -> dict[str, Any]:
    """The callback's JSON body (the `data` envelope of Standard Webhooks)."""
    return {
        "type": outcome.event_type,
        "timestamp": rfc3339(now),
        "data": {
            "request_id": step.request_id,
            "status": outcome.status,
            "upload_id": step.request.upload_id,
            "upload_track_id": step.request.track_id,
            "environment": step.environment,
            "job_id": outcome.job_id,
            "track": outcome.track,
            "error": outcome.error,
            "polls": polls,
            "metadata": step.request.metadata,
        },
    }


def encode(value: Any) -> bytes:
    return compact_json(value).encode()
