"""Deleting by selector, as pure decisions: list, match, one DELETE chain per track, one summary.

    list ──200──► match ─┬─► nothing:  finish (none_matched)
      │                  ├─► over 100: finish (failed, too_many_tracks), nothing deleted
      │                  └─► n tracks: n chains (`core.flow` each), first DELETEs spread in time
      ├─► 404: finish (failed, NOT_FOUND)
      ├─► an undocumented body: finish (failed, invalid_answer)
      └─► 429 / 5xx / timeout: list again later; past the deadline: finish (failed)

Each chain's progress lives in its entry of `Record.tracks` (with the private keys
`step` and `polls`); the change that makes the last entry final makes the record
final, with the summary callback's `data` as its outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from core.datocms import ListedTrack
from core.errors import DatoCMSBadResponse, DatoCMSError, DatoCMSNotFound, DatoCMSRefused
from core.flow import Action, Finish, Schedule, deadline
from core.model import TRACK_ENTRY, Step, failure
from core.polling import PollPolicy
from core.record import Record

#: At most this many tracks are deleted per request.
MAX_TRACKS = 100
#: DatoCMS's documented limit: 60 requests every 3 seconds per project.
RATE_LIMIT, RATE_WINDOW = 60, 3.0
#: Seconds between the first DELETEs of a fan-out: one DELETE per request the limit
#: admits. The tracks' polls come later (from each track's own DELETE), so the DELETEs
#: need not leave room for them: spreading them at half the rate would only make the
#: last DELETE (and its job) later, and the whole request slower than the limit needs.
SPACING = RATE_WINDOW / RATE_LIMIT
#: What a track's chain may end with (`Outcome.status`).
TRACK_FINAL = frozenset({"deleted", "not_found", "failed", "timed_out"})
GONE = frozenset({"deleted", "not_found"})


@dataclass(frozen=True)
class FanOut:
    """Delete each of `tracks` (matched at listing time), each in its own chain."""

    tracks: tuple[ListedTrack, ...]


@dataclass(frozen=True)
class Conclude:
    """The request ends without deleting anything."""

    status: str  # none_matched or failed
    matched: int
    error: dict[str, Any] | None = None


ListAction = Schedule | FanOut | Conclude
Change = Callable[[Record], Record]


# ---------------------------------------------------------------------------
# Matching


def matches(selector: dict[str, Any], attributes: dict[str, Any]) -> bool:
    """Whether a track's attributes satisfy every field of the (canonical) selector."""
    for key, wanted in selector.items():
        if key == "all":
            continue
        value = attributes.get(key)
        if key == "language_code":
            if not isinstance(value, str) or value.lower() != str(wanted).lower():
                return False
        elif key == "closed_captions":
            if bool(value) != wanted:  # DatoCMS may say null: not closed captions
                return False
        elif value != wanted:
            return False
    return True


def match(selector: dict[str, Any], listed: tuple[ListedTrack, ...]) -> tuple[ListedTrack, ...]:
    """The listed tracks the selector matches, in listing order, each id once."""
    seen: set[str] = set()
    found = []
    for track in listed:
        if track.id not in seen and matches(selector, track.attributes):
            seen.add(track.id)
            found.append(track)
    return tuple(found)


# ---------------------------------------------------------------------------
# The listing step


def after_list(
    current: Step,
    result: tuple[ListedTrack, ...] | DatoCMSError,
    now: float,
    policy: PollPolicy,
    rand: float,
) -> ListAction:
    """What follows `GET /uploads/{id}/tracks`: fan out, conclude, or list again later."""
    if isinstance(result, DatoCMSError):
        return _after_list_error(current, result, now, policy, rand)
    selector = current.request.tracks or {}
    matched = match(selector, result)
    if not matched:
        return Conclude("none_matched", 0)
    if len(matched) > MAX_TRACKS:
        message = f"{len(matched)} tracks matched; at most {MAX_TRACKS} are deleted per request."
        return Conclude("failed", len(matched), failure("too_many_tracks", message, None))
    return FanOut(matched)


def _after_list_error(
    current: Step, error: DatoCMSError, now: float, policy: PollPolicy, rand: float
) -> ListAction:
    if isinstance(error, DatoCMSBadResponse):
        message = "DatoCMS answered the track listing with an undocumented body."
        return Conclude("failed", 0, failure("invalid_answer", message, error.http_status))
    if isinstance(error, DatoCMSNotFound):
        return Conclude("failed", 0, failure("NOT_FOUND", "The upload does not exist.", 404))
    if isinstance(error, DatoCMSRefused):
        code = error.code or f"HTTP_{error.http_status}"
        return Conclude("failed", 0, failure(code, error.message, error.http_status))
    remaining = deadline(current, policy) - now
    if remaining <= 0:
        message = "DatoCMS did not list the upload's tracks before the deadline."
        code = error.code or "SERVICE_UNAVAILABLE"
        return Conclude("failed", 0, failure(code, message, error.http_status))
    failures = current.failures + 1
    delay = policy.retry_delay(failures, error.retry_after, rand)
    return Schedule(current.next("list", failures=failures), min(delay, remaining))


def entries(tracks: tuple[ListedTrack, ...]) -> list[dict[str, Any]]:
    """The record's `tracks`: one entry per matched track, each at its chain's first step."""
    return [
        {
            "upload_track_id": track.id,
            "status": "queued",
            "job_id": None,
            "track": track.attributes,
            "error": None,
            "step": 1,
            "polls": 0,
        }
        for track in tracks
    ]


def track_step(listing: Step, index: int, entry: dict[str, Any]) -> tuple[Step, float]:
    """The first step of the chain of matched track `index`, and its delay (the spread)."""
    request = replace(listing.request, upload_track_id=entry["upload_track_id"], tracks=None)
    first = replace(
        listing,
        kind="delete",
        request=request,
        number=1,
        track_index=index,
        polls=0,
        failures=0,
        job_id=None,
        pending_at=None,
    )
    return first, index * SPACING


def from_own_delete(
    current: Step, action: Action, now: float, policy: PollPolicy, rand: float
) -> Action:
    """`action` after a matched track's step, its first poll planned from the track's DELETE.

    `core.flow` plans a first poll from the request's acceptance: right for a single
    track, whose DELETE is the acceptance, but a matched track's DELETE comes up to
    `MAX_TRACKS x SPACING` later, so the cold schedule's next time after it can be a
    fraction of `initial` away (a poll before the job could have finished) or up to the
    following wait later (lag). A track's first poll waits as long after its own DELETE
    as a single track's does after its acceptance. Any other action is kept as it is.
    """
    if current.track_index is None or current.kind != "delete" or not isinstance(action, Schedule):
        return action
    following = action.step
    if following.kind != "poll" or following.polls != current.polls:
        return action
    remaining = deadline(current, policy) - now
    if remaining <= 0:
        return action
    own = policy.delay_after(0, rand, elapsed=0.0)
    return Schedule(following, min(own, remaining))


def summary_step(step: Step, record: Record) -> Step:
    """A step of the request as a whole (for its callback), from one of a track's chain."""
    request = replace(step.request, upload_track_id=None, tracks=record.selector)
    return replace(step, track_index=None, request=request)


# ---------------------------------------------------------------------------
# Record changes (pure; `handlers.records.mutate` applies them by compare-and-set)


def _ours(record: Record, step: Step) -> bool:
    return record.accepted_at == step.accepted_at and not record.done


def listed(record: Record, step: Step, tracks: tuple[ListedTrack, ...], now: float) -> Record:
    """`record` with its matched tracks; a listing recorded before is kept (never re-listed)."""
    if not _ours(record, step) or record.tracks is not None:
        return record
    return record.touched(
        now, status="pending", lease_until=None, tracks=entries(tracks), next_at=now
    )


def relisting(record: Record, step: Step, schedule: Schedule, now: float) -> Record:
    if not _ours(record, step) or record.tracks is not None:
        return record
    return record.touched(now, status="queued", lease_until=None, next_at=now + schedule.delay)


def entry_of(record: Record, step: Step) -> dict[str, Any] | None:
    """The entry of `step`'s track while that chain is still at `step` (or before it)."""
    index = step.track_index
    if not _ours(record, step) or record.tracks is None or index is None:
        return None
    if not 0 <= index < len(record.tracks):
        return None
    entry = record.tracks[index]
    if entry["status"] in TRACK_FINAL or entry["step"] > step.number:
        return None
    return entry


def _with_entry(record: Record, index: int, entry: dict[str, Any], now: float) -> Record:
    tracks = [*record.tracks[:index], entry, *record.tracks[index + 1 :]] if record.tracks else []
    return record.touched(now, tracks=tracks, polls=sum(item["polls"] for item in tracks))


def track_progressed(record: Record, step: Step, schedule: Schedule, now: float) -> Record:
    """`record` after track `step` scheduled the next step of its chain."""
    entry = entry_of(record, step)
    following = schedule.step
    if entry is None or following.track_index is None:
        return record
    changed = {
        **entry,
        "status": "pending" if following.kind == "poll" else "queued",
        "job_id": following.job_id or entry["job_id"],
        "step": following.number,
        "polls": following.polls,
    }
    moved = _with_entry(record, following.track_index, changed, now)
    next_at = now + schedule.delay
    return replace(moved, next_at=min(next_at, record.next_at or next_at))


def track_concluded(record: Record, step: Step, finish: Finish, now: float) -> Record:
    """`record` with track `step`'s outcome; final itself once every track is."""
    entry = entry_of(record, step)
    if entry is None or step.track_index is None:
        return record
    outcome = finish.outcome
    changed = {
        **entry,
        "status": outcome.status,
        "job_id": outcome.job_id or entry["job_id"],
        "track": outcome.track or entry["track"],
        "error": outcome.error,
        "step": step.number,
        "polls": finish.polls,
    }
    record = _with_entry(record, step.track_index, changed, now)
    statuses = [item["status"] for item in record.tracks or []]
    if any(status not in TRACK_FINAL for status in statuses):
        return record
    gone = sum(status in GONE for status in statuses)
    status = "deleted" if gone == len(statuses) else "partially_failed" if gone else "failed"
    return finished(record, step, status, len(statuses), None, now)


def concluded(record: Record, step: Step, conclude: Conclude, now: float) -> Record:
    """`record` ended by its listing (nothing deleted)."""
    if not _ours(record, step):
        return record
    base = record.touched(now, tracks=[] if record.tracks is None else record.tracks)
    return finished(base, step, conclude.status, conclude.matched, conclude.error, now)


def finished(
    record: Record,
    step: Step,
    status: str,
    matched: int,
    error: dict[str, Any] | None,
    now: float,
) -> Record:
    """`record`, final, with the summary callback's `data` as its outcome."""
    tracks = record.tracks or []
    data = {
        "request_id": record.request_id,
        "status": status,
        "upload_id": record.upload_id,
        "environment": step.environment,
        "selector": record.selector,
        "matched": matched,
        "tracks": [public(entry) for entry in tracks],
        "error": error,
        "polls": record.polls,
        "metadata": step.request.metadata,
    }
    return record.touched(
        now,
        status=status,
        lease_until=None,
        next_at=None,
        outcome=data,
        finished_at=now,
    )


def public(entry: dict[str, Any]) -> dict[str, Any]:
    """A track's entry as the status resource and the callback show it."""
    return {key: entry.get(key) for key in TRACK_ENTRY}
