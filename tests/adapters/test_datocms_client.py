"""The DatoCMS adapter against the simulator on loopback: headers, answers, rate limits."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from adapters.datocms import USER_AGENT, DatoCMSClient
from adapters.log import Log
from core import datocms
from core.errors import (
    DatoCMSAuthError,
    DatoCMSHeldBack,
    DatoCMSNotFound,
    DatoCMSRateLimited,
    DatoCMSUnavailable,
)
from core.settings import Secret
from devstack.datocms_simulator import DEMO_TRACK_ID, DEMO_UPLOAD_ID, DatoCMSSimulator

UPLOAD, TRACK = DEMO_UPLOAD_ID, DEMO_TRACK_ID
TOKEN = "client-test-token"


@pytest.fixture
def sim() -> Iterator[DatoCMSSimulator]:
    with DatoCMSSimulator(api_token=TOKEN) as simulator:
        simulator.add_track(UPLOAD, TRACK, job_seconds=30)
        yield simulator


def client(
    base_url: str, *, token: str = TOKEN, clock: list[float] | None = None, timeout: float = 5.0
) -> tuple[DatoCMSClient, io.StringIO]:
    logs = io.StringIO()
    now = clock or [100.0]
    return (
        DatoCMSClient(
            base_url=base_url,
            token=Secret(token),
            session=requests.Session(),
            log=Log(logs),
            clock=lambda: now[0],
            timeout=(timeout, timeout),
        ),
        logs,
    )


def test_delete_sends_the_headers_the_api_checks(sim: DatoCMSSimulator) -> None:
    dato, _ = client(sim.base_url)
    assert isinstance(dato.delete_track(UPLOAD, TRACK, None), datocms.Job)
    [record] = sim.requests
    assert record.auth_valid
    assert record.headers["X-Api-Version"] == "3"
    assert record.headers["Accept"] == "application/json"
    assert record.headers["User-Agent"] == USER_AGENT
    assert record.environment is None


def test_environment_is_sent_as_x_environment(sim: DatoCMSSimulator) -> None:
    sim.add_track(UPLOAD, TRACK, environment="sandbox")
    dato, _ = client(sim.base_url)
    with pytest.raises(datocms.DatoCMSRefused) as refused:
        dato.delete_track(UPLOAD, TRACK, "sandbox")
    assert refused.value.code == "IMMUTABLE_UPLOAD_TRACKS_IN_SANDBOX_ENVIRONMENT"
    assert sim.requests[0].environment == "sandbox"


def test_path_segments_are_percent_encoded(sim: DatoCMSSimulator) -> None:
    dato, _ = client(sim.base_url)
    with pytest.raises(DatoCMSNotFound):
        dato.delete_track("a b", "c/d", None)
    assert sim.requests[0].path == "/uploads/a%20b/tracks/c%2Fd"


def test_job_result_is_pending_then_final(sim: DatoCMSSimulator) -> None:
    sim.add_track(UPLOAD, "quick", job_seconds=0)
    dato, _ = client(sim.base_url)
    job = dato.delete_track(UPLOAD, "quick", None)
    assert isinstance(job, datocms.Job)
    result = dato.job_result(job.id, None)
    assert isinstance(result, datocms.Done) and result.http_status == 200
    assert dato.job_result("0123456789abcdef01234567", None) is None


def test_wrong_token_is_an_auth_error_and_never_logged(sim: DatoCMSSimulator) -> None:
    dato, logs = client(sim.base_url, token="not-it")
    with pytest.raises(DatoCMSAuthError):
        dato.delete_track(UPLOAD, TRACK, None)
    assert "not-it" not in logs.getvalue()
    assert TOKEN not in logs.getvalue()


def test_after_a_429_nothing_is_sent_before_the_announced_reset(sim: DatoCMSSimulator) -> None:
    clock = [100.0]
    dato, _ = client(sim.base_url, clock=clock)
    sim.inject(("429", 5))
    with pytest.raises(DatoCMSRateLimited) as limited:
        dato.delete_track(UPLOAD, TRACK, None)
    assert limited.value.retry_after == 5
    clock[0] += 4.9
    with pytest.raises(DatoCMSHeldBack) as held:
        dato.delete_track(UPLOAD, TRACK, None)
    assert held.value.retry_after == pytest.approx(0.1)
    assert sim.count() == 1
    clock[0] += 0.2
    sim.inject("503")  # (the simulator runs on real time: what matters is that a call went out)
    with pytest.raises(DatoCMSUnavailable):
        dato.delete_track(UPLOAD, TRACK, None)
    assert sim.count() == 2


@pytest.mark.parametrize("fault", ["500", "503", "html_502", "drop"])
def test_outages_are_transient(sim: DatoCMSSimulator, fault: str) -> None:
    dato, _ = client(sim.base_url)
    sim.inject(fault)
    with pytest.raises(DatoCMSUnavailable):
        dato.delete_track(UPLOAD, TRACK, None)


def test_a_slow_answer_past_the_timeout_is_transient(sim: DatoCMSSimulator) -> None:
    dato, _ = client(sim.base_url, timeout=0.2)
    sim.inject(("slow", 1.0))
    with pytest.raises(DatoCMSUnavailable) as slow:
        dato.delete_track(UPLOAD, TRACK, None)
    assert slow.value.code == "TIMEOUT"


def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dato, _ = client(f"http://127.0.0.1:{port}")
    with pytest.raises(DatoCMSUnavailable) as refused:
        dato.job_result("j", None)
    assert refused.value.code == "CONNECTION_ERROR"


def test_an_oversized_answer_is_read_only_up_to_the_limit() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Huge(BaseHTTPRequestHandler):
        def do_DELETE(self) -> None:
            self.send_response(202)
            self.send_header("Content-Length", str(50 * 1024 * 1024))
            self.end_headers()
            try:
                for _ in range(50):
                    self.wfile.write(b" " * 1024 * 1024)
            except OSError:
                return

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Huge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dato, _ = client(f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(datocms.DatoCMSBadResponse):
            dato.delete_track(UPLOAD, TRACK, None)
    finally:
        server.shutdown()
        server.server_close()


def test_list_tracks_reads_every_page_should_the_list_be_paged(sim: DatoCMSSimulator) -> None:
    sim.list_page_size = 2
    for n in range(4):
        sim.add_track(UPLOAD, f"extra{n}", type="audio")
    dato, _ = client(sim.base_url)
    listed = dato.list_tracks(UPLOAD, None)
    assert [t.id for t in listed] == [TRACK, "extra0", "extra1", "extra2", "extra3"]
    assert listed[1].attributes["type"] == "audio"
    assert sim.count("GET", f"/uploads/{UPLOAD}/tracks") == 3


def test_list_tracks_of_an_unknown_upload_is_not_found(sim: DatoCMSSimulator) -> None:
    dato, _ = client(sim.base_url)
    with pytest.raises(DatoCMSNotFound):
        dato.list_tracks("nosuchupload", None)
