"""The network call of a callback delivery: one POST over a fresh connection to a checked IP.

`Urllib3Transport` connects to `PinnedRequest.ip` (SNI and the certificate check
use the URL's host), reads at most `MAX_RESPONSE_BYTES` of the answer, and is
bounded as a whole by `request.timeout`: a watchdog thread shuts the sockets it
recorded down, so a receiver dripping its answer byte by byte is cut off.
"""

from __future__ import annotations

import contextlib
import socket
import threading
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


class Urllib3Transport:
    """The real network call: one POST over a fresh connection to `request.ip`."""

    def __init__(self, *, ca_certs: str | None = None) -> None:
        self._ca_certs = ca_certs if ca_certs is not None else certifi.where()

    def __call__(self, request: PinnedRequest) -> int:
        """One exchange, bounded as a whole by `request.timeout`: socket timeouts bound
        each read only, so a receiver dripping its answer byte by byte is cut off."""
        opened: list[socket.socket] = []
        expired = threading.Event()

        def cut_off() -> None:
            expired.set()
            for sock in opened:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(request.timeout, cut_off)
        watchdog.daemon = True
        watchdog.start()
        try:
            return self._exchange(request, opened)
        except TransportError as exc:
            if expired.is_set():
                raise TransportError("timed out waiting for the receiver", sent=True) from exc
            raise
        finally:
            watchdog.cancel()

    def _exchange(self, request: PinnedRequest, opened: list[socket.socket]) -> int:
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
        pool.ConnectionCls = _watched(pool.ConnectionCls, opened)
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


def _watched(base: type[Any], opened: list[socket.socket]) -> type[Any]:
    """`base` (a urllib3 connection class) that records each socket it opens."""

    class Watched(base):  # type: ignore[misc]
        def connect(self) -> None:
            super().connect()
            opened.append(self.sock)

    return Watched
