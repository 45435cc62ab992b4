"""`adapters.log`: Cloud Logging's special fields, and crash reports Error Reporting reads."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from adapters.log import (
    FIRST,
    LABELS,
    LAST,
    OPERATION,
    PRODUCER,
    REPORTED_ERROR_EVENT,
    Log,
    error_report,
)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_about_a_request_names_its_operation_and_marks_first_and_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FUNCTION_TARGET", "poll_job")
    stream = io.StringIO()
    log = Log(stream).bind(request_id="r-1")

    log.info("accepted", operation=FIRST)
    log.info("polled")
    log.info("finished", operation=LAST, outcome="deleted")
    Log(stream).info("no request here")

    first, middle, last, other = lines(stream)
    assert first[OPERATION] == {"id": "r-1", "producer": PRODUCER, "first": True}
    assert middle[OPERATION] == {"id": "r-1", "producer": PRODUCER}
    assert last[OPERATION] == {"id": "r-1", "producer": PRODUCER, "last": True}
    assert OPERATION not in other
    assert last[LABELS] == {"function": "poll_job", "outcome": "deleted"}
    assert last["outcome"] == "deleted"
    assert first[LABELS] == {"function": "poll_job"}


def test_the_function_label_prefers_the_lines_own_function_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FUNCTION_TARGET", raising=False)
    stream = io.StringIO()

    Log(stream).error("misconfigured", function="delete_track")
    Log(stream).info("no function known")

    named, unnamed = lines(stream)
    assert named[LABELS] == {"function": "delete_track"}
    assert LABELS not in unnamed


def _crash(secret: str) -> BaseException:
    try:
        raise ValueError(f"token={secret} body={{'upload_id': 'u'}}")
    except ValueError as crash:
        return crash


def test_a_crash_report_has_error_reportings_shape_and_not_the_exceptions_text() -> None:
    report = error_report(_crash("s3cr3t-value"), "poll_job")

    assert report["@type"] == REPORTED_ERROR_EVENT
    assert report["serviceContext"] == {"service": "poll_job"}
    trace = report["stack_trace"]
    assert trace.startswith("Traceback (most recent call last):\n  File ")
    assert ", in _crash" in trace
    assert trace.splitlines()[-1] == "ValueError"
    assert report["exception"] == "ValueError"
    assert "s3cr3t-value" not in json.dumps(report)
    assert "upload_id" not in json.dumps(report)
