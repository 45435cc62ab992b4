"""Hostile input and SSRF: shared helpers of the security tests.

Safety first: every test module here installs `loopback_guard`, which lets
name resolution and socket connections reach loopback addresses only. Many
tests *name* private, link-local and metadata addresses (as callback URLs, as
resolver answers); with the guard in place, even a bug in the service could
not send a packet to any of them. The guard records what it refused, and the
test fails if anything was refused.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

import pytest

from core.headers import Headers
from devstack.datocms_simulator import (
    DEMO_TRACK_ID,
    DEMO_UPLOAD_ID,
    DatoCMSSimulator,
    RequestRecord,
)
from handlers import intake
from handlers.responses import Reply
from tests.conftest import Harness
from tests.netguard import loopback_guard as loopback_guard  # re-exported for the modules here

UPLOAD = DEMO_UPLOAD_ID
TRACK = DEMO_TRACK_ID
PUBLIC_CALLBACK = "https://hooks.example.com/track-deleted"
MAX_BODY = 64 * 1024
#: Every method the two HTTP entry points must refuse with 405 (lower-case `post` too).
NON_POST_METHODS = (
    "GET",
    "HEAD",
    "PUT",
    "PATCH",
    "DELETE",
    "OPTIONS",
    "TRACE",
    "CONNECT",
    "PROPFIND",
    "post",
)

_SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*\Z")

# --- hostile values -------------------------------------------------------------

#: Identifier values that must never reach a DatoCMS URL path or header.
HOSTILE_IDS = {
    "slash": "a/b",
    "dot-dot": "..",
    "dot-dot-slash": "../x",
    "dot-dot-slash-deep": "../../../../etc/passwd",
    "percent-2F": "a%2Fb",
    "percent-2F-dot-dot": "..%2F..%2Fx",
    "percent-2E": "%2E%2E",
    "cr-lf-header-injection": "a\r\nX-Injected: 1",
    "lf": "a\nb",
    "trailing-lf": f"{DEMO_UPLOAD_ID}\n",
    "trailing-cr": f"{DEMO_UPLOAD_ID}\r",
    "nul": "a\x00b",
    "tab": "a\tb",
    "space-inside": "a b",
    "leading-space": f" {DEMO_UPLOAD_ID}",
    "trailing-space": f"{DEMO_UPLOAD_ID} ",
    "query": "a?x=1",
    "fragment": "a#x",
    "backslash": "a\\b",
    "fullwidth-letters": "\uff51\uff10\uff36\uff2e\uff50\uff49\uff2e\uff31",
    "cyrillic-a": "q0VNpiNQSkG6z0lif_O1z\u0430",
    "greek-omicron": "q0VNpiNQSkG6z0lif_\u03bf1zg",
    "zero-width-space": "q0VNpi\u200bNQSkG6z0lif_O1zg",
    "combining-mark": f"{DEMO_UPLOAD_ID}\u0301",
    "rtl-override": "q0VNpi\u202eNQSkG6z0lif_O1zg",
    "empty": "",
}

#: Callback URLs the intake must refuse (400) when private networks are not allowed.
HOSTILE_CALLBACKS = {
    # credentials
    "user-and-password": "https://user:pass@hooks.example.com/x",
    "user-only": "https://user@hooks.example.com/x",
    "empty-credentials": "https://:@hooks.example.com/x",
    "host-looking-credentials": "https://hooks.example.com@127.0.0.1/x",
    "encoded-at": "https://hooks.example.com%40127.0.0.1/x",
    # numeric host tricks (loopback)
    "decimal-2130706433": "https://2130706433/",
    "hex-0x7f000001": "https://0x7f000001/",
    "short-127.1": "https://127.1/",
    "octal-0177.0.0.1": "https://0177.0.0.1/",
    "hex-dotted-0x7f.0.0.1": "https://0x7f.0.0.1/",
    "octal-017700000001": "https://017700000001/",
    "zero-padded-127.000.000.001": "https://127.000.000.001/",
    "trailing-dot-ip": "https://127.0.0.1./",
    "fullwidth-digits": "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",
    "ideographic-dots": "https://127\u30020\u30020\u30021/",
    # literal blocked addresses
    "loopback": "https://127.0.0.1/x",
    "loopback-other": "https://127.255.255.254/x",
    "unspecified": "https://0.0.0.0/x",
    "this-network": "https://0.1.2.3/x",
    "private-10": "https://10.0.0.1/x",
    "private-172": "https://172.16.0.1/x",
    "private-192": "https://192.168.1.1/x",
    "cgnat": "https://100.64.0.1/x",
    "metadata-ip": "https://169.254.169.254/computeMetadata/v1/",
    "link-local": "https://169.254.1.1/x",
    "multicast": "https://224.0.0.1/x",
    "broadcast": "https://255.255.255.255/x",
    "reserved": "https://240.0.0.1/x",
    "ipv6-loopback": "https://[::1]/x",
    "ipv6-unspecified": "https://[::]/x",
    "ipv6-link-local": "https://[fe80::1]/x",
    "ipv6-unique-local": "https://[fd00::1]/x",
    "ipv6-aws-metadata": "https://[fd00:ec2::254]/x",
    "ipv6-zone-id": "https://[fe80::1%25eth0]/x",
    # IPv4-mapped and other IPv6 forms of IPv4
    "mapped-loopback": "https://[::ffff:127.0.0.1]/x",
    "mapped-loopback-hex": "https://[::ffff:7f00:1]/x",
    "mapped-long-form": "https://[0:0:0:0:0:ffff:127.0.0.1]/x",
    "mapped-metadata": "https://[::ffff:169.254.169.254]/x",
    "mapped-private": "https://[::ffff:10.0.0.1]/x",
    "compatible-loopback": "https://[::127.0.0.1]/x",
    "nat64-metadata": "https://[64:ff9b::169.254.169.254]/x",
    "6to4-loopback": "https://[2002:7f00:1::]/x",
    # names
    "metadata-name": "https://metadata.google.internal/computeMetadata/v1/",
    "metadata-name-trailing-dot": "https://metadata.google.internal./computeMetadata/v1/",
    "metadata-name-uppercase": "https://METADATA.GOOGLE.INTERNAL/",
    "metadata-short-name": "https://metadata/computeMetadata/v1/",
    "localhost": "https://localhost/x",
    "localhost-trailing-dot": "https://localhost./x",
    "localhost-uppercase": "https://LOCALHOST/x",
    "localhost-subdomain": "https://api.localhost/x",
    "localhost-fullwidth": "https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/x",
    "localhost-percent-encoded": "https://%6c%6f%63%61%6c%68%6f%73%74/x",
    "single-label": "https://intranet/x",
    # schemes and shapes
    "plain-http": "http://hooks.example.com/x",
    "http-loopback": "http://127.0.0.1:8080/x",
    "file": "file:///etc/passwd",
    "gopher": "gopher://127.0.0.1:6379/_INFO",
    "javascript": "javascript:alert(1)",
    "ftp": "ftp://hooks.example.com/x",
    "scheme-relative": "//hooks.example.com/x",
    "relative": "/track-deleted",
    "no-host": "https:///x",
    "backslash": "https://hooks.example.com\\@127.0.0.1/x",
    "space-in-host": "https://hooks.example.com /x",
    "cr-lf": "https://hooks.example.com/x\r\nX-Injected: 1",
    "port-zero": "https://hooks.example.com:0/x",
    "port-too-big": "https://hooks.example.com:65536/x",
    "port-not-a-number": "https://hooks.example.com:https/x",
    "too-long-2049": "https://hooks.example.com/"
    + "a" * (2049 - len("https://hooks.example.com/")),
}


# --- what went out ----------------------------------------------------------


@dataclass
class Scene:
    """A harness and the (possibly shared) simulator, with what the simulator saw before it."""

    harness: Harness
    simulator: DatoCMSSimulator
    mark: int = 0

    def __post_init__(self) -> None:
        self.mark = len(self.simulator.requests)

    def datocms_requests(self) -> list[RequestRecord]:
        """The requests DatoCMS received since this scene began."""
        return self.simulator.requests[self.mark :]

    def assert_nothing_went_out(self) -> None:
        """No DatoCMS request, no task, no callback since this scene began."""
        assert [r.path for r in self.datocms_requests()] == []
        assert self.harness.queue.enqueued == []
        assert self.harness.sender.sent == []


class BoundedStream(io.RawIOBase):
    """An endless body that fails the test if more than `limit` bytes are asked for."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.given = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise AssertionError("the whole (endless) body was read")
        if self.given + size > self.limit:
            raise AssertionError(f"read past {self.limit} bytes")
        self.given += size
        return (b"{" + b" " * (size - 1)) if self.given == size and size else b" " * size

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        raise AssertionError("the whole (endless) body was read")


# --- calling delete_track in-process ----------------------------------------


def bearer(harness: Harness) -> str:
    token = harness.service.settings.intake_token
    assert token is not None
    return f"Bearer {token.reveal()}"


def call_intake(
    harness: Harness,
    *,
    method: str = "POST",
    headers: Mapping[str, str],
    body: bytes = b"",
    content_length: int | None = -1,
    stream: IO[bytes] | None = None,
) -> Reply:
    """`delete_track`'s handler as main.py calls it; a raise here is a 500 there."""
    length = len(body) if content_length == -1 else content_length
    try:
        return intake.handle_http(
            harness.service,
            method=method,
            headers=Headers(headers),
            content_length=length,
            stream=stream if stream is not None else io.BytesIO(body),
        )
    except Exception as crash:  # main.py turns this into "500 internal"
        pytest.fail(f"delete_track's handler raised {crash!r}: main.py would answer 500")


def post_json(
    harness: Harness,
    body: Any = None,
    *,
    raw: bytes | None = None,
    content_type: str | None = "application/json",
    method: str = "POST",
) -> Reply:
    """An authenticated POST of `body` (as JSON) or of `raw` bytes."""
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"authorization": bearer(harness)}
    if content_type is not None:
        headers["content-type"] = content_type
    return call_intake(harness, method=method, headers=headers, body=data)


def request(**extra: Any) -> dict[str, Any]:
    return {"upload_id": UPLOAD, "upload_track_id": TRACK, **extra}


# --- the contract's answer shapes ---------------------------------------------


def assert_error_shape(reply: Reply) -> None:
    """`{"error": {"code": snake_case, "message": str, "details"?}}`, + request_id for 422/502."""
    body = reply.body
    json.dumps(body)  # serialisable, as main.py will serialise it
    if reply.status in (422, 502):
        assert set(body) == {"error", "request_id"}, body
        assert isinstance(body["request_id"], str) and body["request_id"].startswith("req_")
    else:
        assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict), body
    assert {"code", "message"} <= set(error) <= {"code", "message", "details"}, body
    assert isinstance(error["code"], str) and _SNAKE_CASE.match(error["code"]), body
    assert isinstance(error["message"], str) and error["message"].strip(), body


def assert_refused(reply: Reply, status: int, code: str | None = None) -> None:
    assert reply.status == status, (reply.status, reply.body)
    assert_error_shape(reply)
    if code is not None:
        assert reply.body["error"]["code"] == code, reply.body
