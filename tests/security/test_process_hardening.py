"""The real `functions-framework` processes against hostile clients, over raw sockets.

One module-scoped `LocalStack` (`delete_track` and `poll_job` as processes on
loopback). Each test speaks HTTP/1.1 by hand, so it can send what no client
library would: a chunked body with a bad chunk size, a chunk cut short, a
retry-count header with a non-ASCII digit.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.model import DeletionRequest, Step
from core.signing import seal_task
from devstack.datocms_simulator import DEMO_UPLOAD_ID
from devstack.stack import LocalStack

pytestmark = pytest.mark.xdist_group("security-stack")

UPLOAD = DEMO_UPLOAD_ID


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack() as running:
        yield running


def exchange(port: int, raw: bytes, *, half_close: bool = False, timeout: float = 10.0) -> bytes:
    """Send `raw` over a fresh connection; the whole answer (until the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and _complete(answer):
                    break
        except TimeoutError:
            pass
        return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> dict[str, object]:
    parsed: dict[str, object] = json.loads(answer.partition(b"\r\n\r\n")[2])
    return parsed


def chunked(port: int, authorization: str, chunks: bytes) -> bytes:
    return (
        b"POST / HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{port}\r\n".encode()
        + f"Authorization: {authorization}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + b"Transfer-Encoding: chunked\r\n"
        + b"Connection: close\r\n\r\n"
        + chunks
    )


BROKEN_FRAMING = {
    "chunk-size-not-hex": (b"zz\r\n{}\r\n0\r\n\r\n", False),
    "negative-chunk-size": (b"-1\r\n{}\r\n0\r\n\r\n", False),
    "chunk-longer-than-sent": (b'40\r\n{"upload_id": ', True),
}


def _new_lines(stack: LocalStack, target: str, seen: int) -> list[dict[str, object]]:
    return stack.functions[target].logs()[seen:]


@pytest.mark.parametrize("framing", sorted(BROKEN_FRAMING))
def test_a_body_with_broken_chunked_framing_is_a_400_at_the_intake_logged_at_warning(
    stack: LocalStack, framing: str
) -> None:
    function = stack.functions["delete_track"]
    seen = len(function.logs())
    chunks, half_close = BROKEN_FRAMING[framing]
    answer = exchange(
        function.port,
        chunked(function.port, f"Bearer {stack.secrets.intake_token}", chunks),
        half_close=half_close,
    )
    assert status_of(answer) == 400
    assert body_of(answer)["error"] == {
        "code": "invalid_body",
        "message": "The body could not be read.",
    }
    lines = _new_lines(stack, "delete_track", seen)
    assert [line["severity"] for line in lines] == ["WARNING"], lines
    assert "frames" not in lines[0]
    assert "Traceback" not in function.output()


@pytest.mark.parametrize("framing", sorted(BROKEN_FRAMING))
def test_a_task_with_broken_chunked_framing_is_a_401_without_credentials(
    stack: LocalStack, framing: str
) -> None:
    function = stack.functions["poll_job"]
    seen = len(function.logs())
    chunks, half_close = BROKEN_FRAMING[framing]
    answer = exchange(
        function.port, chunked(function.port, "Bearer nothing", chunks), half_close=half_close
    )
    assert status_of(answer) == 401
    assert body_of(answer)["error"]["code"] == "invalid_task"  # type: ignore[index]
    lines = _new_lines(stack, "poll_job", seen)
    assert [line["severity"] for line in lines] == ["WARNING"], lines
    assert "Traceback" not in function.output()


def _signed_poll_task(stack: LocalStack) -> bytes:
    request = DeletionRequest(UPLOAD, "never-accepted-track")
    now = time.time()
    step = Step(
        kind="poll",
        request_id=request.request_id(None),
        request=request,
        environment=None,
        accepted_at=now,
        number=1,
        not_after=now + 3600,
        job_id="job-1",
    )
    return seal_task(step.to_json(), stack.secrets.task_secret.encode())


@pytest.mark.parametrize("count", ["\u00b2", "\u0663", "-1", "1e9", "99999999999999999999"])
def test_the_retry_count_header_decides_nothing_whatever_it_holds(
    stack: LocalStack, count: str
) -> None:
    function = stack.functions["poll_job"]
    body = _signed_poll_task(stack)
    raw = (
        b"POST / HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{function.port}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + b"X-CloudTasks-TaskRetryCount: "
        + count.encode("utf-8")
        + b"\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + b"Connection: close\r\n\r\n"
        + body
    )
    answer = exchange(function.port, raw)
    # Genuine and signed, for a request with no record: acknowledged as superseded.
    assert status_of(answer) == 200
    assert body_of(answer) == {"status": "superseded"}


def test_no_module_that_handles_a_task_reads_the_retry_count_header() -> None:
    """The attempt budget lives in the record; the queue's header is never consulted."""
    root = Path(__file__).resolve().parents[2]
    readers = [
        path.relative_to(root).as_posix()
        for folder in ("core", "handlers")
        for path in (root / folder).rglob("*.py")
        if "taskretrycount" in path.read_text(encoding="utf-8").lower()
    ]
    main = (root / "main.py").read_text(encoding="utf-8").lower()
    assert readers == []
    assert "taskretrycount" not in main


def _basic(user: str, password: str, *, padded: bool) -> str:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return "Basic " + (encoded if padded else encoded.rstrip("="))


@pytest.mark.parametrize("user", ["", "a", "ab", "abc"])  # every padding length
@pytest.mark.parametrize("padded", [True, False])
def test_basic_credentials_are_accepted_with_or_without_base64_padding(
    stack: LocalStack, user: str, padded: bool
) -> None:
    authorization = _basic(user, stack.secrets.intake_token, padded=padded)
    function = stack.functions["delete_track"]
    raw = (
        b"GET /requests/unknown-request HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{function.port}\r\n".encode()
        + f"Authorization: {authorization}\r\n".encode()
        + b"Connection: close\r\n\r\n"
    )
    # Authenticated: the status resource answers (404, no such request), never 401.
    assert status_of(exchange(function.port, raw)) == 404


def test_unpadded_basic_credentials_with_a_wrong_password_are_refused(stack: LocalStack) -> None:
    function = stack.functions["delete_track"]
    authorization = _basic("a", stack.secrets.intake_token + "x", padded=False)
    raw = (
        b"GET /requests/unknown-request HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{function.port}\r\n".encode()
        + f"Authorization: {authorization}\r\n".encode()
        + b"Connection: close\r\n\r\n"
    )
    assert status_of(exchange(function.port, raw)) == 401


def test_slow_clients_holding_more_than_the_default_threads_do_not_stall_the_intake(
    stack: LocalStack,
) -> None:
    """Each slow client has sent part of its headers and nothing more (a gunicorn thread
    then blocks on it); functions-framework's default is 4 threads per CPU."""
    function = stack.functions["delete_track"]
    slow = (os.cpu_count() or 1) * 4 + 8
    with contextlib.ExitStack() as held:
        for _ in range(slow):
            sock = held.enter_context(socket.create_connection(("127.0.0.1", function.port)))
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        raw = (
            b"POST / HTTP/1.1\r\n"
            + f"Host: 127.0.0.1:{function.port}\r\n".encode()
            + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        started = time.monotonic()
        answer = exchange(function.port, raw, timeout=8.0)
        assert answer, "delete_track did not answer while slow clients held connections"
        assert status_of(answer) == 401
        assert time.monotonic() - started < 8.0
