"""Reading a request body: at most `limit` bytes, and never a crash.

A client can break the framing of its own body (a chunk size `zz` or `-1`, a
chunk longer than what it sends, a connection dropped mid-body); the WSGI
server then raises from `read()`. That is the client's fault, never a 500:
`read_at_most` turns every read error into `BodyUnreadable`, which the intake
answers with `400` and the task endpoint with `401`, logged at WARNING
without a stack.
"""

from __future__ import annotations

from typing import IO


class BodyUnreadable(Exception):
    """The body could not be read; `kind` is the error's type name (for the log)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(kind)


def read_at_most(stream: IO[bytes], limit: int) -> bytes:
    """Up to `limit` bytes of `stream`; `BodyUnreadable` whatever the server raised."""
    try:
        return stream.read(limit)
    except Exception as failure:  # gunicorn's InvalidChunkSize, NoMoreData, werkzeug's ...
        raise BodyUnreadable(type(failure).__name__) from None
