"""Structured logs: one JSON object per line on stdout, in Cloud Logging's format.

Only the fields a caller names are written: there is no way to log a request,
a header map or a settings object whole, so secrets cannot slip in by accident.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d{1,20}))?")
_LOCK = threading.Lock()


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

    def write(self, severity: str, message: str, **fields: Any) -> None:
        entry: dict[str, Any] = {"severity": severity, "message": message}
        entry.update(self._fields)
        entry.update({k: v for k, v in fields.items() if v is not None})
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
