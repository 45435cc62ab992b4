"""The DatoCMS client's pacing: staying under the project's rate limit without a 429.

Most tests drive `RatePacer` with a hand-moved clock and `max_wait=0` (a call
without room fails at once); two run against the simulator on loopback.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator

import pytest
import requests

from adapters.datocms import DatoCMSClient
from adapters.log import Log
from adapters.pacing import RatePacer
from core.errors import DatoCMSHeldBack
from core.headers import Headers
from core.settings import Secret
from devstack.datocms_simulator import DatoCMSSimulator

TOKEN = "pacing-test-token"


def answer(remaining: int, limit: int = 60) -> Headers:
    return Headers({"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining)})


def pacer(clock: list[float], **options: float) -> RatePacer:
    settings: dict[str, float] = {"max_wait": 0.0, **options}
    return RatePacer(
        clock=lambda: clock[0],
        window=settings.pop("window", 3.0),
        max_wait=settings.pop("max_wait"),
        **{key: int(value) for key, value in settings.items()},
    )


def test_calls_go_while_there_is_room_and_wait_for_the_oldest_to_leave_the_window() -> None:
    clock = [100.0]
    gate = pacer(clock)
    for sent in range(1, 60):
        ticket = gate.acquire()
        gate.settle(ticket, 200, answer(60 - sent))
    with pytest.raises(DatoCMSHeldBack) as held:
        gate.acquire()  # one would remain: the reserve
    assert held.value.retry_after == pytest.approx(3.05)
    clock[0] += 3.1
    gate.acquire()


def test_other_clients_calls_count_until_a_window_after_the_answer_that_showed_them() -> None:
    clock = [100.0]
    gate = pacer(clock, shared_reserve=6)
    gate.settle(gate.acquire(), 200, answer(10))  # 49 calls in the window are not ours
    tickets = [gate.acquire() for _ in range(4)]  # 60 - 5 - 49 = 6 remain: the shared reserve
    with pytest.raises(DatoCMSHeldBack) as held:
        gate.acquire()
    assert held.value.retry_after == pytest.approx(3.0)
    for remaining, ticket in zip((9, 8, 7, 6), tickets, strict=True):
        gate.settle(ticket, 200, answer(remaining))
    clock[0] = 102.9
    with pytest.raises(DatoCMSHeldBack) as still:
        gate.acquire()
    assert still.value.retry_after == pytest.approx(0.1)  # when the others' calls are gone
    clock[0] = 103.02
    gate.acquire()


def test_without_a_recent_answer_one_call_at_a_time_goes_out() -> None:
    clock = [100.0]
    gate = pacer(clock)
    first = gate.acquire()
    with pytest.raises(DatoCMSHeldBack):
        gate.acquire()
    gate.settle(first, 200, answer(59))
    gate.acquire()
    gate.acquire()


def test_a_refused_call_does_not_count_against_the_window() -> None:
    clock = [100.0]
    gate = pacer(clock, limit=2, reserve=0)
    gate.settle(gate.acquire(), 200, answer(1, limit=2))
    gate.settle(
        gate.acquire(), 429, Headers({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"})
    )
    gate.acquire()  # only the answered call counts: there is room for this one...
    with pytest.raises(DatoCMSHeldBack):
        gate.acquire()  # ...and for no other (had the 429 counted, the one above was held)


def test_an_answer_without_rate_limit_headers_still_counts_the_call() -> None:
    clock = [100.0]
    gate = pacer(clock, limit=3, reserve=0)
    gate.settle(gate.acquire(), 200, answer(2, limit=3))
    gate.settle(gate.acquire(), 502, Headers())  # a CDN page: no headers, but it may have counted
    gate.settle(gate.acquire(), None, Headers())  # no answer at all: the same
    with pytest.raises(DatoCMSHeldBack):
        gate.acquire()


def test_a_held_call_waits_when_room_comes_back_within_max_wait() -> None:
    gate = RatePacer(window=0.2, max_wait=2.0, reserve=0, limit=1)
    gate.settle(gate.acquire(), 200, answer(0, limit=1))
    outcome: list[object] = []
    waiter = threading.Thread(target=lambda: outcome.append(gate.acquire()))
    waiter.start()
    waiter.join(5.0)
    assert outcome and not isinstance(outcome[0], Exception)


# --------------------------------------------------------------------------- on loopback


@pytest.fixture
def sim() -> Iterator[DatoCMSSimulator]:
    with DatoCMSSimulator(api_token=TOKEN, rate_limit=5, rate_window=0.5) as simulator:
        yield simulator


def test_a_paced_client_gets_no_429_from_a_busy_project(sim: DatoCMSSimulator) -> None:
    client = DatoCMSClient(
        base_url=sim.base_url,
        token=Secret(TOKEN),
        session=requests.Session(),
        log=Log(io.StringIO()),
        pacer=RatePacer(window=0.5, limit=5, max_wait=1.0),
    )
    held: list[DatoCMSHeldBack] = []

    def poll(count: int) -> None:
        for _ in range(count):
            try:
                client.job_result("0123456789abcdef01234567", None)
            except DatoCMSHeldBack as error:
                held.append(error)

    threads = [threading.Thread(target=poll, args=(5,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    stats = sim.stats()
    assert stats["rate_limited"] == 0
    assert stats["early_requests"] == 0
    assert stats["requests"] + len(held) == 20


def test_proxy_settings_are_read_once_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = requests.Session()
    DatoCMSClient(
        base_url="https://site-api.datocms.com",
        token=Secret(TOKEN),
        session=session,
        log=Log(io.StringIO()),
    )
    assert session.trust_env is False  # no per-call scan of the environment, no ~/.netrc
    monkeypatch.setenv("HTTPS_PROXY", "http://other.invalid:3128")
    settings = session.merge_environment_settings("https://x", {}, None, None, None)
    assert settings["proxies"] == {"https": "http://proxy.invalid:3128"}  # read once, kept
