"""Structured logs: one JSON object per line on stdout, in Cloud Logging's format.

Only the fields a caller names are written: there is no way to log a request,
a header map or a settings object whole, so secrets cannot slip in by accident.

Cloud Logging's special fields, written for every line where they apply:

- `logging.googleapis.com/operation`: `{"id": request_id, "producer": PRODUCER}`
  on every line that carries a `request_id`, so Logs Explorer groups one
  request's life across the three functions; `"first": true` on the intake's
  line that accepts it, `"last": true` on the line that ends it (see
  `FIRST` / `LAST`).
- `logging.googleapis.com/labels`: `function` (the process's
  `FUNCTION_TARGET`) and, on the lines that carry one, `outcome`.
- `logging.googleapis.com/trace` (and `spanId`), from `trace_field()`.

`error_report()` turns an exception into fields that Error Reporting picks up
(the `ReportedErrorEvent` `@type`, a `serviceContext` and a Python stack
trace), without the exception's message, which may carry a request's data.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any, Literal, TextIO

_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d{1,20}))?")
_LOCK = threading.Lock()

#: `operation.producer` of every line about a request.
PRODUCER = "datocms-track-deleter"
OPERATION = "logging.googleapis.com/operation"
LABELS = "logging.googleapis.com/labels"
REPORTED_ERROR_EVENT = (
    "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"
)
#: Values of a log call's `operation=` argument.
FIRST: Literal["first"] = "first"
LAST: Literal["last"] = "last"


def trace_field(header: str | None, project: str | None) -> dict[str, str]:
    """`logging.googleapis.com/trace` from `X-Cloud-Trace-Context`, when the project is known."""
    if not header or not project:
        return {}
    match = _TRACE.match(header)
    if not match:
        return {}
    fields = {"logging.googleapis.com/trace": f"projects/{project}/traces/{match.group(1)}"}
    if match.group(2):
        fields["logging.googleapis.com/spanId"] = match.group(2)
    return fields


def error_report(crash: BaseException, service: str | None) -> dict[str, Any]:
    """Fields that make Error Reporting pick up `crash`: its type and frames, not its message.

    The stack trace has `traceback.format_exc()`'s shape (Error Reporting's
    Python format) with file, line and function of each frame; the source
    lines and the exception's text are left out.
    """
    frames = traceback.extract_tb(crash.__traceback__)
    lines = ["Traceback (most recent call last):"]
    lines += [f'  File "{f.filename}", line {f.lineno}, in {f.name}' for f in frames]
    lines.append(f"{type(crash).__module__}.{type(crash).__qualname__}".removeprefix("builtins."))
    return {
        "@type": REPORTED_ERROR_EVENT,
        "serviceContext": {"service": service or "unknown"},
        "stack_trace": "\n".join(lines),
        "exception": type(crash).__name__,
        "frames": [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in frames],
    }


def function_name() -> str | None:
    """The function this process serves (functions-framework sets `FUNCTION_TARGET`)."""
    return os.environ.get("FUNCTION_TARGET") or None


class Log:
    """A logger bound to some context fields (request ids, trace)."""

    def __init__(
        self, stream: TextIO | None = None, fields: Mapping[str, Any] | None = None
    ) -> None:
        self._stream = stream
        self._fields = dict(fields or {})

    def bind(self, **fields: Any) -> Log:
        """A logger that adds `fields` (None values are left out) to every line."""
        merged = {**self._fields, **{k: v for k, v in fields.items() if v is not None}}
        return Log(self._stream, merged)

    def write(
        self,
        severity: str,
        message: str,
        *,
        operation: Literal["first", "last"] | None = None,
        outcome: str | None = None,
        **fields: Any,
    ) -> None:
        """One line. `operation` marks the first or last line of the request's operation;
        `outcome` becomes a label (and a field)."""
        entry: dict[str, Any] = {"severity": severity, "message": message}
        entry.update(self._fields)
        entry.update({k: v for k, v in fields.items() if v is not None})
        if outcome is not None:
            entry["outcome"] = outcome
        request_id = entry.get("request_id")
        if request_id is not None:
            op: dict[str, Any] = {"id": str(request_id), "producer": PRODUCER}
            if operation is not None:
                op[operation] = True
            entry[OPERATION] = op
        labels = {"function": entry.get("function") or function_name(), "outcome": outcome}
        labels = {k: str(v) for k, v in labels.items() if v is not None}
        if labels:
            entry[LABELS] = labels
        entry.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        line = json.dumps(entry, ensure_ascii=True, default=str, separators=(",", ":"))
        stream = self._stream or sys.stdout
        with _LOCK:
            stream.write(line + "\n")
            stream.flush()

    def debug(self, message: str, **fields: Any) -> None:
        self.write("DEBUG", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self.write("INFO", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.write("WARNING", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.write("ERROR", message, **fields)
