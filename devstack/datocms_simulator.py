"""A local simulator of the DatoCMS Content Management API, for tests, the demo and benchmarks.

It serves only what this service touches: `DELETE /uploads/{id}/tracks/{id}` (202 and a
job), `GET /job-results/{id}` (404 `NOT_FOUND` while the job runs), `GET
/uploads/{id}/tracks`, with the real API's header checks, error bodies, answer headers and
project-wide rate limit (60 requests every 3 s, `X-RateLimit-*`). Routes, shapes and codes
follow the DatoCMS docs, official clients and recorded answers; where no source showed a
detail (header-failure status codes, the sliding-window limiter, job outcomes, paging, the
faults `inject` offers) the choice is plausible and pinned by its tests.
Standard library only; it binds 127.0.0.1 and nothing else.
Run it by hand: ``python -m devstack.datocms_simulator --port 8090 --token T``.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import math
import re
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, Literal, TypedDict, cast

__all__ = [
    "DEMO_EXTRA_TRACKS",
    "DEMO_TRACK_ID",
    "DEMO_UPLOAD_ID",
    "DatoCMSSimulator",
    "Fault",
    "MissingTrackMode",
    "RequestRecord",
    "SimulatorStats",
    "main",
]

DEMO_UPLOAD_ID = "q0VNpiNQSkG6z0lif_O1zg"
DEMO_TRACK_ID = "xBe7u01029ipxBLQhYzZCJ1cke01zCkuUsgnYtH0017nNzbpv2YcsoMDmw"
#: More tracks of the demo upload: (id, type, name, language_code, closed_captions).
DEMO_EXTRA_TRACKS = (
    ("demoItCaptions01", "subtitles", "Italiano (CC)", "it-IT", True),
    ("demoEnSubtitles1", "subtitles", "English", "en-US", False),
    ("demoItDub0000001", "audio", "Italiano", "it-IT", None),
    ("demoFrSubtitles1", "subtitles", "Français", "fr-FR", False),
)

HOST = "127.0.0.1"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
HTML_CONTENT_TYPE = "text/html; charset=UTF-8"
DOC_URL = "https://www.datocms.com/docs/content-management-api/errors#{code}"
NOT_FOUND_DETAILS = {"message": "ActiveRecord::RecordNotFound"}
MISSING: tuple[int, str] = (404, "NOT_FOUND")  # result of a job about a missing track
ENVIRONMENT_ID = re.compile(r"[a-z0-9-]+")
TRACK_TYPES = frozenset({"subtitles", "audio"})
TRACK_STATUSES = frozenset({"preparing", "ready", "errored"})
RECORDED_HEADERS = ("Accept", "X-Api-Version", "X-Environment", "Content-Type", "User-Agent")
CDN_502_PAGE = b"""<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>cloudflare</center>
</body>
</html>
"""

MissingTrackMode = Literal["sync_404", "job_404"]
SimpleFault = Literal["500", "503", "html_502", "drop", "drop_after", "undocumented"]
Fault = SimpleFault | tuple[Literal["slow"], float] | tuple[Literal["429"], int]
Outcome = tuple[int, str]
Role = Literal["full", "read_only"]
_SIMPLE_FAULTS = frozenset({"500", "503", "html_502", "drop", "drop_after", "undocumented"})


# --------------------------------------------------------------------------- public records


@dataclass(frozen=True)
class RequestRecord:
    """One request as the simulator saw it (the Authorization value is never kept)."""

    method: str
    path: str  # as received, still percent-encoded, without the query string
    status: int | None  # None: the connection was closed without an answer
    environment: str | None  # the X-Environment header as sent, None if absent
    time: float  # simulator clock at arrival
    headers: dict[str, str]  # a subset; Authorization shows as "<redacted>"
    auth_valid: bool
    early: bool  # arrived before a previously announced X-RateLimit-Reset had passed
    fault: str | None  # the injected fault that shaped the answer, if any
    request_id: str


class SimulatorStats(TypedDict):
    """Totals since start: every request, 429 answers, early requests, faults, jobs."""

    requests: int
    rate_limited: int
    early_requests: int
    faults_served: int
    jobs_created: int


# --------------------------------------------------------------------------- internal state


@dataclass
class _Track:
    upload_id: str
    track_id: str
    type: str
    name: str
    language_code: str
    closed_captions: bool | None
    status: str
    error: str | None
    job_seconds: float | None
    outcome: Outcome | None

    def resource(self) -> dict[str, Any]:
        return {
            "type": "upload_track",
            "id": self.track_id,
            "attributes": {
                "type": self.type,
                "name": self.name,
                "language_code": self.language_code,
                "closed_captions": self.closed_captions,
                "status": self.status,
                "error": self.error,
            },
            "relationships": {"upload": {"data": {"type": "upload", "id": self.upload_id}}},
        }


@dataclass
class _Job:
    job_id: str
    environment: str
    upload_id: str
    track_id: str
    done_at: float
    outcome: Outcome | None  # None: delete the track; else (status, code) of the failure
    result: tuple[int, Any] | None = None  # (status, payload) once completed


@dataclass
class _FaultEntry:
    kind: str
    value: float
    method: str | None
    path_prefix: str | None
    remaining: int

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    api_headers: bool = True  # False for pages that never came from the API
    drop: bool = False  # close the connection without answering
    delay: float = 0.0  # seconds to wait before answering


@dataclass
class _Call:
    method: str
    path: str
    segments: list[str]
    headers: dict[str, str]  # lower-cased names
    now: float
    role: Role | None
    environment: str | None = None  # resolved environment id
    query: dict[str, list[str]] = field(default_factory=dict)


class _SlidingWindowLimiter:
    """At most `limit` admitted requests in any `window` seconds; refusals do not count."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._admitted: deque[float] = deque()

    def _forget_old(self, now: float) -> None:
        while self._admitted and self._admitted[0] <= now - self.window:
            self._admitted.popleft()

    def remaining(self, now: float) -> int:
        self._forget_old(now)
        return max(0, self.limit - len(self._admitted))

    def try_acquire(self, now: float) -> bool:
        if self.remaining(now) <= 0:
            return False
        self._admitted.append(now)
        return True

    def reset_seconds(self, now: float) -> int:
        self._forget_old(now)
        if not self._admitted or len(self._admitted) < self.limit:
            return max(1, math.ceil(self.window))
        oldest_needed = self._admitted[len(self._admitted) - self.limit]
        return max(1, math.ceil(oldest_needed + self.window - now))


# --------------------------------------------------------------------------- bodies


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _api_error_body(
    code: str, details: dict[str, Any] | None = None, *, transient: bool = False
) -> dict[str, Any]:
    attributes: dict[str, Any] = {"code": code, "details": dict(details or {})}
    if code != "NOT_FOUND":
        attributes["doc_url"] = DOC_URL.format(code=code)
    if transient:
        attributes["transient"] = True
    return {"data": [{"id": secrets.token_hex(3), "type": "api_error", "attributes": attributes}]}


def _not_found_body() -> dict[str, Any]:
    return _api_error_body("NOT_FOUND", NOT_FOUND_DETAILS)


def _error(
    status: int, code: str, details: dict[str, Any] | None = None, *, transient: bool = False
) -> _Reply:
    return _Reply(status, _json(_api_error_body(code, details, transient=transient)))


def _json_reply(status: int, payload: Any) -> _Reply:
    return _Reply(status, _json(payload))


def _job_result_body(job: _Job) -> dict[str, Any]:
    if job.result is None:  # pragma: no cover - callers check first
        raise RuntimeError("job not completed")
    status, payload = job.result
    attributes = {"status": status, "statusText": _phrase(status), "payload": payload}
    return {"data": {"id": job.job_id, "type": "job_result", "attributes": attributes}}


def _int_param(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    try:
        return max(0, int(values[0])) if values else default
    except ValueError:
        return default


def _accepts_json(accept: str | None) -> bool:
    if not accept:
        return False
    media_types = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return "application/json" in media_types


def _parse_fault(fault: Fault) -> tuple[str, float]:
    if isinstance(fault, str):
        if fault not in _SIMPLE_FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        return fault, 0.0
    kind, value = fault
    if kind == "slow" and value >= 0:
        return "slow", float(value)
    if kind == "429" and value >= 0:
        return "429", float(math.ceil(value))
    raise ValueError(f"unknown fault {fault!r}")


def _validate_outcome(outcome: Outcome | None) -> None:
    if outcome is None:
        return
    status, code = outcome
    if not 400 <= status <= 599 or not code:
        raise ValueError(f"outcome must be (4xx/5xx status, code), got {outcome!r}")


# --------------------------------------------------------------------------- simulator


class DatoCMSSimulator:
    """A DatoCMS CMA look-alike on 127.0.0.1 (see the module docstring).

    Thread-safe: configure it (`add_track`, `inject`, ...) while it serves.
    """

    def __init__(  # noqa: PLR0913 (keyword-only knobs of a test double)
        self,
        *,
        api_token: str = "sim-token",  # noqa: S107 - a fake token for a local fake
        rate_limit: int = 60,
        rate_window: float = 3.0,
        primary_environment: str = "main",
        sandbox_environments: Iterable[str] = frozenset({"sandbox"}),
        default_job_seconds: float = 1.0,
        missing_track_mode: MissingTrackMode = "sync_404",
        clock: Callable[[], float] = time.monotonic,
        read_only_tokens: Iterable[str] = (),
        port: int = 0,
        verbose: bool = False,
        list_page_size: int | None = None,
    ) -> None:
        sandboxes = frozenset(sandbox_environments)
        self._check_environments(primary_environment, sandboxes)
        if missing_track_mode not in ("sync_404", "job_404"):
            raise ValueError(f"unknown missing_track_mode {missing_track_mode!r}")
        self.api_token = api_token
        self.read_only_tokens = frozenset(read_only_tokens)
        self.primary_environment = primary_environment
        self.sandbox_environments = sandboxes
        self.default_job_seconds = default_job_seconds
        self.missing_track_mode: MissingTrackMode = missing_track_mode
        self.verbose = verbose
        self.list_page_size = list_page_size
        self._clock = clock
        self._port = port
        self._lock = threading.RLock()
        self._limiter = _SlidingWindowLimiter(rate_limit, rate_window)
        self._tracks: dict[tuple[str, str, str], _Track] = {}
        self._uploads: set[str] = set()
        self._jobs: dict[str, _Job] = {}
        self._pending: list[tuple[float, int, str]] = []  # heap of (done_at, seq, job_id)
        self._faults: list[_FaultEntry] = []
        self._records: list[RequestRecord] = []
        self._blocked_until = -math.inf
        self._stats = SimulatorStats(
            requests=0, rate_limited=0, early_requests=0, faults_served=0, jobs_created=0
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def _check_environments(primary: str, sandboxes: frozenset[str]) -> None:
        for env in (primary, *sandboxes):
            if not ENVIRONMENT_ID.fullmatch(env):
                raise ValueError(f"invalid environment id {env!r}")
        if primary in sandboxes:
            raise ValueError("the primary environment cannot also be a sandbox")

    # ----------------------------------------------------------------------- lifecycle

    def start(self) -> str:
        """Serve in a daemon thread; return the base URL, e.g. ``http://127.0.0.1:PORT``."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = _Server((HOST, self._port), self)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"datocms-simulator-{server.server_port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self.base_url

    def stop(self) -> None:
        """Stop serving and close every open connection; safe to call twice."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> DatoCMSSimulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return int(self._server.server_port)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # ----------------------------------------------------------------------- configuration

    def add_track(  # noqa: PLR0913 (keyword-only track attributes)
        self,
        upload_id: str,
        track_id: str,
        *,
        environment: str | None = None,
        type: str = "subtitles",  # DatoCMS's attribute name
        name: str = "Italiano",
        language_code: str = "it-IT",
        closed_captions: bool | None = False,
        status: str = "ready",
        error: str | None = None,
        job_seconds: float | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        """Add (or replace) a track. `outcome`: None = deletion succeeds, else (status, code)."""
        if type not in TRACK_TYPES or status not in TRACK_STATUSES:
            raise ValueError(f"invalid track type/status {type!r}/{status!r}")
        _validate_outcome(outcome)
        env = self._environment_or_primary(environment)
        track = _Track(
            upload_id, track_id, type, name, language_code, closed_captions, status, error,
            job_seconds, outcome,
        )  # fmt: skip
        with self._lock:
            self._uploads.add(upload_id)
            self._tracks[(env, upload_id, track_id)] = track

    def remove_track(
        self, upload_id: str, track_id: str, *, environment: str | None = None
    ) -> bool:
        """Remove a track without a job; return whether it existed."""
        env = self._environment_or_primary(environment)
        with self._lock:
            return self._tracks.pop((env, upload_id, track_id), None) is not None

    def tracks(self, upload_id: str, environment: str | None = None) -> list[dict[str, Any]]:
        """The upload's tracks as ``upload_track`` resources (after completing due jobs)."""
        env = self._environment_or_primary(environment)
        with self._lock:
            self._settle(self._clock())
            return self._track_resources(env, upload_id)

    def inject(
        self, fault: Fault, *, times: int = 1, match: tuple[str | None, str | None] | None = None
    ) -> None:
        """Queue a fault for the next `times` requests matching (method, raw path prefix).

        Faults: "500", "503", "html_502", "drop", "drop_after", "undocumented",
        ("slow", seconds), ("429", reset_seconds). The oldest matching fault is used first.
        All but "slow" and "drop_after" act in front of the API (no effect, no quota);
        "slow" lets the request take effect and delays only the answer; "drop_after"
        lets it take effect, then closes the connection without an answer.
        """
        kind, value = _parse_fault(fault)
        if times < 1:
            raise ValueError("times must be at least 1")
        method, prefix = match if match is not None else (None, None)
        with self._lock:
            self._faults.append(_FaultEntry(kind, value, method, prefix, times))

    def _environment_or_primary(self, environment: str | None) -> str:
        env = environment or self.primary_environment
        if env != self.primary_environment and env not in self.sandbox_environments:
            raise ValueError(f"unknown environment {env!r}")
        return env

    # ----------------------------------------------------------------------- inspection

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every request so far, in the order they were answered."""
        with self._lock:
            return list(self._records)

    def count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        """How many requests matched `method` and the raw `path_prefix` (None = any)."""
        with self._lock:
            return sum(
                1
                for record in self._records
                if (method is None or record.method == method.upper())
                and (path_prefix is None or record.path.startswith(path_prefix))
            )

    def stats(self) -> SimulatorStats:
        """Totals: requests, rate_limited (429s), early_requests, faults_served, jobs_created."""
        with self._lock:
            return SimulatorStats(**self._stats)

    # ----------------------------------------------------------------------- request flow

    def _handle_request(self, method: str, target: str, headers: dict[str, str]) -> _Reply:
        """Answer one request (headers with lower-cased names); records it before returning."""
        path = target.split("?", 1)[0]
        segments = [urllib.parse.unquote(part) for part in path.split("/")[1:]]
        with self._lock:
            now = self._clock()
            call = _Call(
                method, path, segments, headers, now, self._token_role(headers.get("authorization"))
            )
            call.query = urllib.parse.parse_qs(target.partition("?")[2])
            early = self._note_arrival(now)
            self._settle(now)
            fault = self._take_fault(method, path)
            reply = self._fault_reply(fault) if fault else None
            if reply is None:
                reply = self._api_reply(call)
                self._apply_late_fault(reply, fault)
            self._finish(call, reply, early, fault)
            return reply

    def _note_arrival(self, now: float) -> bool:
        self._stats["requests"] += 1
        early = now < self._blocked_until
        if early:
            self._stats["early_requests"] += 1
        return early

    def _take_fault(self, method: str, path: str) -> _FaultEntry | None:
        for entry in self._faults:
            if entry.matches(method, path):
                entry.remaining -= 1
                if entry.remaining == 0:
                    self._faults.remove(entry)
                self._stats["faults_served"] += 1
                return entry
        return None

    def _fault_reply(self, fault: _FaultEntry) -> _Reply | None:
        """The answer of a fault in front of the API, or None if the API must answer."""
        if fault.kind == "500":
            return _error(500, "INTERNAL_SERVER_ERROR", transient=True)
        if fault.kind == "503":
            return _error(503, "SERVICE_UNAVAILABLE", transient=True)
        if fault.kind == "html_502":
            return _Reply(502, CDN_502_PAGE, HTML_CONTENT_TYPE, api_headers=False)
        if fault.kind == "drop":
            return _Reply(0, drop=True)
        if fault.kind == "429":
            return self._rate_limited(int(fault.value))
        if fault.kind == "undocumented":
            return _json_reply(200, {"data": {"type": "upload_track"}})
        return None

    @staticmethod
    def _apply_late_fault(reply: _Reply, fault: _FaultEntry | None) -> None:
        if fault is not None and fault.kind == "slow":
            reply.delay = fault.value
        if fault is not None and fault.kind == "drop_after":
            reply.drop = True

    def _api_reply(self, call: _Call) -> _Reply:
        refusal = self._check_headers(call)
        if refusal is not None:
            return refusal
        if not self._limiter.try_acquire(call.now):
            return self._rate_limited(self._limiter.reset_seconds(call.now))
        refusal = self._resolve_environment(call)
        if refusal is not None:
            return refusal
        reply = self._route(call)
        reply.headers["X-Environment"] = call.environment or self.primary_environment
        return reply

    def _finish(self, call: _Call, reply: _Reply, early: bool, fault: _FaultEntry | None) -> None:
        request_id = secrets.token_hex(16)
        if reply.api_headers:
            reply.headers = {**self._api_headers(call.now, request_id), **reply.headers}
        reply.headers["CF-Ray"] = f"{secrets.token_hex(8)}-SIM"
        if reply.status == 429 and not reply.drop:
            self._stats["rate_limited"] += 1
            reset = float(reply.headers["X-RateLimit-Reset"])
            self._blocked_until = max(self._blocked_until, call.now + reset)
        self._records.append(self._record(call, reply, early, fault, request_id))

    def _api_headers(self, now: float, request_id: str) -> dict[str, str]:
        return {
            "Cache-Control": "no-cache",
            "X-Api-Version": "3",
            "X-RateLimit-Limit": str(self._limiter.limit),
            "X-RateLimit-Remaining": str(self._limiter.remaining(now)),
            "Access-Control-Expose-Headers": (
                "x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset"
            ),
            "X-Request-Id": request_id,
            "X-Queue-Time": "0",
        }

    @staticmethod
    def _record(
        call: _Call, reply: _Reply, early: bool, fault: _FaultEntry | None, request_id: str
    ) -> RequestRecord:
        headers = {
            name: call.headers[name.lower()]
            for name in RECORDED_HEADERS
            if name.lower() in call.headers
        }
        if "authorization" in call.headers:
            headers["Authorization"] = "<redacted>"
        return RequestRecord(
            method=call.method,
            path=call.path,
            status=None if reply.drop else reply.status,
            environment=call.headers.get("x-environment"),
            time=call.now,
            headers=headers,
            auth_valid=call.role is not None,
            early=early,
            fault=fault.kind if fault is not None else None,
            request_id=request_id if reply.api_headers else "",
        )

    # ----------------------------------------------------------------------- checks

    def _token_role(self, authorization: str | None) -> Role | None:
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if token == self.api_token:
            return "full"
        return "read_only" if token in self.read_only_tokens else None

    def _check_headers(self, call: _Call) -> _Reply | None:
        if call.role is None:
            return _error(401, "INVALID_AUTHORIZATION_HEADER")
        if call.headers.get("x-api-version", "").strip() != "3":
            return _error(422, "INVALID_API_VERSION")
        if not _accepts_json(call.headers.get("accept")):
            return _error(406, "INVALID_ACCEPT_HEADER")
        return None

    def _resolve_environment(self, call: _Call) -> _Reply | None:
        requested = call.headers.get("x-environment", "").strip()
        known = {self.primary_environment, *self.sandbox_environments}
        if requested and requested not in known:
            return _error(404, "INVALID_ENVIRONMENT", {"environment": requested})
        call.environment = requested or self.primary_environment
        return None

    def _rate_limited(self, reset_seconds: int) -> _Reply:
        reply = _error(429, "RATE_LIMIT_EXCEEDED", transient=True)
        reply.headers["X-RateLimit-Remaining"] = "0"
        reply.headers["X-RateLimit-Reset"] = str(reset_seconds)
        return reply

    # ----------------------------------------------------------------------- routes

    def _route(self, call: _Call) -> _Reply:
        match call.segments:
            case ["uploads", upload_id, "tracks"]:
                if call.method != "GET":
                    return self._method_not_allowed("GET")
                return self._list_tracks(call, upload_id)
            case ["uploads", upload_id, "tracks", track_id]:
                if call.method != "DELETE":
                    return self._method_not_allowed("DELETE")
                return self._delete_track(call, upload_id, track_id)
            case ["job-results", job_id]:
                if call.method != "GET":
                    return self._method_not_allowed("GET")
                return self._job_result(job_id)
            case _:
                return _error(404, "INVALID_ENDPOINT")

    @staticmethod
    def _method_not_allowed(allowed: str) -> _Reply:
        reply = _error(405, "INVALID_ENDPOINT")
        reply.headers["Allow"] = allowed
        return reply

    def _list_tracks(self, call: _Call, upload_id: str) -> _Reply:
        if upload_id not in self._uploads:
            return _json_reply(404, _not_found_body())
        env = call.environment or self.primary_environment
        resources = self._track_resources(env, upload_id)
        if self.list_page_size is None:
            return _json_reply(200, {"data": resources})
        offset = _int_param(call.query, "page[offset]", 0)
        limit = min(_int_param(call.query, "page[limit]", self.list_page_size), self.list_page_size)
        page = resources[offset : offset + limit]
        return _json_reply(200, {"data": page, "meta": {"total_count": len(resources)}})

    def _track_resources(self, env: str, upload_id: str) -> list[dict[str, Any]]:
        return [
            track.resource()
            for (track_env, track_upload, _), track in self._tracks.items()
            if track_env == env and track_upload == upload_id
        ]

    def _delete_track(self, call: _Call, upload_id: str, track_id: str) -> _Reply:
        env = call.environment or self.primary_environment
        if call.role != "full":
            return _error(403, "INSUFFICIENT_PERMISSIONS")
        if env != self.primary_environment:
            return _error(422, "IMMUTABLE_UPLOAD_TRACKS_IN_SANDBOX_ENVIRONMENT")
        track = self._tracks.get((env, upload_id, track_id))
        if track is None and self.missing_track_mode == "sync_404":
            return _json_reply(404, _not_found_body())
        if track is None:
            job = self._start_job(call, upload_id, track_id, seconds=None, outcome=MISSING)
        else:
            job = self._start_job(
                call, upload_id, track_id, seconds=track.job_seconds, outcome=track.outcome
            )
        return _json_reply(202, {"data": {"type": "job", "id": job.job_id}})

    def _job_result(self, job_id: str) -> _Reply:
        job = self._jobs.get(job_id)
        if job is None or job.result is None:
            return _json_reply(404, _not_found_body())
        return _json_reply(200, _job_result_body(job))

    # ----------------------------------------------------------------------- jobs

    def _start_job(
        self,
        call: _Call,
        upload_id: str,
        track_id: str,
        *,
        seconds: float | None,
        outcome: Outcome | None,
    ) -> _Job:
        env = call.environment or self.primary_environment
        duration = self.default_job_seconds if seconds is None else seconds
        job = _Job(secrets.token_hex(12), env, upload_id, track_id, call.now + duration, outcome)
        self._jobs[job.job_id] = job
        heapq.heappush(self._pending, (job.done_at, self._stats["jobs_created"], job.job_id))
        self._stats["jobs_created"] += 1
        return job

    def _settle(self, now: float) -> None:
        """Complete, in order, every job whose time has come."""
        while self._pending and self._pending[0][0] <= now:
            _, _, job_id = heapq.heappop(self._pending)
            job = self._jobs[job_id]
            job.result = self._complete(job)

    def _complete(self, job: _Job) -> tuple[int, Any]:
        if job.outcome is not None:
            status, code = job.outcome
            body = _not_found_body() if code == "NOT_FOUND" else _api_error_body(code)
            return status, body
        track = self._tracks.pop((job.environment, job.upload_id, job.track_id), None)
        if track is None:
            return 404, _not_found_body()
        return 200, {"data": track.resource()}


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops bursts of connections (1 s SYN retries)

    def __init__(self, address: tuple[str, int], simulator: DatoCMSSimulator) -> None:
        self.simulator = simulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (a DNS lookup); not needed here.
        TCPServer.server_bind(self)
        self.server_name = HOST
        self.server_port = self.socket.getsockname()[1]

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client went away; nothing to report
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave in two writes: no 40 ms stalls

    def version_string(self) -> str:
        return "cloudflare"

    def log_message(self, format: str, *args: Any) -> None:
        if cast(_Server, self.server).simulator.verbose:
            sys.stderr.write(f"datocms-simulator: {format % args}\n")

    def do_GET(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_OPTIONS(self) -> None:
        self._serve()

    def _serve(self) -> None:
        self._discard_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        simulator = cast(_Server, self.server).simulator
        reply = simulator._handle_request(self.command, self.path, headers)
        if reply.drop:
            self.close_connection = True
            return
        if reply.delay > 0:
            time.sleep(reply.delay)
        try:
            self._write(reply)
        except OSError:
            self.close_connection = True

    def _discard_body(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # not supported: answer, then close
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > 0:
            self.rfile.read(length)

    def _write(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)
        self.wfile.flush()


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until Ctrl-C (or SIGTERM), with the demo track seeded."""
    parser = argparse.ArgumentParser(description="DatoCMS CMA simulator (upload tracks)")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--token", default="sim-token", help="the accepted API token")
    parser.add_argument("--job-seconds", type=float, default=1.0, help="deletion job duration")
    parser.add_argument("--rate-limit", type=int, default=60, help="requests per window")
    parser.add_argument("--rate-window", type=float, default=3.0, help="window in seconds")
    parser.add_argument("--missing-track-mode", choices=("sync_404", "job_404"), default="sync_404")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)

    simulator = DatoCMSSimulator(
        api_token=args.token,
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
        default_job_seconds=args.job_seconds,
        missing_track_mode=args.missing_track_mode,
        port=args.port,
        verbose=args.verbose,
    )
    simulator.add_track(DEMO_UPLOAD_ID, DEMO_TRACK_ID)
    for track_id, kind, name, language, captions in DEMO_EXTRA_TRACKS:
        simulator.add_track(
            DEMO_UPLOAD_ID,
            track_id,
            type=kind,
            name=name,
            language_code=language,
            closed_captions=captions,
        )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.set())
    url = simulator.start()
    print(f"DatoCMS simulator listening on {url}", flush=True)
    print(f"demo track: DELETE {url}/uploads/{DEMO_UPLOAD_ID}/tracks/{DEMO_TRACK_ID}", flush=True)
    try:
        while not stopping.wait(0.2):
            continue
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
