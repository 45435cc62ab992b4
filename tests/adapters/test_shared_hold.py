"""An announced rate-limit reset holds back every instance's calls, not only the one told."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import requests

from adapters.datocms import DatoCMSClient
from adapters.log import Log
from adapters.shared_hold import SharedHold
from adapters.state_sqlite import SQLiteStateStore
from core.errors import DatoCMSHeldBack, DatoCMSRateLimited, StateUnavailable
from core.settings import Secret
from devstack.datocms_simulator import DEMO_UPLOAD_ID, DatoCMSSimulator
from devstack.stack import Secrets
from tests.conftest import LogCapture

UPLOAD = DEMO_UPLOAD_ID


def instance(simulator: DatoCMSSimulator, secrets: Secrets, path: Path) -> DatoCMSClient:
    return DatoCMSClient(
        base_url=simulator.base_url,
        token=Secret(secrets.datocms_token),
        session=requests.Session(),
        log=Log(LogCapture()),
        hold=SharedHold(SQLiteStateStore(path, "shared"), time.time),
    )


def test_a_reset_announced_to_one_instance_holds_the_others_calls(
    simulator: DatoCMSSimulator, secrets: Secrets, tmp_path: Path
) -> None:
    simulator.add_track(UPLOAD, "t1")
    simulator.add_track(UPLOAD, "t2")
    told, other = (instance(simulator, secrets, tmp_path / "s.db") for _ in range(2))
    simulator.inject(("429", 4))
    with pytest.raises(DatoCMSRateLimited):
        told.delete_track(UPLOAD, "t1", None)
    calls = len(simulator.requests)
    with pytest.raises(DatoCMSHeldBack) as held:
        other.delete_track(UPLOAD, "t2", None)
    assert len(simulator.requests) == calls  # nothing went out before the reset
    assert held.value.retry_after is not None and 3 < held.value.retry_after <= 4
    assert simulator.stats()["early_requests"] == 0


def test_a_later_reset_wins_and_an_earlier_one_does_not_shorten_it(tmp_path: Path) -> None:
    clock = [1_000.0]
    hold = SharedHold(SQLiteStateStore(tmp_path / "s.db", "shared"), lambda: clock[0])
    hold.announce(5)
    hold.announce(2)
    assert hold.remaining() == 5
    clock[0] += 6
    assert hold.remaining() == 0


def test_an_unreadable_store_holds_nothing_back(tmp_path: Path) -> None:
    class Down:
        def get(self, *args: object, **kwargs: object) -> None:
            raise StateUnavailable("down")

    hold = SharedHold(Down(), time.time)  # type: ignore[arg-type]
    assert hold.remaining() == 0.0


def test_concurrent_callers_share_a_read_that_began_after_they_asked(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "s.db", "shared")
    reads: list[float] = []
    in_read, release = threading.Event(), threading.Event()
    real_get = store.get

    def slow_get(key: str, *, now: float) -> object:
        reads.append(now)
        if len(reads) == 1:
            in_read.set()
            assert release.wait(10)
        return real_get(key, now=now)

    store.get = slow_get  # type: ignore[method-assign]
    hold = SharedHold(store, time.time)
    told = SharedHold(SQLiteStateStore(tmp_path / "s.db", "shared"), time.time)
    first = threading.Thread(target=hold.remaining)
    first.start()
    assert in_read.wait(10)  # a read is in flight, begun before the announcement
    told.announce(5)
    waiting: list[float] = []
    later = [threading.Thread(target=lambda: waiting.append(hold.remaining())) for _ in range(5)]
    for thread in later:
        thread.start()
    while hold.waiting() < 5:  # all five asked while the first read was in flight
        time.sleep(0.01)
    release.set()
    for thread in [first, *later]:
        thread.join(10)
    assert len(reads) == 2  # the five later callers shared one new read ...
    assert len(waiting) == 5 and all(4 < left <= 5 for left in waiting)  # ... which saw it
