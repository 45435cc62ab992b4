"""`RatePacer`: keeps a DatoCMS client under the project's rate limit (60 requests per 3 s).

It counts what this client sent, reads `X-RateLimit-Limit` / `X-RateLimit-Remaining`
from every answer to learn what the project's other clients used, and holds a
call that would leave less than a small reserve. A held call waits when room
comes back within `max_wait` seconds; otherwise it fails at once with
`DatoCMSHeldBack` (its `retry_after` says when room is expected), so that the
task is rescheduled and the intake answers "queued".
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import DatoCMSHeldBack
from core.headers import Headers

#: DatoCMS's documented window: 60 requests every 3 seconds per project.
RATE_WINDOW = 3.0
RATE_LIMIT = 60
#: How long a call waits, at most, before looking again when only an answer can tell
#: whether there is room (an answer wakes it sooner).
PROBE_WAIT = 0.25


@dataclass
class Ticket:
    """One call this client let through, and when it left."""

    sent: float
    settled: bool = False


def _header_int(headers: Headers, name: str) -> int | None:
    raw = headers.get(name)
    try:
        number = int(raw.strip()) if raw is not None else None
    except ValueError:
        return None
    return number if number is not None and 0 <= number <= 1_000_000_000_000 else None


class RatePacer:
    """Lets a call through only while the project has room left under its rate limit.

    What is used in the window is this client's own calls (in flight, or answered
    less than `window` + `margin` ago) plus the others' calls: those the last answer
    counted beyond this client's, assumed to stay in the window until `window`
    after that answer. A call goes when more than `reserve` requests would remain
    (`shared_reserve` while other clients are active, for the calls they may have
    in flight). Without a recent answer the state is unknown: one call at a time
    goes out to learn it.
    """

    def __init__(
        self,
        *,
        window: float = RATE_WINDOW,
        limit: int = RATE_LIMIT,
        reserve: int = 1,
        shared_reserve: int = 6,
        max_wait: float = RATE_WINDOW + 0.05,
        margin: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.reserve = reserve
        self.shared_reserve = shared_reserve
        self.max_wait = max_wait
        self.margin = margin
        self._clock = clock
        self._limit = limit
        self._in_flight = 0
        self._answered: deque[float] = deque()  # when this client's admitted calls were answered
        self._others = 0  # other clients' calls in the window at the last answer
        self._others_until = -math.inf
        self._shared_until = -math.inf
        self._last_answer = -math.inf
        self._cond = threading.Condition()

    def acquire(self) -> Ticket:
        """A ticket for one call, after a wait of at most `max_wait`; else `DatoCMSHeldBack`."""
        deadline = time.monotonic() + self.max_wait
        with self._cond:
            while True:
                now = self._clock()
                wait = self._room(now)
                if wait <= 0.0:
                    self._in_flight += 1
                    return Ticket(now)
                left = deadline - time.monotonic()
                if wait > left:
                    raise DatoCMSHeldBack(
                        "held back: no room left under DatoCMS's rate limit",
                        code="RATE_LIMIT_EXCEEDED",
                        retry_after=wait,
                    )
                self._cond.wait(wait)

    def settle(self, ticket: Ticket, status: int | None, headers: Headers) -> None:
        """Record the answer to `ticket`'s call (`status` None: no answer came)."""
        with self._cond:
            if ticket.settled:
                return
            ticket.settled = True
            self._in_flight -= 1
            now = self._clock()
            if status != 429:  # refused calls do not count against the limit
                self._answered.append(now)
            limit = _header_int(headers, "x-ratelimit-limit")
            remaining = _header_int(headers, "x-ratelimit-remaining")
            if remaining is not None and status != 429:
                self._limit = limit or self._limit
                self._others = max(0, self._limit - remaining - self._mine(now))
                self._others_until = now + self.window
                if self._others > self.reserve:
                    self._shared_until = now + self.window
                self._last_answer = now
            self._cond.notify_all()

    def _mine(self, now: float) -> int:
        """This client's answered calls still in the window (counted late: never too few)."""
        expiry = self.window + self.margin
        while self._answered and self._answered[0] + expiry <= now:
            self._answered.popleft()
        return len(self._answered)

    def _room(self, now: float) -> float:
        """0 when a call may go now, else the seconds until room is expected."""
        mine = self._mine(now) + self._in_flight
        if now - self._last_answer > self.window:  # nothing recent is known: one call at a time
            return 0.0 if self._in_flight == 0 else PROBE_WAIT
        others = self._others if now < self._others_until else 0
        shared = now < self._shared_until
        if self._limit - mine - others > (self.shared_reserve if shared else self.reserve):
            return 0.0
        frees = [self._others_until] if others else []
        if self._answered:
            frees.append(self._answered[0] + self.window + self.margin)
        if shared:
            frees.append(self._shared_until)
        return max(min(frees, default=now + PROBE_WAIT) - now, 0.001)
