"""The status resource and the dead-letter operations, on `delete_track` (same credentials).

GET  /requests/{request_id}             the record (`schemas/request_status.json`)
POST /requests/{request_id}/callback    send a done request's callback again
POST /callbacks/recover                 send again the dead letters of a time range
GET  /requests?callback=dead_letter     list dead letters, newest first
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from adapters.log import Log
from adapters.service import Service
from core.errors import RequestRejected, StateUnavailable
from core.record import Record, retry_after, status_resource
from core.state import decode_cursor
from handlers import chain, records
from handlers.responses import Reply, error, reply_for

REQUEST = re.compile(r"\A/requests/(req_[0-9a-f]{32})\Z")
RESEND = re.compile(r"\A/requests/(req_[0-9a-f]{32})/callback\Z")
MAX_RECOVER = 1000
MAX_PAGE = 100

Handler = Callable[[], Reply]


def route(
    service: Service,
    method: str,
    path: str,
    query: Mapping[str, list[str]],
    body: Callable[[], Any],
) -> Reply | None:
    """The answer for a path of this API, or None when the path is not one of it."""
    log = service.log.bind(path_kind=_kind(path))
    handlers: dict[str, Handler]
    if (match := REQUEST.match(path)) is not None:
        request_id = match.group(1)
        handlers = {"GET": lambda: status(service, request_id)}
    elif (match := RESEND.match(path)) is not None:
        request_id = match.group(1)
        handlers = {"POST": lambda: resend(service, request_id, log)}
    elif path == "/callbacks/recover":
        handlers = {"POST": lambda: recover(service, body(), log)}
    elif path in ("/requests", "/requests/"):
        handlers = {"GET": lambda: dead_letters(service, query)}
    else:
        return None
    handle = handlers.get(method)
    if handle is None:
        allowed = ", ".join(handlers)
        return error(
            405,
            "method_not_allowed",
            f"Only {allowed} is allowed here.",
            headers={"Allow": allowed},
        )
    try:
        return handle()
    except RequestRejected as rejected:
        return reply_for(rejected)
    except StateUnavailable as failure:
        log.warning("state store unavailable", reason=str(failure))
        return reply_for(failure)


def _kind(path: str) -> str:
    """A fixed label for the log (never the path itself)."""
    if REQUEST.match(path):
        return "status"
    if RESEND.match(path):
        return "resend"
    return {"/callbacks/recover": "recover", "/requests": "list"}.get(path, "other")


def not_found() -> Reply:
    return error(404, "not_found", "No such request (it may have expired).")


def status(service: Service, request_id: str) -> Reply:
    now = service.wall()
    record = records.load(service, request_id, now)
    if record is None:
        return not_found()
    headers = {} if record.done else {"Retry-After": str(retry_after(record, now))}
    return Reply(200, status_resource(record), headers)


def resend(service: Service, request_id: str, log: Log) -> Reply:
    """Re-deliver the final callback of `request_id`, with a fresh attempt budget."""
    now = service.wall()
    record = records.load(service, request_id, now)
    if record is None:
        return not_found()
    if not record.done:
        return error(409, "not_done", "The request is not final yet.", request_id=request_id)
    if record.callback.state == "none":
        return error(422, "no_callback", "The request has no callback_url.", request_id=request_id)
    _resend(service, record, log)
    return Reply(202, {"request_id": request_id, "status": "resending"})


def _resend(service: Service, record: Record, log: Log) -> bool:
    """Open a new callback sequence for `record` and queue its first attempt."""
    request = records.request_of(service, record)  # the callback URL unsealed, once
    if request.callback_url is None:
        log.error("the sealed callback URL cannot be opened (task signing keys rotated?)")
        raise RequestRejected(
            422, "no_callback", "The callback URL can no longer be read; it cannot be re-sent."
        )
    now = service.wall()

    def reopened(current: Record) -> Record:
        return current.with_callback(
            now, state="pending", attempts=0, resends=current.callback.resends + 1, since=now
        )

    updated = records.mutate(service, record.request_id, reopened, now)
    if updated is None:
        return False
    step = chain.callback_step(service, updated, request)
    chain.enqueue(service, step, 0.0)
    log.bind(request_id=updated.request_id).info(
        "callback re-sent on request", resend=updated.callback.resends
    )
    return True


def _time(value: Any, field: str) -> float:
    if not isinstance(value, str) or len(value) > 40:
        raise RequestRejected(400, "invalid_request", f"{field} must be an RFC 3339 time.")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise RequestRejected(
            400, "invalid_request", f"{field} must be an RFC 3339 time."
        ) from None
    if parsed.tzinfo is None:
        raise RequestRejected(400, "invalid_request", f"{field} must name its time zone.")
    return parsed.timestamp()


def recover(service: Service, data: Any, log: Log) -> Reply:
    """Re-deliver every dead letter whose last attempt failed in [since, until)."""
    if not isinstance(data, dict) or set(data) - {"since", "until"} or "since" not in data:
        raise RequestRejected(
            400, "invalid_request", 'The body must be {"since": TIME, "until"?: TIME}.'
        )
    now = service.wall()
    since = _time(data["since"], "since")
    until = _time(data["until"], "until") if "until" in data else now + 1.0
    if until <= since:
        raise RequestRejected(400, "invalid_request", "until must be later than since.")
    resending, more, cursor = 0, 0, None
    while True:
        page, cursor = service.records.dead_letters(
            now=now, limit=MAX_PAGE, after=cursor, since=since, until=until
        )
        for document in page:
            if resending >= MAX_RECOVER:
                more += 1
            elif _resend(service, Record.from_json(document.data), log):
                resending += 1
        if cursor is None or more >= 10 * MAX_RECOVER:
            break
    log.info("dead letters re-sent", resending=resending, left=more)
    body: dict[str, Any] = {"resending": resending}
    if more:
        body["more"] = more
    return Reply(202, body)


def dead_letters(service: Service, query: Mapping[str, list[str]]) -> Reply:
    """`GET /requests?callback=dead_letter&limit=N&after=CURSOR`, newest first."""
    if set(query) - {"callback", "limit", "after"} or query.get("callback") != ["dead_letter"]:
        raise RequestRejected(
            400, "invalid_request", "Only ?callback=dead_letter[&limit=N][&after=CURSOR] is served."
        )
    limit_text = (query.get("limit") or ["50"])[-1]
    if not limit_text.isascii() or not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
        raise RequestRejected(400, "invalid_request", f"limit must be 1 to {MAX_PAGE}.")
    after: str | None = (query.get("after") or [""])[-1] or None
    if after is not None:
        try:
            decode_cursor(after)
        except ValueError:
            raise RequestRejected(400, "invalid_request", "after is not a cursor.") from None
    page, cursor = service.records.dead_letters(
        now=service.wall(), limit=int(limit_text), after=after
    )
    listed = [status_resource(Record.from_json(document.data)) for document in page]
    return Reply(200, {"requests": listed, "next": cursor})
