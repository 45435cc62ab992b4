"""One callback attempt is bounded as a whole, however the receiver stalls.

A hostile HTTPS receiver on loopback, trusted through a test CA made at test
time: it accepts the TCP connection late (its accept queue is full, so the
kernel drops our SYN and it is retransmitted about a second later), finishes
the TLS handshake late, then drips its answer one byte at a time for far longer
than the attempt's budget. The attempt must end within its budget.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from adapters.callback_sender import CallbackSender, DeliveryResult
from adapters.callback_transport import PinnedRequest, TransportError, Urllib3Transport
from tests.adapters.test_callback_sender import (
    BODY,
    SIGNED_HEADERS,
    FakeResolver,
    FakeTransport,
    Pki,
    loopback_only,  # noqa: F401 (the autouse guard)
    pki,  # noqa: F401 (the module-scoped test CA)
    tls_server_context,
)

BUDGET = 2.0
#: When the receiver completes its TLS handshake, counted from the first SYN.
HANDSHAKE_AT = 2.4
#: How long the receiver keeps dripping (an unbounded attempt lasts this long).
DRIP_FOR = 12.0


class SlowTLSReceiver:
    """Accepts late, handshakes late, drips its answer; records when each happened."""

    def __init__(self, authority: Pki) -> None:
        self._context = tls_server_context(authority, "callback.test", [])
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.port: int = self.listener.getsockname()[1]
        # Fill the accept queue: the next SYN is dropped until this one is accepted.
        self._filler = socket.create_connection(("127.0.0.1", self.port))
        self.stop = threading.Event()
        self.started = 0.0
        self.accepted_at: float | None = None
        self.handshake_done_at: float | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.ExitStack() as stack:
            self.stop.wait(0.3)  # the sender's SYN, sent meanwhile, is dropped
            filler, _ = self.listener.accept()  # queued already: makes room
            filler.close()
            self._filler.close()
            conn, _ = self.listener.accept()  # the retransmitted SYN, ~1 s in
            stack.enter_context(conn)
            self.accepted_at = time.monotonic() - self.started
            if self.stop.wait(max(HANDSHAKE_AT - self.accepted_at, 0.0)):
                return
            try:
                tls = self._context.wrap_socket(conn, server_side=True)
                stack.enter_context(tls)
                self.handshake_done_at = time.monotonic() - self.started
                tls.recv(65536)  # the request
                answer = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 500 + b"\r\n\r\n"
                until = time.monotonic() + DRIP_FOR
                for byte in answer:
                    if self.stop.wait(0.05) or time.monotonic() > until:
                        return
                    tls.sendall(bytes([byte]))
            except OSError:
                return  # the sender gave up: what we want

    def close(self) -> None:
        self.stop.set()
        self._thread.join(timeout=5)
        self.listener.close()
        self._filler.close()


@pytest.fixture
def slow_receiver(pki: Pki) -> Iterator[SlowTLSReceiver]:  # noqa: F811
    receiver = SlowTLSReceiver(pki)
    try:
        yield receiver
    finally:
        receiver.close()


def test_an_attempt_against_a_slow_tls_receiver_ends_within_its_budget(
    slow_receiver: SlowTLSReceiver,
    pki: Pki,  # noqa: F811
) -> None:
    sender = CallbackSender(
        allow_private=True,
        resolve=FakeResolver([["127.0.0.1"]]),
        transport=Urllib3Transport(ca_certs=str(pki.ca_file)),
        timeout=BUDGET,
    )
    slow_receiver.start()
    started = time.monotonic()

    result = sender.deliver(
        f"https://callback.test:{slow_receiver.port}/hook", BODY, SIGNED_HEADERS
    )
    took = time.monotonic() - started

    assert slow_receiver.accepted_at is not None and slow_receiver.accepted_at > 0.5, (
        "the scenario needs a late TCP accept"
    )
    assert result == DeliveryResult(False, None, "timed out waiting for the receiver")
    assert took < BUDGET + 0.5


def test_the_addresses_tried_share_one_budget() -> None:
    """Each address that could not be connected to spends time: the next gets what is left."""
    now = [0.0]

    class SlowToRefuse(FakeTransport):
        def __call__(self, request: PinnedRequest) -> int:
            now[0] += 6.0  # a connect attempt timing out after 6 s
            return super().__call__(request)

    refused = [TransportError("connection could not be opened", sent=False) for _ in range(3)]
    transport = SlowToRefuse(errors=refused)
    sender = CallbackSender(
        allow_private=False,
        resolve=FakeResolver([["93.184.215.10", "93.184.215.11", "93.184.215.12"]]),
        transport=transport,
        timeout=15.0,
        clock=lambda: now[0],
    )

    result = sender.deliver("https://hooks.example.com/hook", BODY, {})

    assert [r.timeout for r in transport.requests] == [15.0, 9.0, 3.0]
    assert result == DeliveryResult(False, None, "connection could not be opened")


def test_no_address_is_tried_once_the_budget_is_spent() -> None:
    now = [0.0]

    class Stalling(FakeTransport):
        def __call__(self, request: PinnedRequest) -> int:
            now[0] += request.timeout
            return super().__call__(request)

    transport = Stalling(errors=[TransportError("connection could not be opened", sent=False)])
    sender = CallbackSender(
        allow_private=False,
        resolve=FakeResolver([["93.184.215.10", "93.184.215.11"]]),
        transport=transport,
        timeout=15.0,
        clock=lambda: now[0],
    )

    result = sender.deliver("https://hooks.example.com/hook", BODY, {})

    assert [r.ip for r in transport.requests] == ["93.184.215.10"]
    assert result == DeliveryResult(False, None, "timed out waiting for the receiver")
