"""A callback receiver for development and tests: verifies like any real receiver would.

It runs a loopback HTTP server, checks every delivery with the
`standardwebhooks` library (signature, timestamp tolerance) and records it.
`fail_next(status, times)` makes it refuse deliveries, to exercise retries.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int
    at: float  # time.monotonic() at arrival

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


class CallbackReceiver:
    """Loopback webhook receiver; `deliveries` lists every attempt, verified or not."""

    def __init__(self, secret: str, *, port: int = 0) -> None:
        self._webhook = Webhook(secret)
        self._port = port
        self._lock = threading.Condition()
        self._failures: list[int] = []
        self.deliveries: list[Delivery] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None  # noqa: S101
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer `status` to the next `times` deliveries."""
        with self._lock:
            self._failures.extend([status] * times)

    def accepted(self) -> list[Delivery]:
        """Deliveries that verified and were answered 2xx."""
        with self._lock:
            return [d for d in self.deliveries if d.verified and 200 <= d.answered < 300]

    def wait_for(self, count: int, timeout: float) -> list[Delivery]:
        """Wait until `count` deliveries were accepted (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.accepted()) < count and time.monotonic() < deadline:
                self._lock.wait(max(0.0, deadline - time.monotonic()))
            return self.accepted()

    def for_id(self, webhook_id: str) -> list[Delivery]:
        """Every delivery attempt of one message (verified or not)."""
        with self._lock:
            return [d for d in self.deliveries if d.headers.get("webhook-id") == webhook_id]

    def wait_for_id(self, webhook_id: str, timeout: float) -> Delivery | None:
        """The accepted delivery of message `webhook_id`, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for delivery in self.accepted():
                    if delivery.headers.get("webhook-id") == webhook_id:
                        return delivery
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._lock.wait(remaining)

    def _receive(self, path: str, headers: dict[str, str], body: bytes) -> int:
        try:
            self._webhook.verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        with self._lock:
            status = self._failures.pop(0) if self._failures else (204 if verified else 400)
            self.deliveries.append(
                Delivery(path, headers, body, verified, status, time.monotonic())
            )
            self._lock.notify_all()
        return status

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._receive(self.path, headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> CallbackReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
