"""Waiting in end-to-end tests: poll with a deadline, never sleep a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

WAIT = 15.0  # upper bound for a whole request; one takes about 1 s on the local stack
QUIET = 1.0  # long enough for a wrong redelivery (local queue: 0.2 s, emulator: 0.1 s) to show

T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = WAIT) -> T:
    """Poll `probe` every 50 ms until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def stays_unchanged(probe: Callable[[], Any], seconds: float = QUIET) -> Any:
    """Watch `probe` for `seconds`; return its value, failing as soon as it changes."""
    before = probe()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = probe()
        assert now == before, f"changed during the quiet window: {before!r} -> {now!r}"
    return before
