"""The DatoCMS HTTP adapter: sends requests, hands answers to `core.datocms`.

One `requests.Session` per process (injected). Every request carries the
headers the API checks (`Authorization`, `Accept`, `X-Api-Version: 3`,
`X-Environment` when set) and a `User-Agent` naming this service. A
`RatePacer` (`adapters.pacing`) keeps calls under the project's rate limit;
after a `429` every call is held until the announced `X-RateLimit-Reset`.
A held call sends nothing and fails at once with `DatoCMSHeldBack`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import quote

import requests

from adapters.http import call_streamed, settle_environment
from adapters.log import Log
from adapters.pacing import RatePacer
from adapters.shared_hold import SharedHold
from core import datocms
from core.errors import DatoCMSBadResponse, DatoCMSHeldBack, DatoCMSUnavailable
from core.headers import Headers
from core.settings import Secret

USER_AGENT = "datocms-track-deleter/1.0 (+https://github.com/; python-requests)"
MAX_ANSWER_BYTES = 1024 * 1024
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 20.0
#: Should DatoCMS ever page the track list: pages asked for, and their size.
MAX_LIST_PAGES = 20
LIST_PAGE = 100


class DatoCMSClient:
    """DELETE a track, GET a job result, list an upload's tracks; answers read by `core.datocms`."""

    def __init__(
        self,
        *,
        base_url: str,
        token: Secret,
        session: requests.Session,
        log: Log,
        clock: Callable[[], float] = time.monotonic,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
        pacer: RatePacer | None = None,
        hold: SharedHold | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._session = session
        self._log = log
        self._clock = clock
        self._timeout = timeout
        self._lock = threading.Lock()
        self._blocked_until = 0.0
        self._pacer = pacer or RatePacer(clock=clock)
        self._shared_hold = hold
        settle_environment(session, self._base_url)

    def delete_track(
        self, upload_id: str, track_id: str, environment: str | None, *, log: Log | None = None
    ) -> datocms.Job:
        """`DELETE` the track. `log` (bound to the request's ids) records the call."""
        path = f"/uploads/{quote(upload_id, safe='')}/tracks/{quote(track_id, safe='')}"
        status, headers, body = self._call("DELETE", path, environment, log or self._log)
        return datocms.interpret_delete(status, headers, body)

    def job_result(
        self, job_id: str, environment: str | None, *, log: Log | None = None
    ) -> datocms.Job | datocms.Done | None:
        """`GET` the job's result: None while it runs."""
        path = f"/job-results/{quote(job_id, safe='')}"
        status, headers, body = self._call("GET", path, environment, log or self._log)
        return datocms.interpret_job_result(status, headers, body)

    def list_tracks(
        self, upload_id: str, environment: str | None, *, log: Log | None = None
    ) -> tuple[datocms.ListedTrack, ...]:
        """`GET` the upload's tracks, every page of them should the list ever be paged."""
        path = f"/uploads/{quote(upload_id, safe='')}/tracks"
        found: list[datocms.ListedTrack] = []
        for _ in range(MAX_LIST_PAGES):
            query = f"?page%5Boffset%5D={len(found)}&page%5Blimit%5D={LIST_PAGE}" if found else ""
            status, headers, body = self._call("GET", path + query, environment, log or self._log)
            page = datocms.interpret_list(status, headers, body)
            found.extend(page.tracks)
            if page.total is None or not page.tracks or len(found) >= page.total:
                return tuple(found)
        raise DatoCMSBadResponse(
            "DatoCMS's track listing did not end", http_status=200, code=datocms.INVALID_ANSWER
        )

    def _hold(self) -> None:
        with self._lock:
            wait = self._blocked_until - self._clock()
        if wait <= 0 and self._shared_hold is not None:
            wait = self._shared_hold.remaining()  # a reset another instance was told of
        if wait > 0:
            raise DatoCMSHeldBack(
                "held back until DatoCMS's announced rate-limit reset",
                code="RATE_LIMIT_EXCEEDED",
                retry_after=wait,
            )

    def _block(self, seconds: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)
        if self._shared_hold is not None:
            self._shared_hold.announce(seconds)

    def _call(
        self, method: str, path: str, environment: str | None, log: Log
    ) -> tuple[int, Headers, bytes]:
        self._hold()
        ticket = self._pacer.acquire()
        status: int | None = None
        answer_headers = Headers()
        try:
            status, answer_headers, body = self._send(method, path, environment, log)
        finally:
            self._pacer.settle(ticket, status, answer_headers)
        if status == 429:
            self._block(datocms.reset_seconds(answer_headers))
        return status, answer_headers, body

    def _send(
        self, method: str, path: str, environment: str | None, log: Log
    ) -> tuple[int, Headers, bytes]:
        headers = {
            "Authorization": f"Bearer {self._token.reveal()}",
            "Accept": "application/json",
            "X-Api-Version": "3",
            "User-Agent": USER_AGENT,
        }
        if environment:
            headers["X-Environment"] = environment
        started = time.monotonic()
        try:
            with call_streamed(
                self._session, method, self._base_url + path, headers, timeout=self._timeout
            ) as answer:
                body = answer.raw.read(MAX_ANSWER_BYTES, decode_content=True)
                status, answer_headers = answer.status_code, Headers(answer.headers)
        except requests.Timeout:
            log.warning("DatoCMS call timed out", method=method, path=path)
            raise DatoCMSUnavailable("DatoCMS did not answer in time", code="TIMEOUT") from None
        except requests.RequestException as error:
            log.warning(
                "DatoCMS call failed", method=method, path=path, reason=type(error).__name__
            )
            raise DatoCMSUnavailable(
                "the connection to DatoCMS failed", code="CONNECTION_ERROR"
            ) from None
        log.info(
            "DatoCMS answered",
            method=method,
            path=path,
            http_status=status,
            datocms_request_id=answer_headers.get("X-Request-Id"),
            rate_limit_remaining=answer_headers.get("X-RateLimit-Remaining"),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return status, answer_headers, body
