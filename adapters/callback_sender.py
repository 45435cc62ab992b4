"""Deliver one callback: a single HTTP POST to a checked, pinned address.

`CallbackSender.deliver(url, body, headers)` does exactly one delivery attempt
(retries and signing belong to the caller) and never raises for a network or
policy problem; it answers a `DeliveryResult`:

1. `core.urlpolicy.parse_callback_url` checks the URL (scheme, credentials,
   `localhost`, numeric tricks, literal IPs).
2. A host name is resolved now, once; *every* address is checked with
   `core.urlpolicy.address_blocked` (unless private networks are allowed).
3. The connection goes to a checked address, never to the name, so a second
   DNS answer (DNS rebinding) cannot redirect it. TLS still verifies the
   certificate against the URL's host name (SNI and hostname check), and the
   `Host` header is the URL's. If the TCP connection to an address cannot be
   opened (nothing was sent), the next checked address is tried, at most
   `MAX_ADDRESSES_TRIED` of them.
4. Redirects are not followed, nothing is retried here, at most
   `MAX_RESPONSE_BYTES` of the answer are read and thrown away.

The network call itself is the `Transport`: one function of a `PinnedRequest`
answering the status code. `Urllib3Transport` is the real one; tests inject a
recording fake. The sender logs nothing and never returns the answer body,
the URL's path or query, or the request headers.

Every failure is worth another attempt: retrying, and when to stop, belong to
the caller (a name resolving to a blocked address included: DNS answers change).
"""

from __future__ import annotations

import contextlib
import ipaddress
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

from core.headers import Headers
from core.urlpolicy import (
    CallbackTarget,
    CallbackURLRejected,
    IPAddress,
    address_blocked,
    parse_callback_url,
)

DEFAULT_TIMEOUT: Final = 15.0
USER_AGENT: Final = "datocms-track-deleter-callbacks/1.0"
#: At most this much of the receiver's answer is read (then discarded).
MAX_RESPONSE_BYTES: Final = 4096
#: Checked addresses tried when a TCP connection cannot be opened.
MAX_ADDRESSES_TRIED: Final = 3

#: Headers the sender owns; a caller's copy is dropped (urllib3 computes the
#: length from the body, the Host comes from the checked URL).
_SENDER_OWNED: Final = frozenset({"host", "content-length", "transfer-encoding"})

ResolveFn = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of one delivery attempt.

    `reason` is short human text: never the URL's path or query, never the
    answer body.
    """

    delivered: bool
    status: int | None
    reason: str


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


def resolve_host(host: str, port: int) -> list[str]:
    """The unique addresses `host` resolves to, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    unique: dict[str, None] = {}
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            unique.setdefault(str(sockaddr[0]), None)
    return list(unique)


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


class CallbackSender:
    """Sends one callback POST to a checked, pinned address; see the module doc."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolve: ResolveFn = resolve_host,
        transport: Transport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._allow_private = allow_private
        self._resolve = resolve
        self._transport: Transport = transport if transport is not None else Urllib3Transport()
        self._timeout = timeout

    def deliver(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
        """POST `body` with `headers` to `url` once; never raises for network trouble."""
        try:
            target = parse_callback_url(url, allow_private=self._allow_private)
        except CallbackURLRejected as exc:
            return DeliveryResult(delivered=False, status=None, reason=exc.reason)

        addresses = self._checked_addresses(target)
        if isinstance(addresses, DeliveryResult):
            return addresses

        outgoing = _outgoing_headers(headers, target)
        failure = DeliveryResult(False, None, "no address to connect to")
        for ip in addresses[:MAX_ADDRESSES_TRIED]:
            request = PinnedRequest(
                scheme=target.scheme,
                ip=str(ip),
                port=target.port,
                server_hostname=target.host,
                target=target.path_and_query,
                headers=outgoing,
                body=body,
                timeout=self._timeout,
            )
            try:
                status = self._transport(request)
            except TransportError as exc:
                failure = DeliveryResult(False, None, exc.reason)
                if exc.sent:
                    return failure
                continue
            return result_for_status(status)
        return failure

    def _checked_addresses(self, target: CallbackTarget) -> list[IPAddress] | DeliveryResult:
        """The addresses to connect to, all checked; or why there are none."""
        literal = target.literal_ip
        if literal is not None:
            return [literal]  # already checked by the policy
        try:
            answers = self._resolve(target.host, target.port)
        except (OSError, UnicodeError):
            return DeliveryResult(False, None, "callback host name could not be resolved")
        addresses: list[IPAddress] = []
        for answer in answers:
            try:
                addresses.append(ipaddress.ip_address(answer))
            except ValueError:
                return DeliveryResult(False, None, "resolver returned an invalid address")
        if not addresses:
            return DeliveryResult(False, None, "callback host name has no addresses")
        if not self._allow_private:
            for ip in addresses:
                reason = address_blocked(ip)
                if reason is not None:
                    return DeliveryResult(
                        False,
                        None,
                        f"callback host resolves to {reason}",
                    )
        return addresses


def result_for_status(status: int) -> DeliveryResult:
    """What an HTTP status from the receiver means for this delivery (pure)."""
    if 200 <= status < 300:
        return DeliveryResult(True, status, f"delivered (HTTP {status})")
    if status == 410:
        return DeliveryResult(False, status, "receiver answered 410 Gone: stop retrying")
    if 300 <= status < 400:
        return DeliveryResult(False, status, f"redirect not followed (HTTP {status})")
    return DeliveryResult(False, status, f"receiver answered HTTP {status}")


def _outgoing_headers(given: Mapping[str, str], target: CallbackTarget) -> dict[str, str]:
    """The caller's headers, plus Host, and User-Agent / Content-Type when absent."""
    out = {name: value for name, value in given.items() if name.lower() not in _SENDER_OWNED}
    present = Headers(out)
    if "user-agent" not in present:
        out["User-Agent"] = USER_AGENT
    if "content-type" not in present:
        out["Content-Type"] = "application/json"
    out["Host"] = target.host_header
    return out
