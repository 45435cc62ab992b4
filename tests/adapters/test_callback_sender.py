"""The callback sender: stubbed resolver and transport, then real loopback servers.

Safety: an autouse guard lets name resolution and socket connections reach
loopback addresses only, and fails the test if anything else was attempted.
Tests that name non-loopback addresses (public, private, metadata) also stub
both the resolver and the transport, so no packet could leave even if the
sender had a bug.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from adapters.callback_sender import (
    MAX_ADDRESSES_TRIED,
    USER_AGENT,
    CallbackSender,
    DeliveryResult,
    resolve_host,
    result_for_status,
)
from adapters.callback_transport import (
    MAX_RESPONSE_BYTES,
    PinnedRequest,
    TransportError,
    Urllib3Transport,
)
from tests.netguard import loopback_guard

BODY = b'{"type":"upload_track.deleted","data":{"request_id":"r-1"}}'
SIGNED_HEADERS = {
    "webhook-id": "r-1",
    "webhook-timestamp": "1795878245",
    "webhook-signature": "v1,c2lnbmF0dXJl",
}

# --- the loopback-only guard -------------------------------------------------


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[list[str]]:
    """Refuse, and record, any resolution or connection not to a loopback address."""
    with loopback_guard() as refused:
        yield refused
    assert refused == [], "a test tried to reach a non-loopback address"


# --- recording fakes ---------------------------------------------------------


@dataclass
class FakeResolver:
    """Answers from a script, one answer list per call; records every call."""

    answers: list[list[str]]
    calls: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


@dataclass
class FakeTransport:
    """Records each pinned request; answers `status` or raises the next scripted error."""

    status: int = 204
    errors: list[TransportError] = field(default_factory=list)
    requests: list[PinnedRequest] = field(default_factory=list)

    def __call__(self, request: PinnedRequest) -> int:
        self.requests.append(request)
        if self.errors:
            raise self.errors.pop(0)
        return self.status


def failing_resolver(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


# --- (a) policy and pinning, with stubs ---------------------------------------


def test_name_resolving_to_a_public_and_a_private_address_is_refused_without_connecting() -> None:
    resolver = FakeResolver([["93.184.215.14", "10.0.0.1"]])
    transport = FakeTransport()
    sender = CallbackSender(allow_private=False, resolve=resolver, transport=transport)

    result = sender.deliver("https://hooks.example.com/hook", BODY, SIGNED_HEADERS)

    assert result == DeliveryResult(
        delivered=False,
        status=None,
        reason="callback host resolves to a private address",
    )
    assert resolver.calls == [("hooks.example.com", 443)]
    assert transport.requests == []


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        (["169.254.169.254"], "metadata server"),
        (["127.0.0.1"], "loopback"),
        (["::1"], "loopback"),
        (["::ffff:127.0.0.1"], "IPv4-mapped"),
        (["::ffff:169.254.169.254"], "metadata server"),
        (["fe80::1%eth0"], "link-local"),
        (["fd00::1"], "unique local"),
        (["100.64.0.1"], "carrier-grade NAT"),
        (["0.0.0.0"], "unspecified"),
        (["2606:4700:4700::1111", "192.168.0.10"], "private"),
    ],
)
def test_name_resolving_to_any_blocked_address_is_refused_without_connecting(
    answers: list[str], reason: str
) -> None:
    transport = FakeTransport()
    sender = CallbackSender(
        allow_private=False, resolve=FakeResolver([answers]), transport=transport
    )

    result = sender.deliver("https://metadata.example.com/computeMetadata", BODY, {})

    assert not result.delivered
    assert reason in result.reason
    assert transport.requests == []


def test_connection_goes_to_the_address_that_was_checked_and_dns_is_asked_once_per_delivery() -> (
    None
):
    # DNS rebinding: the second answer points at loopback. Each delivery asks
    # once, checks that answer, and connects to exactly what it checked.
    resolver = FakeResolver([["93.184.215.14"], ["127.0.0.1"]])
    transport = FakeTransport(status=200)
    sender = CallbackSender(allow_private=False, resolve=resolver, transport=transport)

    first = sender.deliver("https://hooks.example.com:8443/hook?x=1#frag", BODY, SIGNED_HEADERS)
    second = sender.deliver("https://hooks.example.com:8443/hook?x=1#frag", BODY, SIGNED_HEADERS)

    assert first.delivered
    assert resolver.calls == [("hooks.example.com", 8443), ("hooks.example.com", 8443)]
    [request] = transport.requests
    assert request.ip == "93.184.215.14"
    assert request.port == 8443
    assert request.scheme == "https"
    assert request.server_hostname == "hooks.example.com"
    assert request.headers["Host"] == "hooks.example.com:8443"
    assert request.target == "/hook?x=1"
    assert not second.delivered
    assert "loopback" in second.reason


def test_literal_ip_url_is_not_resolved_and_connects_to_that_ip() -> None:
    resolver = FakeResolver([["10.0.0.1"]])
    transport = FakeTransport()
    sender = CallbackSender(allow_private=False, resolve=resolver, transport=transport)

    result = sender.deliver("https://[2606:4700:4700::1111]/hook", BODY, {})

    assert result.delivered
    assert resolver.calls == []
    [request] = transport.requests
    assert request.ip == "2606:4700:4700::1111"
    assert request.server_hostname == "2606:4700:4700::1111"
    assert request.headers["Host"] == "[2606:4700:4700::1111]"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://169.254.169.254/computeMetadata/v1/", "metadata server"),
        ("https://[::ffff:10.0.0.1]/", "private"),
        ("http://hooks.example.com/", "https://"),
        ("https://localhost/", "local machine"),
        ("https://2130706433/", "ambiguous numeric"),
        ("https://user:pw@hooks.example.com/", "credentials"),
    ],
)
def test_rejected_url_is_refused_for_good_without_resolving_or_connecting(
    url: str, reason: str
) -> None:
    resolver = FakeResolver([["93.184.215.14"]])
    transport = FakeTransport()
    sender = CallbackSender(allow_private=False, resolve=resolver, transport=transport)

    result = sender.deliver(url, BODY, {})

    assert (result.delivered, result.status) == (False, None)
    assert reason in result.reason
    assert resolver.calls == []
    assert transport.requests == []


@pytest.mark.parametrize(
    ("resolve", "reason"),
    [
        (failing_resolver, "could not be resolved"),
        (FakeResolver([[]]), "has no addresses"),
        (FakeResolver([["not-an-address"]]), "invalid address"),
    ],
)
def test_resolution_trouble_is_a_failure_without_connecting(
    resolve: Callable[[str, int], list[str]], reason: str
) -> None:
    transport = FakeTransport()
    sender = CallbackSender(allow_private=False, resolve=resolve, transport=transport)

    result = sender.deliver("https://hooks.example.com/hook", BODY, {})

    assert not result.delivered
    assert reason in result.reason
    assert transport.requests == []


def test_allow_private_connects_to_a_private_address_it_resolved() -> None:
    transport = FakeTransport()
    sender = CallbackSender(
        allow_private=True, resolve=FakeResolver([["10.0.0.1"]]), transport=transport
    )

    result = sender.deliver("http://receiver:8080/hook", BODY, {})

    assert result.delivered
    [request] = transport.requests
    assert (request.scheme, request.ip, request.port) == ("http", "10.0.0.1", 8080)
    assert request.headers["Host"] == "receiver:8080"


def test_next_checked_address_is_tried_only_when_no_connection_was_opened() -> None:
    resolver = FakeResolver([["2606:4700:4700::1111", "93.184.215.14"]])
    transport = FakeTransport(errors=[TransportError("connection could not be opened", sent=False)])
    sender = CallbackSender(allow_private=False, resolve=resolver, transport=transport)

    result = sender.deliver("https://hooks.example.com/hook", BODY, {})

    assert result.delivered
    assert [r.ip for r in transport.requests] == ["2606:4700:4700::1111", "93.184.215.14"]
    assert resolver.calls == [("hooks.example.com", 443)]


def test_no_other_address_is_tried_once_the_request_may_have_been_sent() -> None:
    resolver = FakeResolver([["93.184.215.14", "93.184.215.15"]])
    transport = FakeTransport(errors=[TransportError("timed out waiting", sent=True)])
    sender = CallbackSender(allow_private=False, resolve=resolver, transport=transport)

    result = sender.deliver("https://hooks.example.com/hook", BODY, {})

    assert result == DeliveryResult(False, None, "timed out waiting")
    assert [r.ip for r in transport.requests] == ["93.184.215.14"]


def test_addresses_tried_are_capped() -> None:
    answers = [f"93.184.215.{n}" for n in range(10, 20)]
    errors = [TransportError("connection could not be opened", sent=False) for _ in answers]
    transport = FakeTransport(errors=errors)
    sender = CallbackSender(
        allow_private=False, resolve=FakeResolver([answers]), transport=transport
    )

    result = sender.deliver("https://hooks.example.com/hook", BODY, {})

    assert not result.delivered
    assert result.reason == "connection could not be opened"
    assert [r.ip for r in transport.requests] == answers[:MAX_ADDRESSES_TRIED]


def test_sender_sends_the_given_headers_plus_host_user_agent_and_content_type() -> None:
    transport = FakeTransport()
    sender = CallbackSender(
        allow_private=False,
        resolve=FakeResolver([["93.184.215.14"]]),
        transport=transport,
        timeout=7.5,
        clock=lambda: 100.0,
    )

    sender.deliver("https://hooks.example.com/hook", BODY, SIGNED_HEADERS)

    [request] = transport.requests
    assert dict(request.headers) == {
        **SIGNED_HEADERS,
        "User-Agent": USER_AGENT,
        "Content-Type": "application/json",
        "Host": "hooks.example.com",
    }
    assert request.body == BODY
    assert request.timeout == 7.5


def test_sender_keeps_the_callers_content_type_and_user_agent_but_owns_host_and_length() -> None:
    transport = FakeTransport()
    sender = CallbackSender(
        allow_private=False,
        resolve=FakeResolver([["93.184.215.14"]]),
        transport=transport,
    )
    given = {
        "content-type": "application/json; charset=utf-8",
        "user-agent": "caller/1",
        "HOST": "127.0.0.1",
        "Content-Length": "1",
        "Transfer-Encoding": "chunked",
    }

    sender.deliver("https://hooks.example.com/hook", BODY, given)

    [request] = transport.requests
    assert dict(request.headers) == {
        "content-type": "application/json; charset=utf-8",
        "user-agent": "caller/1",
        "Host": "hooks.example.com",
    }


@pytest.mark.parametrize("timeout", [0.0, -1.0])
def test_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        CallbackSender(allow_private=False, timeout=timeout)


@pytest.mark.parametrize(
    ("status", "delivered", "reason"),
    [
        (200, True, "delivered (HTTP 200)"),
        (202, True, "delivered (HTTP 202)"),
        (204, True, "delivered (HTTP 204)"),
        (299, True, "delivered (HTTP 299)"),
        (301, False, "redirect not followed (HTTP 301)"),
        (302, False, "redirect not followed (HTTP 302)"),
        (307, False, "redirect not followed (HTTP 307)"),
        (400, False, "receiver answered HTTP 400"),
        (401, False, "receiver answered HTTP 401"),
        (404, False, "receiver answered HTTP 404"),
        (410, False, "receiver answered 410 Gone: stop retrying"),
        (429, False, "receiver answered HTTP 429"),
        (500, False, "receiver answered HTTP 500"),
        (503, False, "receiver answered HTTP 503"),
    ],
)
def test_status_decides_delivered_and_the_reason(status: int, delivered: bool, reason: str) -> None:
    assert result_for_status(status) == DeliveryResult(delivered, status, reason)


def test_default_resolver_returns_unique_addresses_in_resolver_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake_getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        calls.append((host, port, kwargs))
        stream = socket.SOCK_STREAM
        return [
            (socket.AF_INET6, stream, 6, "", ("2606:4700:4700::1111", port, 0, 0)),
            (socket.AF_INET, stream, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET6, stream, 6, "", ("2606:4700:4700::1111", port, 0, 0)),
            (socket.AF_INET, stream, 6, "", ("10.0.0.1", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)

    answer = resolve_host("hooks.example.com", 443)

    assert answer == ["2606:4700:4700::1111", "93.184.215.14", "10.0.0.1"]
    assert calls == [("hooks.example.com", 443, {"type": socket.SOCK_STREAM})]


def test_default_resolver_answers_a_loopback_literal() -> None:
    assert resolve_host("127.0.0.1", 80) == ["127.0.0.1"]


# --- (b) real loopback HTTP servers -------------------------------------------


@dataclass
class Recorded:
    path: str
    headers: Message
    body: bytes


class Receiver:
    """A loopback HTTP(S) server; `respond(handler)` writes each answer."""

    def __init__(
        self,
        respond: Callable[[BaseHTTPRequestHandler], None],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.respond = respond
        self.requests: list[Recorded] = []
        self.release = threading.Event()  # lets hanging handlers finish at teardown
        self.done = threading.Event()  # set by handlers that report completion
        self.notes: dict[str, Any] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(Recorded(self.path, self.headers, body))
                receiver.respond(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http" if tls is None else "https"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator[Callable[..., Receiver]]:
    receivers: list[Receiver] = []

    def start(
        respond: Callable[[BaseHTTPRequestHandler], None], tls: ssl.SSLContext | None = None
    ) -> Receiver:
        receiver = Receiver(respond, tls)
        receivers.append(receiver)
        return receiver

    yield start
    for receiver in receivers:
        receiver.close()


def answer(status: int, body: bytes = b"", **headers: str) -> Callable[..., None]:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return respond


def loopback_sender(timeout: float = 5.0, **kwargs: Any) -> CallbackSender:
    return CallbackSender(allow_private=True, resolve=failing_resolver, timeout=timeout, **kwargs)


def test_2xx_answer_is_delivered_with_body_and_headers_as_given(
    serve: Callable[..., Receiver],
) -> None:
    receiver = serve(answer(204))

    result = loopback_sender().deliver(receiver.url("/hook?x=1"), BODY, SIGNED_HEADERS)

    assert result == DeliveryResult(True, 204, "delivered (HTTP 204)")
    [request] = receiver.requests
    assert request.path == "/hook?x=1"
    assert request.body == BODY
    for name, value in SIGNED_HEADERS.items():
        assert request.headers[name] == value
    assert request.headers["Host"] == f"127.0.0.1:{receiver.port}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["Content-Length"] == str(len(BODY))


def test_500_answer_is_a_retryable_failure_that_does_not_echo_the_body(
    serve: Callable[..., Receiver],
) -> None:
    receiver = serve(answer(500, b"internal SECRET-BODY detail"))

    result = loopback_sender().deliver(receiver.url(), BODY, SIGNED_HEADERS)

    assert result == DeliveryResult(False, 500, "receiver answered HTTP 500")
    assert "SECRET" not in repr(result)


def test_redirect_is_not_followed(serve: Callable[..., Receiver]) -> None:
    target = serve(answer(200))
    redirecting = serve(answer(302, Location=target.url("/elsewhere")))

    result = loopback_sender().deliver(redirecting.url(), BODY, SIGNED_HEADERS)

    assert result == DeliveryResult(False, 302, "redirect not followed (HTTP 302)")
    assert len(redirecting.requests) == 1
    assert target.requests == []


def test_410_gone_is_not_delivered(serve: Callable[..., Receiver]) -> None:
    receiver = serve(answer(410))

    result = loopback_sender().deliver(receiver.url(), BODY, SIGNED_HEADERS)

    assert (result.delivered, result.status) == (False, 410)


def test_slow_receiver_hits_the_timeout(serve: Callable[..., Receiver]) -> None:
    receiver = serve(lambda handler: receiver.release.wait(timeout=30))
    sender = loopback_sender(timeout=0.3)

    result = sender.deliver(receiver.url(), BODY, SIGNED_HEADERS)

    assert result == DeliveryResult(False, None, "timed out waiting for the receiver")
    assert len(receiver.requests) == 1


def test_a_receiver_dripping_its_answer_is_cut_off_by_the_attempts_budget(
    serve: Callable[..., Receiver],
) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    def drip(handler: BaseHTTPRequestHandler) -> None:
        # Each byte well within the per-read timeout; the whole answer far beyond it.
        try:
            for byte in answer:
                if receiver.release.wait(timeout=0.1):
                    return
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
        except OSError:
            return

    receiver = serve(drip)
    result = loopback_sender(timeout=0.5).deliver(receiver.url(), BODY, SIGNED_HEADERS)

    assert result.delivered is False
    assert result.reason == "timed out waiting for the receiver"


def test_huge_answer_body_is_not_read_whole(serve: Callable[..., Receiver]) -> None:
    total = 1 << 30  # announced; the sender must stop long before

    def endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(total))
        handler.end_headers()
        chunk = b"x" * 65536
        written = 0
        try:
            while written < total:
                handler.wfile.write(chunk)
                written += len(chunk)
        except OSError as exc:
            receiver.notes["error"] = type(exc).__name__
        finally:
            receiver.notes["written"] = written
            handler.close_connection = True
            receiver.done.set()

    receiver = serve(endless)

    result = loopback_sender().deliver(receiver.url(), BODY, SIGNED_HEADERS)

    assert result == DeliveryResult(True, 200, "delivered (HTTP 200)")
    assert receiver.done.wait(timeout=30)
    assert "error" in receiver.notes  # the sender hung up on it
    assert receiver.notes["written"] < total
    assert MAX_RESPONSE_BYTES <= 64 * 1024


def test_dropped_connection_is_a_retryable_failure(serve: Callable[..., Receiver]) -> None:
    def hang_up(handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True

    receiver = serve(hang_up)

    result = loopback_sender().deliver(receiver.url(), BODY, SIGNED_HEADERS)

    assert result == DeliveryResult(False, None, "connection dropped before an answer")
    assert len(receiver.requests) == 1


def test_refused_connection_is_a_retryable_failure() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    # Nothing listens on the port now.

    result = loopback_sender().deliver(f"http://127.0.0.1:{port}/hook", BODY, SIGNED_HEADERS)

    assert result == DeliveryResult(False, None, "connection could not be opened")


def test_real_transport_connects_to_the_pinned_address_with_the_urls_host_header(
    serve: Callable[..., Receiver],
) -> None:
    # 127.0.0.2 refuses (the receiver listens on 127.0.0.1 only): the sender
    # moves on to the next checked address, never to the name.
    receiver = serve(answer(200))
    resolver = FakeResolver([["127.0.0.2", "127.0.0.1"]])
    sender = CallbackSender(allow_private=True, resolve=resolver, timeout=5.0)

    result = sender.deliver(f"http://receiver.test:{receiver.port}/hook", BODY, SIGNED_HEADERS)

    assert result.delivered
    assert resolver.calls == [("receiver.test", receiver.port)]
    [request] = receiver.requests
    assert request.headers["Host"] == f"receiver.test:{receiver.port}"


# --- (c) real HTTPS on loopback: the pinned IP, verified against the name ----


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    certs: dict[str, tuple[Path, Path]]  # host name -> (certificate, key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callback sender test CA")])
    usage = {
        "content_commitment": False,
        "key_encipherment": False,
        "data_encipherment": False,
        "key_agreement": False,
        "encipher_only": False,
        "decipher_only": False,
    }
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    certs: dict[str, tuple[Path, Path]] = {}
    for name in ("callback.test", "other.test"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        cert_file = directory / f"{name}.pem"
        key_file = directory / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        certs[name] = (cert_file, key_file)
    return Pki(ca_file, certs)


def tls_server_context(pki: Pki, name: str, sni_seen: list[str | None]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert_file, key_file = pki.certs[name]
    context.load_cert_chain(cert_file, key_file)

    def record_sni(sock: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
        sni_seen.append(server_name)

    context.sni_callback = record_sni
    return context


def https_sender(pki: Pki, resolver: FakeResolver, ca_file: Path | None) -> CallbackSender:
    transport = Urllib3Transport(ca_certs=str(ca_file) if ca_file is not None else None)
    return CallbackSender(allow_private=True, resolve=resolver, transport=transport, timeout=5.0)


def test_https_connects_to_the_pinned_ip_and_verifies_the_certificate_for_the_host_name(
    serve: Callable[..., Receiver], pki: Pki
) -> None:
    sni_seen: list[str | None] = []
    receiver = serve(answer(201), tls_server_context(pki, "callback.test", sni_seen))
    resolver = FakeResolver([["127.0.0.1"]])

    result = https_sender(pki, resolver, pki.ca_file).deliver(
        f"https://callback.test:{receiver.port}/hook", BODY, SIGNED_HEADERS
    )

    assert result == DeliveryResult(True, 201, "delivered (HTTP 201)")
    assert resolver.calls == [("callback.test", receiver.port)]
    assert sni_seen == ["callback.test"]
    [request] = receiver.requests
    assert request.headers["Host"] == f"callback.test:{receiver.port}"
    assert request.body == BODY


def test_https_fails_when_the_certificate_names_another_host(
    serve: Callable[..., Receiver], pki: Pki
) -> None:
    sni_seen: list[str | None] = []
    receiver = serve(answer(200), tls_server_context(pki, "other.test", sni_seen))

    result = https_sender(pki, FakeResolver([["127.0.0.1"]]), pki.ca_file).deliver(
        f"https://callback.test:{receiver.port}/hook", BODY, SIGNED_HEADERS
    )

    assert result == DeliveryResult(False, None, "TLS handshake or certificate check failed")
    assert sni_seen == ["callback.test"]
    assert receiver.requests == []


def test_https_fails_against_a_certificate_from_an_untrusted_authority(
    serve: Callable[..., Receiver], pki: Pki
) -> None:
    receiver = serve(answer(200), tls_server_context(pki, "callback.test", []))

    result = https_sender(pki, FakeResolver([["127.0.0.1"]]), None).deliver(
        f"https://callback.test:{receiver.port}/hook", BODY, SIGNED_HEADERS
    )

    assert not result.delivered
    assert result.reason == "TLS handshake or certificate check failed"
    assert receiver.requests == []
