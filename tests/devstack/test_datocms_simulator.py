"""The DatoCMS simulator answers like the real Content Management API (as far as known)."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.datocms_simulator import (
    DEMO_EXTRA_TRACKS,
    DEMO_TRACK_ID,
    DEMO_UPLOAD_ID,
    DatoCMSSimulator,
)

UPLOAD = DEMO_UPLOAD_ID
TRACK = DEMO_TRACK_ID
TRACK_PATH = f"/uploads/{UPLOAD}/tracks/{TRACK}"
HEADERS = {"Authorization": "Bearer sim-token", "Accept": "application/json", "X-Api-Version": "3"}
HEX24 = re.compile(r"[0-9a-f]{24}")
REPO_ROOT = Path(__file__).resolve().parents[2]

# The deleted track as DatoCMS documents it (datocms-samples/job-result-done-200.json).
SAMPLE_TRACK = {
    "type": "upload_track",
    "id": TRACK,
    "attributes": {
        "type": "subtitles",
        "name": "Italiano",
        "language_code": "it-IT",
        "closed_captions": False,
        "status": "ready",
        "error": None,
    },
    "relationships": {"upload": {"data": {"type": "upload", "id": UPLOAD}}},
}
# The recorded answer of a running (or unknown) job, minus its random id.
PENDING_ATTRIBUTES = {"code": "NOT_FOUND", "details": {"message": "ActiveRecord::RecordNotFound"}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Api:
    """A thin client: the right headers by default, any of them overridable or removable."""

    def __init__(self, base_url: str, session: requests.Session) -> None:
        self.base_url = base_url
        self.session = session

    def call(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str | None] | None = None,
        timeout: float = 5,
    ) -> requests.Response:
        merged: dict[str, str | None] = {**HEADERS, **(headers or {})}
        return self.session.request(method, self.base_url + path, headers=merged, timeout=timeout)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("DELETE", path, **kwargs)


def error_code(response: requests.Response) -> str:
    code = response.json()["data"][0]["attributes"]["code"]
    assert isinstance(code, str)
    return code


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[DatoCMSSimulator]:
    simulator = DatoCMSSimulator(clock=clock, read_only_tokens={"read-only"})
    simulator.add_track(UPLOAD, TRACK)
    with simulator:
        yield simulator


@pytest.fixture
def api(sim: DatoCMSSimulator) -> Iterator[Api]:
    with requests.Session() as session:
        yield Api(sim.base_url, session)


def make_api(simulator: DatoCMSSimulator, session: requests.Session) -> Api:
    return Api(simulator.base_url, session)


# --------------------------------------------------------------------------- lifecycle


def test_start_returns_a_loopback_url_and_stop_closes_the_port() -> None:
    simulator = DatoCMSSimulator()
    url = simulator.start()
    port = simulator.port
    simulator.stop()
    simulator.stop()  # idempotent

    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/job-results/x", headers=HEADERS, timeout=2)
    assert url.endswith(f":{port}")


def test_context_manager_serves_inside_the_block_only() -> None:
    with DatoCMSSimulator() as simulator, requests.Session() as session:
        url = simulator.base_url
        inside = session.get(f"{url}/job-results/x", headers=HEADERS, timeout=5)
    assert inside.status_code == 404
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/job-results/x", headers=HEADERS, timeout=2)


# --------------------------------------------------------------------------- header checks


def test_missing_authorization_is_refused_with_401_invalid_authorization_header(api: Api) -> None:
    response = api.get(f"/uploads/{UPLOAD}/tracks", headers={"Authorization": None})
    assert response.status_code == 401
    assert error_code(response) == "INVALID_AUTHORIZATION_HEADER"


def test_an_unknown_token_or_scheme_is_refused_with_401(api: Api) -> None:
    wrong_token = api.get(f"/uploads/{UPLOAD}/tracks", headers={"Authorization": "Bearer nope"})
    wrong_scheme = api.get(f"/uploads/{UPLOAD}/tracks", headers={"Authorization": "sim-token"})
    assert (wrong_token.status_code, wrong_scheme.status_code) == (401, 401)
    assert error_code(wrong_token) == error_code(wrong_scheme) == "INVALID_AUTHORIZATION_HEADER"


def test_missing_or_wrong_api_version_is_refused_with_422_invalid_api_version(api: Api) -> None:
    missing = api.get(f"/uploads/{UPLOAD}/tracks", headers={"X-Api-Version": None})
    wrong = api.get(f"/uploads/{UPLOAD}/tracks", headers={"X-Api-Version": "2"})
    assert (missing.status_code, wrong.status_code) == (422, 422)
    assert error_code(missing) == error_code(wrong) == "INVALID_API_VERSION"


def test_an_accept_header_without_application_json_is_refused_with_406(api: Api) -> None:
    wildcard = api.get(f"/uploads/{UPLOAD}/tracks", headers={"Accept": "*/*"})
    html = api.get(f"/uploads/{UPLOAD}/tracks", headers={"Accept": "text/html"})
    listed = api.get(f"/uploads/{UPLOAD}/tracks", headers={"Accept": "text/html, application/json"})
    assert (wildcard.status_code, html.status_code) == (406, 406)
    assert error_code(wildcard) == "INVALID_ACCEPT_HEADER"
    assert listed.status_code == 200


def test_an_unknown_environment_is_refused_with_404_invalid_environment(api: Api) -> None:
    response = api.get(f"/uploads/{UPLOAD}/tracks", headers={"X-Environment": "nowhere"})
    assert response.status_code == 404
    assert error_code(response) == "INVALID_ENVIRONMENT"


def test_the_primary_environment_may_be_named_explicitly(api: Api) -> None:
    response = api.get(f"/uploads/{UPLOAD}/tracks", headers={"X-Environment": "main"})
    assert response.status_code == 200
    assert response.headers["X-Environment"] == "main"


def test_every_api_answer_carries_the_documented_headers_and_error_format(api: Api) -> None:
    answers = [
        api.get(f"/uploads/{UPLOAD}/tracks"),
        api.get(f"/uploads/{UPLOAD}/tracks", headers={"Authorization": None}),
        api.get("/job-results/unknown"),
        api.delete(TRACK_PATH),
    ]
    for response in answers:
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert response.headers["X-Api-Version"] == "3"
        assert response.headers["X-RateLimit-Limit"] == "60"
        assert int(response.headers["X-RateLimit-Remaining"]) >= 0
        assert response.headers["X-Request-Id"]
    error = answers[1].json()["data"][0]
    assert error["type"] == "api_error"
    assert re.fullmatch(r"[0-9a-f]+", error["id"])
    assert set(error["attributes"]) >= {"code", "details"}


def test_unknown_routes_answer_404_and_wrong_methods_405_in_datocms_format(api: Api) -> None:
    unknown = api.get("/items")
    wrong_method = api.call("PUT", TRACK_PATH)
    assert unknown.status_code == 404
    assert error_code(unknown) == "INVALID_ENDPOINT"
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "DELETE"
    assert error_code(wrong_method) == "INVALID_ENDPOINT"


# --------------------------------------------------------------------------- deletion jobs


def test_delete_answers_202_with_a_job_of_24_hex_characters(api: Api) -> None:
    response = api.delete(TRACK_PATH)
    assert response.status_code == 202
    job = response.json()["data"]
    assert job["type"] == "job"
    assert HEX24.fullmatch(job["id"])


def test_a_job_result_is_404_while_running_then_200_with_the_deleted_track(
    api: Api, clock: FakeClock
) -> None:
    job_id = api.delete(TRACK_PATH).json()["data"]["id"]

    clock.advance(0.99)
    pending = api.get(f"/job-results/{job_id}")
    clock.advance(0.01)
    done = api.get(f"/job-results/{job_id}")

    assert pending.status_code == 404
    assert pending.json()["data"][0]["attributes"] == PENDING_ATTRIBUTES
    assert done.status_code == 200
    assert done.json() == {
        "data": {
            "id": job_id,
            "type": "job_result",
            "attributes": {"status": 200, "statusText": "OK", "payload": {"data": SAMPLE_TRACK}},
        }
    }


def test_an_unknown_job_id_answers_exactly_like_a_running_job(api: Api) -> None:
    response = api.get("/job-results/000000000000000000000000")
    assert response.status_code == 404
    assert response.json()["data"][0]["attributes"] == PENDING_ATTRIBUTES


def test_a_successful_job_removes_the_track(
    api: Api, sim: DatoCMSSimulator, clock: FakeClock
) -> None:
    api.delete(TRACK_PATH)
    listed_while_running = api.get(f"/uploads/{UPLOAD}/tracks").json()["data"]
    clock.advance(1.0)
    listed_after = api.get(f"/uploads/{UPLOAD}/tracks").json()["data"]

    assert listed_while_running == [SAMPLE_TRACK]
    assert listed_after == []
    assert sim.tracks(UPLOAD) == []


def test_a_track_job_duration_overrides_the_default(
    api: Api, sim: DatoCMSSimulator, clock: FakeClock
) -> None:
    sim.add_track(UPLOAD, "slowtrack", job_seconds=30)
    job_id = api.delete(f"/uploads/{UPLOAD}/tracks/slowtrack").json()["data"]["id"]
    clock.advance(29.9)
    assert api.get(f"/job-results/{job_id}").status_code == 404
    clock.advance(0.1)
    assert api.get(f"/job-results/{job_id}").status_code == 200


def test_a_configured_failure_gives_a_job_result_with_that_status_and_code_and_keeps_the_track(
    api: Api, sim: DatoCMSSimulator, clock: FakeClock
) -> None:
    sim.add_track(UPLOAD, "audio1", type="audio", outcome=(422, "NOT_A_VIDEO"))
    job_id = api.delete(f"/uploads/{UPLOAD}/tracks/audio1").json()["data"]["id"]
    clock.advance(1.0)
    result = api.get(f"/job-results/{job_id}")

    assert result.status_code == 200
    attributes = result.json()["data"]["attributes"]
    assert attributes["status"] == 422
    assert attributes["statusText"] == "Unprocessable Entity"
    assert attributes["payload"]["data"][0]["attributes"]["code"] == "NOT_A_VIDEO"
    assert [track["id"] for track in sim.tracks(UPLOAD)] == [TRACK, "audio1"]


def test_track_deletion_in_a_sandbox_is_refused_synchronously_with_422(
    api: Api, sim: DatoCMSSimulator
) -> None:
    sim.add_track(UPLOAD, TRACK, environment="sandbox")
    response = api.delete(TRACK_PATH, headers={"X-Environment": "sandbox"})
    assert response.status_code == 422
    assert error_code(response) == "IMMUTABLE_UPLOAD_TRACKS_IN_SANDBOX_ENVIRONMENT"
    assert len(sim.tracks(UPLOAD, environment="sandbox")) == 1


def test_a_read_only_token_may_list_but_not_delete(api: Api, sim: DatoCMSSimulator) -> None:
    read_only = {"Authorization": "Bearer read-only"}
    listed = api.get(f"/uploads/{UPLOAD}/tracks", headers=read_only)
    deleted = api.delete(TRACK_PATH, headers=read_only)
    assert listed.status_code == 200
    assert deleted.status_code == 403
    assert error_code(deleted) == "INSUFFICIENT_PERMISSIONS"
    assert sim.stats()["jobs_created"] == 0


def test_deleting_a_missing_track_answers_a_synchronous_404_by_default(
    api: Api, clock: FakeClock
) -> None:
    api.delete(TRACK_PATH)
    clock.advance(1.0)
    api.get("/job-results/anything")  # lets the job complete
    again = api.delete(TRACK_PATH)
    unknown = api.delete(f"/uploads/{UPLOAD}/tracks/neverexisted")
    assert (again.status_code, unknown.status_code) == (404, 404)
    assert again.json()["data"][0]["attributes"] == PENDING_ATTRIBUTES


def test_deleting_a_missing_track_in_job_404_mode_gives_a_job_whose_result_is_404(
    clock: FakeClock,
) -> None:
    simulator = DatoCMSSimulator(clock=clock, missing_track_mode="job_404")
    with simulator, requests.Session() as session:
        api = make_api(simulator, session)
        accepted = api.delete(f"/uploads/{UPLOAD}/tracks/neverexisted")
        clock.advance(1.0)
        result = api.get(f"/job-results/{accepted.json()['data']['id']}")

    assert accepted.status_code == 202
    attributes = result.json()["data"]["attributes"]
    assert (result.status_code, attributes["status"]) == (200, 404)
    assert attributes["payload"]["data"][0]["attributes"]["code"] == "NOT_FOUND"


def test_percent_encoded_path_segments_are_decoded(
    api: Api, sim: DatoCMSSimulator, clock: FakeClock
) -> None:
    odd_id = "tr ack/1+ü"
    sim.add_track(UPLOAD, odd_id)
    encoded = urllib.parse.quote(odd_id, safe="")
    job_id = api.delete(f"/uploads/{UPLOAD}/tracks/{encoded}").json()["data"]["id"]
    clock.advance(1.0)
    payload = api.get(f"/job-results/{job_id}").json()["data"]["attributes"]["payload"]

    assert payload["data"]["id"] == odd_id
    assert sim.requests[0].path == f"/uploads/{UPLOAD}/tracks/{encoded}"
    assert [track["id"] for track in sim.tracks(UPLOAD)] == [TRACK]


def test_listing_an_unknown_upload_answers_404(api: Api) -> None:
    response = api.get("/uploads/unknown-upload/tracks")
    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"


# --------------------------------------------------------------------------- rate limit


def test_the_rate_limit_answers_429_with_whole_seconds_to_wait(clock: FakeClock) -> None:
    simulator = DatoCMSSimulator(clock=clock, rate_limit=3, rate_window=3.0)
    with simulator, requests.Session() as session:
        api = make_api(simulator, session)
        admitted = [api.get("/job-results/x") for _ in range(3)]
        clock.advance(0.4)
        refused = api.get("/job-results/x")

    assert [r.headers["X-RateLimit-Remaining"] for r in admitted] == ["2", "1", "0"]
    assert refused.status_code == 429
    assert refused.headers["X-RateLimit-Reset"] == "3"  # ceil(2.6)
    attributes = refused.json()["data"][0]["attributes"]
    assert (attributes["code"], attributes["transient"]) == ("RATE_LIMIT_EXCEEDED", True)


def test_the_window_slides_so_quota_returns_as_old_requests_age_out(clock: FakeClock) -> None:
    simulator = DatoCMSSimulator(clock=clock, rate_limit=2, rate_window=3.0)
    with simulator, requests.Session() as session:
        api = make_api(simulator, session)
        api.get("/job-results/x")
        clock.advance(2.0)
        api.get("/job-results/x")
        clock.advance(0.5)
        refused = api.get("/job-results/x")
        clock.advance(0.5)  # the first request leaves the window
        admitted = api.get("/job-results/x")

    assert refused.status_code == 429
    assert refused.headers["X-RateLimit-Reset"] == "1"  # ceil(0.5)
    assert admitted.status_code == 404
    assert admitted.headers["X-RateLimit-Remaining"] == "0"


def test_requests_before_the_announced_reset_count_as_early(clock: FakeClock) -> None:
    simulator = DatoCMSSimulator(clock=clock, rate_limit=1, rate_window=3.0)
    with simulator, requests.Session() as session:
        api = make_api(simulator, session)
        api.get("/job-results/x")
        first_refusal = api.get("/job-results/x")  # announces 3 s at t=0
        clock.advance(2.0)
        early = api.get("/job-results/x")  # t=2 < 3: early, announces ceil(1) = 1 s
        clock.advance(1.0)
        on_time = api.get("/job-results/x")  # t=3: not early

    assert [first_refusal.status_code, early.status_code, on_time.status_code] == [429, 429, 404]
    assert simulator.stats() == {
        "requests": 4,
        "rate_limited": 2,
        "early_requests": 1,
        "faults_served": 0,
        "jobs_created": 0,
    }
    assert [record.early for record in simulator.requests] == [False, False, True, False]


def test_requests_refused_for_their_headers_do_not_use_quota(clock: FakeClock) -> None:
    simulator = DatoCMSSimulator(clock=clock, rate_limit=2)
    with simulator, requests.Session() as session:
        api = make_api(simulator, session)
        for _ in range(5):
            api.get("/job-results/x", headers={"Authorization": None})
        admitted = api.get("/job-results/x")
    assert admitted.status_code == 404
    assert admitted.headers["X-RateLimit-Remaining"] == "1"


# --------------------------------------------------------------------------- faults


def test_an_injected_500_is_a_transient_json_error_served_once(
    api: Api, sim: DatoCMSSimulator
) -> None:
    sim.inject("500")
    failed = api.get(f"/uploads/{UPLOAD}/tracks")
    recovered = api.get(f"/uploads/{UPLOAD}/tracks")

    assert failed.status_code == 500
    attributes = failed.json()["data"][0]["attributes"]
    assert (attributes["code"], attributes["transient"]) == ("INTERNAL_SERVER_ERROR", True)
    assert "X-RateLimit-Remaining" in failed.headers
    assert recovered.status_code == 200


def test_an_injected_503_is_a_transient_service_unavailable(
    api: Api, sim: DatoCMSSimulator
) -> None:
    sim.inject("503", times=2)
    answers = [api.get(f"/uploads/{UPLOAD}/tracks").status_code for _ in range(3)]
    failed = sim.requests[0]
    assert answers == [503, 503, 200]
    assert failed.fault == "503"


def test_an_injected_503_body_is_service_unavailable_and_transient(
    api: Api, sim: DatoCMSSimulator
) -> None:
    sim.inject("503")
    attributes = api.get(f"/uploads/{UPLOAD}/tracks").json()["data"][0]["attributes"]
    assert (attributes["code"], attributes["transient"]) == ("SERVICE_UNAVAILABLE", True)


def test_an_injected_html_502_is_a_cdn_page_without_api_headers(
    api: Api, sim: DatoCMSSimulator
) -> None:
    sim.inject("html_502")
    response = api.get(f"/uploads/{UPLOAD}/tracks")

    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "502 Bad Gateway" in response.text
    assert "X-RateLimit-Remaining" not in response.headers
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_an_injected_drop_raises_connection_error_and_has_no_effect(
    api: Api, sim: DatoCMSSimulator, clock: FakeClock
) -> None:
    sim.inject("drop", match=("DELETE", "/uploads/"))
    assert api.get(f"/uploads/{UPLOAD}/tracks").status_code == 200  # opens a keep-alive connection
    with pytest.raises(requests.ConnectionError):
        api.delete(TRACK_PATH)  # on the reused connection
    clock.advance(5)

    assert len(sim.tracks(UPLOAD)) == 1
    assert sim.requests[1].status is None
    assert api.delete(TRACK_PATH).status_code == 202


def test_an_injected_drop_after_takes_effect_but_never_answers(
    api: Api, sim: DatoCMSSimulator, clock: FakeClock
) -> None:
    sim.inject("drop_after")
    with pytest.raises(requests.ConnectionError):
        api.delete(TRACK_PATH)
    clock.advance(1.0)
    assert sim.stats()["jobs_created"] == 1
    assert sim.tracks(UPLOAD) == []


def test_an_injected_slow_answer_arrives_late_and_still_takes_effect(
    api: Api, sim: DatoCMSSimulator
) -> None:
    sim.inject(("slow", 0.25), times=2)
    started = time.perf_counter()
    late = api.get(f"/uploads/{UPLOAD}/tracks")
    elapsed = time.perf_counter() - started
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.delete(TRACK_PATH, timeout=0.05)

    assert late.status_code == 200
    assert elapsed >= 0.25
    assert sim.stats()["jobs_created"] == 1


def test_an_injected_429_announces_its_reset_and_counts_early_requests(
    api: Api, sim: DatoCMSSimulator, clock: FakeClock
) -> None:
    sim.inject(("429", 7))
    limited = api.get(f"/uploads/{UPLOAD}/tracks")
    clock.advance(6.9)
    early = api.get(f"/uploads/{UPLOAD}/tracks")
    clock.advance(0.1)
    on_time = api.get(f"/uploads/{UPLOAD}/tracks")

    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Reset"] == "7"
    assert error_code(limited) == "RATE_LIMIT_EXCEEDED"
    assert (early.status_code, on_time.status_code) == (200, 200)
    stats = sim.stats()
    assert (stats["rate_limited"], stats["early_requests"]) == (1, 1)


def test_faults_are_served_oldest_first_and_only_to_matching_requests(
    api: Api, sim: DatoCMSSimulator
) -> None:
    sim.inject("500", match=("DELETE", None))
    sim.inject("503", match=(None, "/job-results/"))
    sim.inject("html_502", match=("DELETE", "/uploads/"))

    listed = api.get(f"/uploads/{UPLOAD}/tracks")
    polled = api.get("/job-results/x")
    first_delete = api.delete(TRACK_PATH)
    second_delete = api.delete(TRACK_PATH)
    third_delete = api.delete(TRACK_PATH)

    statuses = [r.status_code for r in (listed, polled, first_delete, second_delete, third_delete)]
    assert statuses == [200, 503, 500, 502, 202]
    assert sim.stats()["faults_served"] == 3


def test_an_unknown_fault_is_rejected() -> None:
    simulator = DatoCMSSimulator()
    with pytest.raises(ValueError, match="unknown fault"):
        simulator.inject("418")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        simulator.inject("500", times=0)


# --------------------------------------------------------------------------- inspection


def test_request_records_keep_headers_but_never_the_token(api: Api, sim: DatoCMSSimulator) -> None:
    api.get(f"/uploads/{UPLOAD}/tracks", headers={"X-Environment": "sandbox"})
    api.delete(TRACK_PATH, headers={"Authorization": "Bearer wrong"})
    listed, refused = sim.requests

    assert (listed.method, listed.status, listed.environment) == ("GET", 200, "sandbox")
    assert listed.auth_valid is True
    assert listed.headers["X-Api-Version"] == "3"
    assert listed.headers["Authorization"] == "<redacted>"
    assert (refused.method, refused.status, refused.auth_valid) == ("DELETE", 401, False)
    assert "sim-token" not in repr(sim.requests)
    assert "wrong" not in repr(sim.requests)


def test_count_filters_by_method_and_raw_path_prefix(api: Api, sim: DatoCMSSimulator) -> None:
    api.get(f"/uploads/{UPLOAD}/tracks")
    api.delete(TRACK_PATH)
    api.get("/job-results/x")
    api.get("/job-results/y")

    assert sim.count() == 4
    assert sim.count(method="GET") == 3
    assert sim.count(path_prefix="/job-results/") == 2
    assert sim.count(method="delete", path_prefix="/uploads/") == 1


def test_concurrent_requests_are_all_answered_and_recorded(api: Api, sim: DatoCMSSimulator) -> None:
    statuses: list[int] = []
    lock = threading.Lock()

    def poll() -> None:
        with requests.Session() as session:
            status = make_api(sim, session).get("/job-results/x").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=poll) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert statuses == [404] * 20
    assert sim.stats()["requests"] == 20


def test_one_keep_alive_connection_serves_several_requests(sim: DatoCMSSimulator) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        sockets = []
        statuses = []
        for path in (f"/uploads/{UPLOAD}/tracks", "/job-results/x", TRACK_PATH):
            method = "DELETE" if path == TRACK_PATH else "GET"
            connection.request(method, path, headers=HEADERS)
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            sockets.append(connection.sock)
    finally:
        connection.close()

    assert statuses == [200, 404, 202]
    assert sockets[0] is not None
    assert all(sock is sockets[0] for sock in sockets)


def test_tracks_can_be_added_replaced_and_removed_through_python(sim: DatoCMSSimulator) -> None:
    sim.add_track(UPLOAD, "en", name="English", language_code="en", closed_captions=None)
    sim.add_track(UPLOAD, "en", name="English (CC)", language_code="en", closed_captions=True)
    names = [track["attributes"]["name"] for track in sim.tracks(UPLOAD)]
    removed = sim.remove_track(UPLOAD, "en")
    removed_again = sim.remove_track(UPLOAD, "en")

    assert names == ["Italiano", "English (CC)"]
    assert (removed, removed_again) == (True, False)
    with pytest.raises(ValueError, match="environment"):
        sim.add_track(UPLOAD, "x", environment="elsewhere")


# --------------------------------------------------------------------------- CLI


def test_the_cli_serves_the_demo_track_until_interrupted() -> None:
    command = [sys.executable, "-m", "devstack.datocms_simulator", "--port", "0", "--token", "T"]
    with subprocess.Popen(
        [*command, "--job-seconds", "0"], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        banner = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert match, banner
        headers = {**HEADERS, "Authorization": "Bearer T"}
        with requests.Session() as session:
            listed = session.get(f"{match[0]}/uploads/{UPLOAD}/tracks", headers=headers, timeout=5)
        process.send_signal(signal.SIGINT)
        process.stdout.read()
        returncode = process.wait(timeout=10)

    assert listed.status_code == 200
    data = listed.json()["data"]
    assert data[0] == SAMPLE_TRACK
    assert [track["id"] for track in data[1:]] == [extra[0] for extra in DEMO_EXTRA_TRACKS]
    assert returncode == 0


# --------------------------------------------------------------------------- listing


def test_listing_an_unknown_upload_is_404_not_found(api: Api) -> None:
    answer = api.get("/uploads/nosuchupload/tracks")
    assert answer.status_code == 404 and error_code(answer) == "NOT_FOUND"


def test_listing_shows_every_track_of_the_upload(sim: DatoCMSSimulator, api: Api) -> None:
    sim.add_track(UPLOAD, "second", type="audio", language_code="en-US")
    answer = api.get(f"/uploads/{UPLOAD}/tracks")
    assert [t["id"] for t in answer.json()["data"]] == [TRACK, "second"]
    assert answer.json()["data"][1]["attributes"]["type"] == "audio"


def test_a_paged_listing_answers_pages_with_the_total(sim: DatoCMSSimulator, api: Api) -> None:
    sim.list_page_size = 2
    for n in range(4):
        sim.add_track(UPLOAD, f"t{n}")
    first = api.get(f"/uploads/{UPLOAD}/tracks").json()
    last = api.get(f"/uploads/{UPLOAD}/tracks?page%5Boffset%5D=4&page%5Blimit%5D=2").json()
    assert len(first["data"]) == 2 and first["meta"] == {"total_count": 5}
    assert [t["id"] for t in last["data"]] == ["t3"]


def test_the_undocumented_fault_answers_200_with_a_body_that_is_not_a_list(
    sim: DatoCMSSimulator, api: Api
) -> None:
    sim.inject("undocumented", match=("GET", "/uploads/"))
    answer = api.get(f"/uploads/{UPLOAD}/tracks")
    assert answer.status_code == 200 and not isinstance(answer.json()["data"], list)
    assert api.get(f"/uploads/{UPLOAD}/tracks").json()["data"][0]["id"] == TRACK
