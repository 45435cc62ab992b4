"""Benchmarks 2 to 4 on a small scale: real processes on loopback, everything stopped after.

These check the machinery and the invariants (every request gets exactly one
callback, nothing sent early), never how long anything took.
"""

from __future__ import annotations

import pytest

from benchmarks import coldstart, ratelimit, throughput

pytestmark = pytest.mark.xdist_group("bench-processes")


def test_a_small_burst_gets_exactly_one_callback_per_request_and_no_429() -> None:
    report = ratelimit.run(deletions=8, timeout=60.0, concurrency=8, settle=0.5)
    assert report.complete
    assert report.exactly_one_callback
    assert report.early == 0
    assert report.rate_limited == 0
    assert report.deletes == 8
    assert report.floor > 0


def test_cold_start_measures_both_functions_and_profiles_the_imports() -> None:
    report = coldstart.run(runs=1, import_repeats=1)
    assert len(report.service) == len(report.hello) == len(report.with_bytecode) == 1
    assert report.ratio > 0
    modules = {line.module for line in report.imports}
    assert "main" in modules
    assert "functions_framework" not in modules  # imported before main: not counted
    assert coldstart.top_imports(report.imports)


def test_throughput_drives_both_functions_without_errors() -> None:
    report = throughput.run(rounds=1, duration=0.3, clients=2)
    assert report.service_median > 0
    assert report.loopback_median > 0
    assert report.errors == 0
