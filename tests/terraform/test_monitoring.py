"""terraform/monitoring.tf held against the log lines the functions really write.

A module fixture runs the local stack (three `functions-framework` processes)
through the stories the metrics count: a deletion called back, one without a
callback, a track that is not there, a callback retried then dead-lettered, and
a poison event. Each line is turned into the `LogEntry` Cloud Logging makes of it
(special fields moved out of `jsonPayload`), and every logs-based metric's
filter, value extractor and label extractors are evaluated against those entries:
each matches real lines, extracts real values, counts each request once, and
reads no secret-bearing field. The alert policies read only those metrics.
"""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
import requests
from hcl2.utils import SerializationOptions

from adapters.log import LABELS, OPERATION, PRODUCER
from core.record import FINAL
from devstack.stack import LocalStack
from tests.e2e.waiting import wait_until

MODULE = Path(__file__).resolve().parents[2] / "terraform"
_PARSE = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
#: Cloud Logging moves these out of `jsonPayload` (its structured-logging special fields).
SPECIAL = {
    "severity": "severity",
    "time": "timestamp",
    LABELS: "labels",
    OPERATION: "operation",
    "logging.googleapis.com/trace": "trace",
    "logging.googleapis.com/spanId": "spanId",
}
#: Field names that carry, or would carry, a secret or a full callback URL.
SECRET_BEARING = re.compile(
    r"authorization|token|secret|signature|password|api_key|callback_url|sealed|webhook",
    re.IGNORECASE,
)
_CLAUSE = re.compile(r'^([A-Za-z_][\w.]*)="([^"]*)"$')
_EXTRACT = re.compile(r"^EXTRACT\(([A-Za-z_][\w.]*)\)$")


# --------------------------------------------------------------------------- the module


def monitoring() -> dict[str, dict[str, dict[str, Any]]]:
    parsed = hcl2.loads((MODULE / "monitoring.tf").read_text(), serialization_options=_PARSE)
    resources: dict[str, dict[str, dict[str, Any]]] = {}
    for block in parsed["resource"]:
        for type_, named in block.items():
            resources.setdefault(type_, {}).update(named)
    return resources


def metrics() -> dict[str, dict[str, Any]]:
    return monitoring()["google_logging_metric"]


def clauses(metric: dict[str, Any]) -> list[tuple[str, str]]:
    """The filter's `field="value"` clauses after the common `local.log_source` part."""
    head, *rest = metric["filter"].replace('\\"', '"').split(" AND ")
    assert head == "${local.log_source}", "every metric reads only the service's own logs"
    parsed = []
    for clause in rest:
        match = _CLAUSE.match(clause.strip())
        assert match, f"unsupported filter clause (extend this test's evaluator): {clause}"
        parsed.append((match.group(1), match.group(2)))
    return parsed


def extracted_fields(metric: dict[str, Any]) -> list[str]:
    extractors = [metric.get("value_extractor"), *metric.get("label_extractors", {}).values()]
    fields = []
    for extractor in filter(None, extractors):
        match = _EXTRACT.match(extractor)
        assert match, f"unsupported extractor: {extractor}"
        fields.append(match.group(1))
    return fields


# --------------------------------------------------------------------------- log entries


def log_entry(line: dict[str, Any]) -> dict[str, Any]:
    """The `LogEntry` Cloud Logging makes of one structured stdout line."""
    entry: dict[str, Any] = {"jsonPayload": {}}
    for key, value in line.items():
        if key in SPECIAL:
            entry[SPECIAL[key]] = value
        else:
            entry["jsonPayload"][key] = value
    return entry


def field(entry: dict[str, Any], path: str) -> Any:
    value: Any = entry
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def matching(metric: dict[str, Any], entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    wanted = clauses(metric)
    return [e for e in entries if all(str(field(e, f)) == v for f, v in wanted)]


# --------------------------------------------------------------------------- the run


class Run:
    def __init__(self, stack: LocalStack, request_ids: dict[str, str]) -> None:
        self.secrets = stack.secrets.all()
        self.request_ids = request_ids
        self.lines = stack.logs()
        self.entries = [log_entry(line) for line in self.lines]


def _submit(stack: LocalStack, body: dict[str, Any]) -> str:
    answer = stack.submit(body)
    assert answer.status_code in (200, 202), answer.text
    request_id: str = answer.json()["request_id"]
    return request_id


def _finished(stack: LocalStack, request_id: str, *, callback: bool) -> bool:
    view = stack.status(request_id).json()
    if not callback:
        return bool(view["done"])
    return view["done"] and view["callback"]["state"] in ("delivered", "dead_letter")


def _wait_finished(stack: LocalStack, story: str, request_id: str, *, callback: bool) -> None:
    wait_until(story, lambda: _finished(stack, request_id, callback=callback), timeout=20)


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    with LocalStack(with_event_function=True, env={"CALLBACK_MAX_ATTEMPTS": "2"}) as stack:
        upload = "up-" + secrets.token_hex(4)
        for track in ("called-back", "silent", "dead-letter"):
            stack.simulator.add_track(upload, track, job_seconds=0.3)
        ids: dict[str, str] = {}
        for story, track, callback in (
            ("deleted", "called-back", True),
            ("no_callback", "silent", False),
            ("not_found", "never-there", True),
            ("dead_letter", "dead-letter", True),
        ):
            if story == "dead_letter":
                stack.receiver.fail_next(503, times=2)
            body: dict[str, Any] = {"upload_id": upload, "upload_track_id": track}
            if callback:
                body["callback_url"] = stack.receiver.url
            ids[story] = _submit(stack, body)
            _wait_finished(stack, story, ids[story], callback=callback)
        poison = requests.post(
            stack.functions["delete_track_event"].url,
            data=b"not json",
            headers={
                "ce-id": "evt-poison",
                "ce-source": "//e2e/tests",
                "ce-specversion": "1.0",
                "ce-type": "com.example.track.deletion.requested",
                "Content-Type": "text/plain",
            },
            timeout=10,
        )
        assert poison.ok
        wait_until(
            "the logs to settle",
            lambda: any(e.get("event") == "event_dropped" for e in stack.logs()),
        )
        yield Run(stack, ids)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", sorted(metrics()))
def test_each_metric_filter_matches_real_lines_and_extracts_real_values(
    run: Run, name: str
) -> None:
    metric = metrics()[name]
    matched = matching(metric, run.entries)

    assert matched, f"{name}: its filter matches no line the code writes"
    if "value_extractor" in metric:
        path = _EXTRACT.match(metric["value_extractor"])
        assert path is not None
        values = [field(e, path.group(1)) for e in matched]
        assert all(isinstance(v, int | float) and v >= 0 for v in values), values
    for label, extractor in metric.get("label_extractors", {}).items():
        path = _EXTRACT.match(extractor)
        assert path is not None
        values = {field(e, path.group(1)) for e in matched}
        assert all(isinstance(v, str) and v for v in values), (label, values)
        declared = {d["key"] for d in metric["metric_descriptor"][0]["labels"]}
        assert label in declared


@pytest.mark.parametrize("name", sorted(metrics()))
def test_no_metric_reads_a_secret_bearing_field_or_matches_a_line_with_a_secret(
    run: Run, name: str
) -> None:
    metric = metrics()[name]
    read = [f for f, _ in clauses(metric)] + extracted_fields(metric)

    assert not [f for f in read if SECRET_BEARING.search(f)]
    for entry in matching(metric, run.entries):
        text = json.dumps(entry)
        assert not [s for s in run.secrets if s in text]
        assert not [k for k in entry["jsonPayload"] if SECRET_BEARING.search(k)]


def test_outcomes_are_counted_once_per_request_with_the_final_status(run: Run) -> None:
    finished = matching(metrics()["deletions"], run.entries)
    by_request = Counter(e["jsonPayload"]["request_id"] for e in finished)
    outcomes = {e["jsonPayload"]["request_id"]: e["labels"]["outcome"] for e in finished}

    assert by_request == Counter(set(run.request_ids.values()))
    assert {story: outcomes[rid] for story, rid in run.request_ids.items()} == {
        "deleted": "deleted",
        "no_callback": "deleted",
        "not_found": "not_found",
        "dead_letter": "deleted",
    }
    assert set(outcomes.values()) <= FINAL
    accepted = matching(metrics()["requests_accepted"], run.entries)
    assert sorted(e["jsonPayload"]["request_id"] for e in accepted) == sorted(
        run.request_ids.values()
    )


def test_callback_attempts_and_dead_letters_count_what_happened(run: Run) -> None:
    attempts = matching(metrics()["callback_attempts"], run.entries)
    dead = matching(metrics()["dead_letters"], run.entries)
    results = Counter(e["jsonPayload"]["callback_result"] for e in attempts)

    assert results == {"delivered": 2, "retry": 1, "dead_letter": 1}
    assert [e["jsonPayload"]["request_id"] for e in dead] == [run.request_ids["dead_letter"]]
    assert dead[0]["severity"] == "ERROR"


def test_each_request_is_one_operation_first_at_intake_and_last_at_its_final_line(
    run: Run,
) -> None:
    for story, request_id in run.request_ids.items():
        lines = [e for e in run.entries if e["jsonPayload"].get("request_id") == request_id]
        operations = [e.get("operation") for e in lines]
        assert all(
            op and op["id"] == request_id and op["producer"] == PRODUCER for op in operations
        )
        firsts = [e for e in lines if e["operation"].get("first")]
        lasts = [e for e in lines if e["operation"].get("last")]
        assert [e["jsonPayload"]["event"] for e in firsts] == ["request_accepted"], story
        assert len(lasts) == 1, story
        expected_last = {
            "deleted": "callback delivered",
            "no_callback": "request finished",
            "not_found": "callback delivered",
            "dead_letter": "callback dead-lettered",
        }[story]
        assert lasts[0]["jsonPayload"]["message"] == expected_last
        functions = {e["labels"]["function"] for e in lines}
        assert functions <= {"delete_track", "poll_job"} and "delete_track" in functions


def test_alert_policies_read_only_the_modules_metrics_and_real_outcomes() -> None:
    resources = monitoring()
    text = (MODULE / "monitoring.tf").read_text()
    policies = resources["google_monitoring_alert_policy"]

    assert set(policies) == {"dead_letter", "failure_rate", "no_success"}
    for name, policy in policies.items():
        assert policy["notification_channels"] == "${var.alert_notification_channels}", name
        for condition in policy["conditions"]:
            body = next(v for k, v in condition.items() if k.startswith("condition_"))[0]
            for key in ("filter", "denominator_filter"):
                if key in body:
                    types = re.findall(r"local\.metric_types\.(\w+)", body[key])
                    assert types and set(types) <= set(metrics()), (name, body[key])
    failure_outcomes = re.search(r"failure_outcomes = \[([^\]]*)\]", text)
    assert failure_outcomes is not None
    assert set(re.findall(r'"(\w+)"', failure_outcomes.group(1))) <= FINAL
    assert 'metric.label.outcome=\\"deleted\\"' in text


def test_notification_channels_default_to_none() -> None:
    variables = hcl2.loads((MODULE / "variables.tf").read_text(), serialization_options=_PARSE)
    declared = {k: v for block in variables["variable"] for k, v in block.items()}

    assert declared["alert_notification_channels"]["default"] == []
    assert declared["create_dashboard"]["default"] is False
