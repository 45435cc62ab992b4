"""The network call of a callback delivery: one POST over a fresh connection to a checked IP.

`Urllib3Transport` connects to `PinnedRequest.ip` (SNI and the certificate check
use the URL's host), reads at most `MAX_RESPONSE_BYTES` of the answer, and is
bounded as a whole by `request.timeout`: every blocking step gets only the time
left before one deadline, and a watchdog shuts every socket of the exchange when
it passes, so a receiver dripping its answer byte by byte is cut off however
slowly it accepted the connection or finished its handshake.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import certifi
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    ProtocolError,
    SSLError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3TimeoutError,
)

#: At most this much of the receiver's answer is read (then discarded).
MAX_RESPONSE_BYTES: Final = 4096


@dataclass(frozen=True)
class PinnedRequest:
    """Everything the transport needs: where to connect, and what to send.

    `ip` is the checked address to connect to; `server_hostname` is the URL's
    host, used for SNI and certificate verification (https only). `headers`
    are final (Host included).
    """

    scheme: str
    ip: str
    port: int
    server_hostname: str
    target: str
    headers: Mapping[str, str]
    body: bytes
    timeout: float


class TransportError(Exception):
    """The request got no HTTP answer; `reason` is short text without the URL.

    `sent` is False only when no connection was opened, so nothing reached
    the receiver and another address may be tried.
    """

    def __init__(self, reason: str, *, sent: bool) -> None:
        self.reason = reason
        self.sent = sent
        super().__init__(reason)


Transport = Callable[[PinnedRequest], int]

#: The smallest timeout given to a blocking step once the deadline is (nearly) reached;
#: the deadline checks and the watchdog end the exchange right after.
_LAST_MOMENT: Final = 0.001


class _DeadlinePassed(Exception):
    """The exchange's deadline passed between two steps (raised past urllib3)."""


class _Watch:
    """One exchange's deadline, and the sockets the watchdog shuts when it passes."""

    def __init__(self, deadline: float, clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self._clock = clock
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False

    def left(self) -> float:
        """Seconds left before the deadline (at least `_LAST_MOMENT`)."""
        return max(self.deadline - self._clock(), _LAST_MOMENT)

    def check(self) -> None:
        """`_DeadlinePassed` once the deadline is reached."""
        if self.expired or self._clock() >= self.deadline:
            raise _DeadlinePassed()

    def record(self, sock: socket.socket) -> None:
        """Watch `sock`; shut it at once if the deadline already passed."""
        with self._lock:
            self._sockets.append(sock)
            if not self.expired:
                return
        _shut(sock)

    def cut_off(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class Urllib3Transport:
    """The real network call: one POST over a fresh connection to `request.ip`.

    `ca_certs` (a PEM file) replaces the system's trust store, for tests with
    their own CA; certificates are always verified. `clock` is the monotonic
    clock the deadline is measured with.
    """

    def __init__(
        self, *, ca_certs: str | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ca_certs = ca_certs if ca_certs is not None else certifi.where()
        self._clock = clock

    def __call__(self, request: PinnedRequest) -> int:
        """One exchange, bounded as a whole by `request.timeout` (see the module doc)."""
        watch = _Watch(self._clock() + request.timeout, self._clock)
        watchdog = threading.Timer(request.timeout, watch.cut_off)
        watchdog.daemon = True
        watchdog.start()
        try:
            return self._exchange(request, watch)
        except _DeadlinePassed:
            raise TransportError("timed out waiting for the receiver", sent=True) from None
        except TransportError as exc:
            if watch.expired:
                raise TransportError("timed out waiting for the receiver", sent=True) from exc
            raise
        finally:
            watchdog.cancel()

    def _exchange(self, request: PinnedRequest, watch: _Watch) -> int:
        watch.check()
        timeout = urllib3.Timeout(connect=request.timeout, read=request.timeout)
        pool: urllib3.HTTPConnectionPool
        if request.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                host=request.ip,
                port=request.port,
                maxsize=1,
                retries=False,
                timeout=timeout,
                cert_reqs="CERT_REQUIRED",
                ca_certs=self._ca_certs,
                # SNI and the certificate check use the URL's host, not the IP.
                server_hostname=request.server_hostname,
            )
        else:
            pool = urllib3.HTTPConnectionPool(
                host=request.ip, port=request.port, maxsize=1, retries=False, timeout=timeout
            )
        pool.ConnectionCls = _watched(pool.ConnectionCls, watch)
        with pool:
            try:
                response = pool.urlopen(
                    "POST",
                    request.target,
                    body=request.body,
                    headers=dict(request.headers),
                    redirect=False,
                    retries=False,
                    preload_content=False,
                    decode_content=False,
                    assert_same_host=False,
                )
            except ConnectTimeoutError as exc:  # NewConnectionError included
                raise TransportError("connection could not be opened", sent=False) from exc
            except Urllib3TimeoutError as exc:
                raise TransportError("timed out waiting for the receiver", sent=True) from exc
            except SSLError as exc:
                raise TransportError(
                    "TLS handshake or certificate check failed", sent=True
                ) from exc
            except ProtocolError as exc:
                raise TransportError("connection dropped before an answer", sent=True) from exc
            except HTTPError as exc:
                raise TransportError("HTTP error before an answer", sent=True) from exc
            try:
                # Read a little so a small answer completes; never the whole thing.
                response.read(MAX_RESPONSE_BYTES, decode_content=False)
            except (HTTPError, OSError):
                pass  # the status is what matters; the body is discarded anyway
            finally:
                response.close()
            return response.status


def _watched(base: type[Any], watch: _Watch) -> type[Any]:
    """`base` (a urllib3 connection class) bounded by `watch`'s deadline.

    urllib3 reads `timeout` before each blocking step (connect, send, reading the
    answer): here it is always the time left. The TCP socket is recorded as soon
    as it exists and its timeout reset to the time left, which bounds the TLS
    handshake as a whole (CPython measures the handshake against one deadline);
    the TLS socket is recorded once the handshake is done.
    """

    class Watched(base):  # type: ignore[misc]
        @property
        def timeout(self) -> float:
            return watch.left()

        @timeout.setter
        def timeout(self, _value: object) -> None:
            pass  # urllib3 sets its own per-step timeouts: the deadline decides

        def _new_conn(self) -> socket.socket:
            watch.check()
            sock: socket.socket = super()._new_conn()
            watch.record(sock)
            watch.check()
            sock.settimeout(watch.left())  # the TLS handshake's bound
            return sock

        def connect(self) -> None:
            watch.check()
            super().connect()
            watch.record(self.sock)
            watch.check()

    return Watched
