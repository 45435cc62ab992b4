"""Secrets hygiene, end to end: nothing secret leaks into an answer or a log line.

Real processes on loopback (`devstack.stack.LocalStack`): `delete_track` and
`poll_job` under `functions-framework`, the DatoCMS simulator, and a callback
receiver that verifies with `standardwebhooks`. One module-scoped run plays
the scenarios below, keeps every response (status, headers, body) and the
whole output of every process, and the tests then search all of it for what
must never appear:

- the four secrets (and the callback secret's base64 part and decoded key);
- any `Authorization` header value sent (by the caller, or by the service to DatoCMS);
- any `webhook-signature` value the receiver got;
- any full callback URL (its path, query, port or credentials: only scheme://host);
- DatoCMS's error bodies (their `id`, `doc_url`, details) echoed to callers.

Scenarios: a deletion with a callback; a wrong token (401); HTTP Basic auth; a
callback refused once then accepted; a dead letter; a refusal in a sandbox
(422); credentials in a callback URL (400); and, on a second stack whose
DatoCMS token is wrong, a 502.
"""

from __future__ import annotations

import base64
import json
import re
import secrets as random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

import devstack.datocms_simulator as simulator_module
from core.settings import decode_webhook_secret
from devstack.datocms_simulator import DEMO_UPLOAD_ID
from devstack.receiver import Delivery
from devstack.stack import LocalStack, Secrets
from tests.security import loopback_guard

pytestmark = pytest.mark.xdist_group("security-stack")

UPLOAD = DEMO_UPLOAD_ID
WAIT = 20.0
STACK_ENV = {
    "CALLBACK_MAX_ATTEMPTS": "3",
    "POLL_TIMEOUT_SECONDS": "20",
    "DATOCMS_ENVIRONMENT": "",
}


@dataclass
class Exchange:
    """One request to delete_track and its answer."""

    scenario: str
    status: int
    body: str
    headers: dict[str, str]
    request_id: str | None


@dataclass
class Transcript:
    """Everything the scenarios produced, and everything that must not leak."""

    exchanges: dict[str, Exchange] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # "stack/function" -> whole output
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    authorizations: list[str] = field(default_factory=list)
    callback_urls: dict[str, str] = field(default_factory=dict)
    upstream_errors: list[dict[str, Any]] = field(default_factory=list)
    receiver_url: str = ""

    def texts(self) -> dict[str, str]:
        """Every answer and every process output, by name."""
        answers = {
            f"answer to {name}": exchange.body + "\n" + json.dumps(exchange.headers)
            for name, exchange in self.exchanges.items()
        }
        return {**answers, **{f"output of {name}": text for name, text in self.outputs.items()}}


def secret_forms(label: str, stack_secrets: Secrets) -> dict[str, str]:
    """Each secret, and the forms in which the callback secret's key could be written."""
    forms = {
        f"{label} DATOCMS_API_TOKEN": stack_secrets.datocms_token,
        f"{label} INTAKE_TOKEN": stack_secrets.intake_token,
        f"{label} TASK_SIGNING_SECRET": stack_secrets.task_secret,
        f"{label} CALLBACK_SIGNING_SECRET": stack_secrets.callback_secret,
    }
    encoded = stack_secrets.callback_secret.removeprefix("whsec_")
    key = decode_webhook_secret(stack_secrets.callback_secret)
    forms.update(
        {
            f"{label} callback secret, base64 part": encoded,
            f"{label} callback secret, base64 part without padding": encoded.rstrip("="),
            f"{label} callback key, hex": key.hex(),
            f"{label} callback key, url-safe base64": base64.urlsafe_b64encode(key).decode(),
            f"{label} callback key, bytes repr": str(key)[2:-1],
            f"{label} task secret, base64": base64.b64encode(
                stack_secrets.task_secret.encode()
            ).decode(),
        }
    )
    return forms


def _exchange(scenario: str, answer: requests.Response) -> Exchange:
    try:
        request_id = answer.json().get("request_id")
    except ValueError:
        request_id = None
    return Exchange(scenario, answer.status_code, answer.text, dict(answer.headers), request_id)


def _post(stack: LocalStack, body: dict[str, Any], **options: Any) -> requests.Response:
    return requests.post(stack.intake_url, json=body, timeout=30, **options)


def _wait_until(condition: Any, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _play_main_stack(stack: LocalStack, transcript: Transcript) -> None:  # noqa: PLR0915 (one scripted session)
    token = stack.secrets.intake_token
    bearer = {"Authorization": f"Bearer {token}"}
    path_secret, query_secret = "p-" + random.token_hex(8), "q-" + random.token_hex(8)
    callback = f"{stack.receiver.url}/{path_secret}?token={query_secret}"
    transcript.receiver_url = stack.receiver.url
    transcript.callback_urls.update(
        {
            "full callback URL": callback,
            "callback URL without scheme": callback.split("://", 1)[1],
            "callback path secret": path_secret,
            "callback query secret": query_secret,
            "receiver host and port": stack.receiver.url.split("://", 1)[1].split("/", 1)[0],
            "receiver path": "/hooks/",
        }
    )
    transcript.authorizations.append(bearer["Authorization"])
    transcript.authorizations.append(f"Bearer {stack.secrets.datocms_token}")

    def track(name: str, **options: Any) -> str:
        stack.simulator.add_track(UPLOAD, name, job_seconds=0.2, **options)
        return name

    def request(name: str, **extra: Any) -> dict[str, Any]:
        return {"upload_id": UPLOAD, "upload_track_id": track(name), **extra}

    # 1. A deletion with a callback, delivered at the first attempt.
    answer = _post(stack, request("hyg-ok", callback_url=callback), headers=bearer)
    transcript.exchanges["deleted with callback"] = _exchange("deleted with callback", answer)
    stack.receiver.wait_for_id(answer.json()["request_id"], WAIT)

    # 2. A wrong token.
    wrong = f"Bearer wrong-{random.token_hex(16)}"
    transcript.authorizations.append(wrong)
    answer = _post(stack, request("hyg-401"), headers={"Authorization": wrong})
    transcript.exchanges["wrong token"] = _exchange("wrong token", answer)

    # 3. HTTP Basic auth, the token as the password.
    basic = "Basic " + base64.b64encode(f"datocms:{token}".encode()).decode()
    transcript.authorizations += [basic, basic.removeprefix("Basic ")]
    answer = _post(stack, request("hyg-basic"), headers={"Authorization": basic})
    transcript.exchanges["basic auth"] = _exchange("basic auth", answer)

    # 4. A callback refused once, then accepted.
    stack.receiver.fail_next(500, 1)
    answer = _post(stack, request("hyg-retry", callback_url=callback), headers=bearer)
    transcript.exchanges["callback retried"] = _exchange("callback retried", answer)
    stack.receiver.wait_for_id(answer.json()["request_id"], WAIT)

    # 5. A callback refused at every attempt: a dead letter.
    stack.receiver.fail_next(503, int(STACK_ENV["CALLBACK_MAX_ATTEMPTS"]))
    answer = _post(stack, request("hyg-dead", callback_url=callback), headers=bearer)
    transcript.exchanges["dead letter"] = _exchange("dead letter", answer)
    dead_id = answer.json()["request_id"]
    poll_job = stack.functions["poll_job"]
    _wait_until(
        lambda: any(
            e.get("message") == "callback dead-lettered" and e.get("request_id") == dead_id
            for e in poll_job.logs()
        )
    )

    # 6. DatoCMS refuses for good (a sandbox): 422, with a DatoCMS error body behind it.
    answer = _post(
        stack,
        {
            "upload_id": UPLOAD,
            "upload_track_id": track("hyg-sandbox", environment="sandbox"),
            "environment": "sandbox",
            "callback_url": callback,
        },
        headers=bearer,
    )
    transcript.exchanges["refused in sandbox"] = _exchange("refused in sandbox", answer)
    refused_id = answer.json()["request_id"]
    stack.receiver.wait_for_id(refused_id, WAIT)

    # 7. Credentials in the callback URL.
    password = "pw-" + random.token_hex(8)
    transcript.callback_urls["callback URL password"] = password
    with_credentials = f"http://user:{password}@{stack.receiver.url.split('://', 1)[1]}"
    answer = _post(stack, request("hyg-creds", callback_url=with_credentials), headers=bearer)
    transcript.exchanges["credentials in callback URL"] = _exchange(
        "credentials in callback URL", answer
    )
    # Let poll_job write its last line (it logs after the receiver has answered).
    _wait_until(
        lambda: any(
            e.get("message") == "callback delivered" and e.get("request_id") == refused_id
            for e in poll_job.logs()
        )
    )


def _play_wrong_datocms_token(stack: LocalStack, transcript: Transcript, wrong: str) -> None:
    transcript.authorizations += [f"Bearer {stack.secrets.intake_token}", f"Bearer {wrong}"]
    stack.simulator.add_track(UPLOAD, "hyg-502")
    answer = _post(
        stack,
        {"upload_id": UPLOAD, "upload_track_id": "hyg-502"},
        headers={"Authorization": f"Bearer {stack.secrets.intake_token}"},
    )
    transcript.exchanges["wrong DatoCMS token"] = _exchange("wrong DatoCMS token", answer)


def _collect(label: str, stack: LocalStack, transcript: Transcript) -> None:
    for name, function in stack.functions.items():
        transcript.outputs[f"{label}/{name}"] = function.output()
        transcript.logs[f"{label}/{name}"] = function.logs()
    transcript.deliveries += stack.receiver.deliveries


@pytest.fixture(scope="module")
def transcript() -> Iterator[Transcript]:
    record = Transcript()
    with loopback_guard() as refused, pytest.MonkeyPatch.context() as patch:
        original = simulator_module._api_error_body

        def recording(*args: Any, **kwargs: Any) -> dict[str, Any]:
            body: dict[str, Any] = original(*args, **kwargs)
            record.upstream_errors.append(body)
            return body

        patch.setattr(simulator_module, "_api_error_body", recording)

        main_secrets = Secrets()
        record.secrets.update(secret_forms("main stack", main_secrets))
        with LocalStack(env=STACK_ENV, keys=main_secrets) as stack:
            try:
                _play_main_stack(stack, record)
            finally:
                _collect("main", stack, record)

        other_secrets = Secrets()
        wrong = "wrong-" + random.token_hex(16)
        record.secrets.update(secret_forms("second stack", other_secrets))
        record.secrets["the wrong DatoCMS token"] = wrong
        env = {**STACK_ENV, "DATOCMS_API_TOKEN": wrong}
        with LocalStack(env=env, keys=other_secrets) as stack:
            try:
                _play_wrong_datocms_token(stack, record, wrong)
            finally:
                _collect("wrong-token", stack, record)
    assert refused == [], "the test process tried to reach a non-loopback address"
    yield record


def _leaks(transcript: Transcript, needles: dict[str, str]) -> list[str]:
    return [
        f"{what} in {where}"
        for where, text in transcript.texts().items()
        for what, needle in needles.items()
        if needle and needle in text
    ]


# --- the scenarios happened (so that finding nothing means something) ----------------


def test_every_scenario_got_the_answer_it_was_built_for(transcript: Transcript) -> None:
    statuses = {name: exchange.status for name, exchange in transcript.exchanges.items()}
    assert statuses == {
        "deleted with callback": 202,
        "wrong token": 401,
        "basic auth": 202,
        "callback retried": 202,
        "dead letter": 202,
        "refused in sandbox": 422,
        "credentials in callback URL": 400,
        "wrong DatoCMS token": 502,
    }


def test_callbacks_were_delivered_retried_and_dead_lettered_as_planned(
    transcript: Transcript,
) -> None:
    def attempts(scenario: str) -> list[Delivery]:
        request_id = transcript.exchanges[scenario].request_id
        return [d for d in transcript.deliveries if d.headers.get("webhook-id") == request_id]

    assert [(d.verified, d.answered) for d in attempts("deleted with callback")] == [(True, 204)]
    assert [(d.verified, d.answered) for d in attempts("callback retried")] == [
        (True, 500),
        (True, 204),
    ]
    assert [d.answered for d in attempts("dead letter")] == [503, 503, 503]
    assert all(d.path.startswith("/hooks/p-") for d in transcript.deliveries)
    dead_id = transcript.exchanges["dead letter"].request_id
    [dead] = [
        e
        for e in transcript.logs["main/poll_job"]
        if e.get("message") == "callback dead-lettered" and e.get("request_id") == dead_id
    ]
    assert dead["severity"] == "ERROR"
    assert dead["callback"]["data"]["request_id"] == dead_id  # the whole body is kept
    assert dead["target"] == "http://127.0.0.1"  # only scheme://host


def test_datocms_answered_with_error_bodies_that_the_service_could_have_echoed(
    transcript: Transcript,
) -> None:
    codes = {body["data"][0]["attributes"]["code"] for body in transcript.upstream_errors}
    assert {"IMMUTABLE_UPLOAD_TRACKS_IN_SANDBOX_ENVIRONMENT", "INVALID_AUTHORIZATION_HEADER"} <= (
        codes
    )
    assert all(body["data"][0]["id"] for body in transcript.upstream_errors)


# --- nothing leaked ----------------------------------------------------------------


def test_no_answer_or_log_line_contains_a_secret(transcript: Transcript) -> None:
    assert sorted(name for name, text in transcript.outputs.items() if text) == [
        "main/delete_track",
        "main/poll_job",
        "wrong-token/delete_track",
    ]
    assert _leaks(transcript, transcript.secrets) == []


def test_no_answer_or_log_line_contains_an_authorization_header_value(
    transcript: Transcript,
) -> None:
    needles = {f"Authorization value #{i}": v for i, v in enumerate(transcript.authorizations)}
    assert len(needles) >= 6
    assert _leaks(transcript, needles) == []


def test_no_answer_or_log_line_contains_a_webhook_signature(transcript: Transcript) -> None:
    needles: dict[str, str] = {}
    for number, delivery in enumerate(transcript.deliveries):
        value = delivery.headers["webhook-signature"]
        needles[f"webhook-signature #{number}"] = value
        for part in value.split(" "):
            needles[f"signature {part[:12]}... of delivery #{number}"] = part.split(",", 1)[1]
    assert len(transcript.deliveries) >= 7
    assert _leaks(transcript, needles) == []


def test_callback_urls_appear_only_as_scheme_and_host(transcript: Transcript) -> None:
    assert _leaks(transcript, transcript.callback_urls) == []
    targets = {
        entry["target"]
        for entries in transcript.logs.values()
        for entry in entries
        if "target" in entry
    }
    assert targets == {"http://127.0.0.1"}


def test_no_callback_body_contains_a_secret_or_a_signature(transcript: Transcript) -> None:
    bodies = "\n".join(d.body.decode() for d in transcript.deliveries)
    leaked = [what for what, value in transcript.secrets.items() if value in bodies]
    leaked += [v for v in transcript.authorizations if v in bodies]
    leaked += [
        d.headers["webhook-signature"]
        for d in transcript.deliveries
        if d.headers["webhook-signature"] in bodies
    ]
    assert leaked == []


def _whole_token(needle: str, text: str) -> bool:
    return re.search(rf"(?<![0-9A-Za-z]){re.escape(needle)}(?![0-9A-Za-z])", text) is not None


def test_datocms_error_bodies_are_never_echoed_to_callers(transcript: Transcript) -> None:
    answers = {name: exchange.body for name, exchange in transcript.exchanges.items()}
    echoed = []
    for body in transcript.upstream_errors:
        error = body["data"][0]
        attributes = error["attributes"]
        for name, text in answers.items():
            if _whole_token(error["id"], text):
                echoed.append(f"error id {error['id']} in the answer to {name}")
            if attributes.get("doc_url") and attributes["doc_url"] in text:
                echoed.append(f"doc_url in the answer to {name}")
            if json.dumps(body) in text or '"api_error"' in text or "doc_url" in text:
                echoed.append(f"an error body in the answer to {name}")
    assert echoed == []
    assert "INVALID_AUTHORIZATION_HEADER" not in answers["wrong DatoCMS token"]


def test_datocms_error_ids_and_doc_urls_are_not_logged(transcript: Transcript) -> None:
    logged = []
    for body in transcript.upstream_errors:
        error = body["data"][0]
        for name, text in transcript.outputs.items():
            if _whole_token(error["id"], text):
                logged.append(f"error id {error['id']} in {name}")
            if "doc_url" in text or "datocms.com/docs" in text:
                logged.append(f"a doc_url in {name}")
    assert logged == []
