"""Deliver one callback: a single HTTP POST to a checked, pinned address.

`CallbackSender.deliver(url, body, headers)` makes exactly one attempt (retries
and signing belong to the caller) and never raises for a network or policy
problem. It checks the URL with `core.urlpolicy`, resolves the host once, checks
*every* address, and connects to a checked address, never to the name, so a
second DNS answer (rebinding) cannot redirect it; TLS still verifies the URL's
host name. Redirects are not followed. The network call is a `Transport`
(`adapters.callback_transport`); tests inject a recording fake.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from adapters.callback_transport import (
    PinnedRequest,
    Transport,
    TransportError,
    Urllib3Transport,
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


def resolve_host(host: str, port: int) -> list[str]:
    """The unique addresses `host` resolves to, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    unique: dict[str, None] = {}
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            unique.setdefault(str(sockaddr[0]), None)
    return list(unique)


class CallbackSender:
    """Sends one callback POST to a checked, pinned address; see the module doc."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolve: ResolveFn = resolve_host,
        transport: Transport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._allow_private = allow_private
        self._resolve = resolve
        self._transport: Transport = transport if transport is not None else Urllib3Transport()
        self._timeout = timeout
        self._clock = clock

    def deliver(self, url: str, body: bytes, headers: Mapping[str, str]) -> DeliveryResult:
        """POST `body` with `headers` to `url` once; never raises for network trouble.

        The attempt is bounded as a whole by `timeout`: when a connection cannot
        be opened and another address is tried, that one gets only the time left.
        """
        deadline = self._clock() + self._timeout
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
            left = deadline - self._clock()
            if left <= 0:
                return DeliveryResult(False, None, "timed out waiting for the receiver")
            request = PinnedRequest(
                scheme=target.scheme,
                ip=str(ip),
                port=target.port,
                server_hostname=target.host,
                target=target.path_and_query,
                headers=outgoing,
                body=body,
                timeout=left,
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
