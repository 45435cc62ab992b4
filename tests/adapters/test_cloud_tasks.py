"""`CloudTasksQueue` against a recording fake of `CloudTasksClient`.

What the emulator cannot show (name de-duplication, OIDC, error mapping) is
proved here; `test_cloud_tasks_emulator.py` proves the wire format.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as api_exceptions

from adapters.cloud_tasks import RPC_TIMEOUT, CloudTasksQueue
from adapters.tasks import QueueRole, Task, TaskQueue
from core.errors import Misconfigured, QueueUnavailable
from core.settings import Settings

NOW = datetime(2026, 11, 28, 15, 4, 5, 123456, tzinfo=UTC)
POLL_URL = "https://europe-west1-proj.cloudfunctions.net/poll_job"
ACCOUNT = "tasks-invoker@proj.iam.gserviceaccount.com"
STEPS_PATH = "projects/proj/locations/europe-west1/queues/steps"
CALLBACKS_PATH = "projects/proj/locations/europe-west1/queues/callbacks"
BODY = b'{"kind":"poll","job_id":"4235","sig":"abc"}'


class RecordingClient:
    """Records `create_task` calls; a repeated name raises `AlreadyExists`.

    `failures` are raised, in order, by the next calls (before anything is created).
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.created: list[dict[str, Any]] = []
        self.failures: list[Exception] = []

    @staticmethod
    def queue_path(project: str, location: str, queue: str) -> str:
        return f"projects/{project}/locations/{location}/queues/{queue}"

    @staticmethod
    def task_path(project: str, location: str, queue: str, task: str) -> str:
        return f"projects/{project}/locations/{location}/queues/{queue}/tasks/{task}"

    def create_task(self, *, parent: str, task: dict[str, Any], timeout: float) -> dict[str, Any]:
        call = {"parent": parent, "task": task, "timeout": timeout}
        self.calls.append(call)
        if self.failures:
            raise self.failures.pop(0)
        if any(c["task"]["name"] == task["name"] for c in self.created):
            raise api_exceptions.AlreadyExists(f"Requested entity already exists: {task['name']}")
        self.created.append(call)
        return task


def make_queue(
    client: RecordingClient | None, *, sleeps: list[float] | None = None, **overrides: Any
) -> CloudTasksQueue:
    """The queue under test; `client=None` builds a real client on first use."""
    record = sleeps if sleeps is not None else []
    options: dict[str, Any] = {
        "project": "proj",
        "location": "europe-west1",
        "steps_queue": "steps",
        "callbacks_queue": "callbacks",
        "target_url": POLL_URL,
        "service_account": ACCOUNT,
        "client": client,
        "clock": lambda: NOW,
        "sleep": record.append,
        **overrides,
    }
    return CloudTasksQueue(**options)


@pytest.fixture
def client() -> RecordingClient:
    return RecordingClient()


def only_task(client: RecordingClient) -> dict[str, Any]:
    assert len(client.created) == 1
    task: dict[str, Any] = client.created[0]["task"]
    return task


def test_cloud_tasks_queue_satisfies_the_task_queue_port(client: RecordingClient) -> None:
    queue: TaskQueue = make_queue(client)

    assert queue.enqueue(Task(QueueRole.STEPS, BODY), delay=0, name="a") is True


def test_task_is_named_by_its_full_path_and_created_in_the_steps_queue(
    client: RecordingClient,
) -> None:
    created = make_queue(client).enqueue(Task(QueueRole.STEPS, BODY), delay=1, name="9f2c-poll-1")

    assert created is True
    assert client.created[0]["parent"] == STEPS_PATH
    assert only_task(client)["name"] == f"{STEPS_PATH}/tasks/9f2c-poll-1"


def test_callback_tasks_go_to_the_callbacks_queue(client: RecordingClient) -> None:
    make_queue(client).enqueue(Task(QueueRole.CALLBACKS, BODY), delay=5, name="9f2c-callback-1")

    assert client.created[0]["parent"] == CALLBACKS_PATH
    assert only_task(client)["name"] == f"{CALLBACKS_PATH}/tasks/9f2c-callback-1"


def test_a_repeated_name_returns_false_and_creates_nothing(client: RecordingClient) -> None:
    queue = make_queue(client)
    task = Task(QueueRole.STEPS, BODY)

    first = queue.enqueue(task, delay=1, name="9f2c-poll-2")
    second = queue.enqueue(task, delay=1, name="9f2c-poll-2")

    assert (first, second) == (True, False)
    assert len(client.calls) == 2
    assert len(client.created) == 1


def test_the_same_short_name_in_the_other_queue_is_a_different_task(
    client: RecordingClient,
) -> None:
    queue = make_queue(client)

    steps = queue.enqueue(Task(QueueRole.STEPS, BODY), delay=0, name="same")
    callbacks = queue.enqueue(Task(QueueRole.CALLBACKS, BODY), delay=0, name="same")

    assert (steps, callbacks) == (True, True)


def test_http_request_posts_json_to_the_target_url(client: RecordingClient) -> None:
    make_queue(client).enqueue(Task(QueueRole.STEPS, BODY), delay=0, name="a")

    http_request = only_task(client)["http_request"]
    assert http_request["url"] == POLL_URL
    assert http_request["http_method"] == "POST"
    assert http_request["headers"] == {"Content-Type": "application/json"}


def test_body_is_passed_unchanged(client: RecordingClient) -> None:
    body = b'{"a":"\xc3\xa9"}\x00\xff'

    make_queue(client).enqueue(Task(QueueRole.STEPS, body), delay=0, name="a")

    assert only_task(client)["http_request"]["body"] is body


@pytest.mark.parametrize("delay", [0, 1, 2.5, 0.000001, 3600, 30 * 24 * 3600])
def test_schedule_time_is_the_clock_plus_the_delay(client: RecordingClient, delay: float) -> None:
    make_queue(client).enqueue(Task(QueueRole.STEPS, BODY), delay=delay, name="a")

    scheduled = only_task(client)["schedule_time"].ToDatetime(tzinfo=UTC)
    assert scheduled == NOW + timedelta(seconds=delay)


def test_schedule_time_of_a_clock_in_another_time_zone_is_the_same_instant(
    client: RecordingClient,
) -> None:
    local = NOW.astimezone(timezone(timedelta(hours=-5)))

    make_queue(client, clock=lambda: local).enqueue(Task(QueueRole.STEPS, BODY), delay=10, name="a")

    scheduled = only_task(client)["schedule_time"].ToDatetime(tzinfo=UTC)
    assert scheduled == NOW + timedelta(seconds=10)


def test_a_negative_delay_schedules_the_task_now(client: RecordingClient) -> None:
    make_queue(client).enqueue(Task(QueueRole.STEPS, BODY), delay=-3, name="a")

    assert only_task(client)["schedule_time"].ToDatetime(tzinfo=UTC) == NOW


@pytest.mark.parametrize("delay", [float("nan"), float("inf"), 30 * 24 * 3600 + 1])
def test_a_delay_that_is_not_finite_or_beyond_30_days_is_rejected(
    client: RecordingClient, delay: float
) -> None:
    with pytest.raises(ValueError, match="delay"):
        make_queue(client).enqueue(Task(QueueRole.STEPS, BODY), delay=delay, name="a")

    assert client.calls == []


def test_a_naive_clock_is_rejected(client: RecordingClient) -> None:
    queue = make_queue(client, clock=lambda: NOW.replace(tzinfo=None))

    with pytest.raises(ValueError, match="aware"):
        queue.enqueue(Task(QueueRole.STEPS, BODY), delay=0, name="a")

    assert client.calls == []


def test_dispatch_deadline_defaults_to_60_seconds(client: RecordingClient) -> None:
    make_queue(client).enqueue(Task(QueueRole.STEPS, BODY), delay=0, name="a")

    assert only_task(client)["dispatch_deadline"].ToTimedelta() == timedelta(seconds=60)


def test_dispatch_deadline_is_configurable(client: RecordingClient) -> None:
    queue = make_queue(client, dispatch_deadline=120.5)

    queue.enqueue(Task(QueueRole.STEPS, BODY), delay=0, name="a")

    assert only_task(client)["dispatch_deadline"].ToTimedelta() == timedelta(seconds=120.5)


@pytest.mark.parametrize("deadline", [14.9, 1800.1, 0, -1])
def test_a_dispatch_deadline_outside_cloud_tasks_limits_is_rejected(deadline: float) -> None:
    with pytest.raises(ValueError, match="dispatch_deadline"):
        make_queue(RecordingClient(), dispatch_deadline=deadline)


def test_oidc_token_names_the_service_account_with_the_target_url_as_audience(
    client: RecordingClient,
) -> None:
    make_queue(client).enqueue(Task(QueueRole.CALLBACKS, BODY), delay=0, name="a")

    assert only_task(client)["http_request"]["oidc_token"] == {
        "service_account_email": ACCOUNT,
        "audience": POLL_URL,
    }


@pytest.mark.parametrize("service_account", [None, ""])
def test_no_oidc_token_without_a_service_account(
    client: RecordingClient, service_account: str | None
) -> None:
    queue = make_queue(client, service_account=service_account)

    queue.enqueue(Task(QueueRole.STEPS, BODY), delay=0, name="a")

    assert "oidc_token" not in only_task(client)["http_request"]


def test_create_task_gets_an_explicit_timeout(client: RecordingClient) -> None:
    make_queue(client).enqueue(Task(QueueRole.STEPS, BODY), delay=0, name="a")

    assert client.calls[0]["timeout"] == RPC_TIMEOUT


@pytest.mark.parametrize(
    "name",
    ["", "a/b", "a b", "a.b", "tâche", "a\n", "\na", "a" * 501, "../steps", "a:b"],
)
def test_invalid_names_are_rejected_before_any_call(client: RecordingClient, name: str) -> None:
    with pytest.raises(ValueError, match="task name"):
        make_queue(client).enqueue(Task(QueueRole.STEPS, BODY), delay=0, name=name)

    assert client.calls == []


@pytest.mark.parametrize("name", ["a", "A-z_09", "x" * 500, "9f2c0d1e-poll-12"])
def test_names_of_letters_digits_dash_and_underscore_up_to_500_are_accepted(
    client: RecordingClient, name: str
) -> None:
    assert make_queue(client).enqueue(Task(QueueRole.STEPS, BODY), delay=0, name=name) is True


def test_transient_unavailable_is_retried_briefly_then_succeeds(client: RecordingClient) -> None:
    sleeps: list[float] = []
    client.failures = [
        api_exceptions.ServiceUnavailable("Socket closed"),
        api_exceptions.ServiceUnavailable("Socket closed"),
    ]

    created = make_queue(client, sleeps=sleeps).enqueue(
        Task(QueueRole.STEPS, BODY), delay=0, name="a"
    )

    assert created is True
    assert len(client.calls) == 3
    assert sleeps == [0.1, 0.4]
    assert client.calls[0]["task"] == client.calls[2]["task"]


def test_a_retry_that_finds_its_own_earlier_attempt_returns_false(
    client: RecordingClient,
) -> None:
    client.created.append({"task": {"name": f"{STEPS_PATH}/tasks/a"}})
    client.failures = [api_exceptions.ServiceUnavailable("connection reset")]

    created = make_queue(client).enqueue(Task(QueueRole.STEPS, BODY), delay=0, name="a")

    assert created is False
    assert len(client.calls) == 2


def test_persistent_unavailable_raises_queue_unavailable(client: RecordingClient) -> None:
    sleeps: list[float] = []
    client.failures = [api_exceptions.ServiceUnavailable("down") for _ in range(3)]

    with pytest.raises(QueueUnavailable, match="ServiceUnavailable, 3 attempts"):
        make_queue(client, sleeps=sleeps).enqueue(Task(QueueRole.STEPS, BODY), delay=0, name="a")

    assert len(client.calls) == 3
    assert sleeps == [0.1, 0.4]
    assert client.created == []


@pytest.mark.parametrize(
    "error",
    [
        api_exceptions.DeadlineExceeded("Deadline Exceeded"),
        api_exceptions.PermissionDenied("lacks cloudtasks.tasks.create on projects/proj"),
        api_exceptions.NotFound("Queue does not exist: projects/proj/.../queues/steps"),
        api_exceptions.InvalidArgument("bad schedule_time"),
        api_exceptions.InternalServerError("internal"),
        api_exceptions.RetryError("Timeout of 20.0s exceeded", cause=None),
    ],
)
def test_other_errors_raise_queue_unavailable_at_once_without_the_server_text(
    client: RecordingClient, error: Exception
) -> None:
    sleeps: list[float] = []
    client.failures = [error]

    with pytest.raises(QueueUnavailable) as raised:
        make_queue(client, sleeps=sleeps).enqueue(Task(QueueRole.STEPS, BODY), delay=0, name="a")

    expected = (
        f"Cloud Tasks did not create task a on queue steps ({type(error).__name__}, 1 attempt)"
    )
    message = str(raised.value)
    assert message == expected
    assert "projects/" not in message
    assert raised.value.__cause__ is error
    assert len(client.calls) == 1
    assert sleeps == []


def test_a_raw_grpc_error_raises_queue_unavailable(client: RecordingClient) -> None:
    import grpc

    class RawRpcError(grpc.RpcError):
        pass

    client.failures = [RawRpcError()]

    with pytest.raises(QueueUnavailable, match="RawRpcError"):
        make_queue(client).enqueue(Task(QueueRole.STEPS, BODY), delay=0, name="a")


def test_missing_google_credentials_raise_queue_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    asked: list[bool] = []

    def no_credentials(*args: Any, **kwargs: Any) -> Any:
        asked.append(True)
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    queue = make_queue(None, service_account=None)

    with pytest.raises(QueueUnavailable, match="no usable Google credentials"):
        queue.enqueue(Task(QueueRole.STEPS, BODY), delay=0, name="a")

    assert asked == [True]


def test_the_client_is_created_once_for_concurrent_first_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created: list[RecordingClient] = []
    start = threading.Barrier(8)

    def slow_factory(self: CloudTasksQueue) -> RecordingClient:
        created.append(RecordingClient())
        threading.Event().wait(0.05)
        return created[-1]

    monkeypatch.setattr(CloudTasksQueue, "_create_client", slow_factory)
    queue = make_queue(None, service_account=None, emulator_host="127.0.0.1:1")
    results: list[bool] = []

    def enqueue(index: int) -> None:
        start.wait()
        results.append(queue.enqueue(Task(QueueRole.STEPS, BODY), delay=0, name=f"t{index}"))

    threads = [threading.Thread(target=enqueue, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(created) == 1
    assert results == [True] * 8
    assert len(created[0].created) == 8
    assert queue.client is created[0]


def test_close_leaves_an_injected_client_alone(client: RecordingClient) -> None:
    queue = make_queue(client)

    queue.close()

    assert queue.client is client


def test_from_settings_reads_the_tasks_variables() -> None:
    settings = Settings.from_env(
        {
            "TASKS_BACKEND": "cloudtasks",
            "TASKS_PROJECT": "proj",
            "TASKS_LOCATION": "europe-west1",
            "TASKS_QUEUE": "steps",
            "CALLBACK_QUEUE": "callbacks",
            "POLL_URL": POLL_URL,
            "TASKS_SERVICE_ACCOUNT": ACCOUNT,
            "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:9022",
        }
    )

    queue = CloudTasksQueue.from_settings(settings)

    assert (queue.project, queue.location) == ("proj", "europe-west1")
    assert (queue.steps_queue, queue.callbacks_queue) == ("steps", "callbacks")
    assert queue.target_url == POLL_URL
    assert queue.service_account == ACCOUNT
    assert queue.emulator_host == "127.0.0.1:9022"
    assert queue.dispatch_deadline == 60.0


def test_from_settings_sends_callbacks_to_the_tasks_queue_without_callback_queue() -> None:
    settings = Settings.from_env(
        {"TASKS_PROJECT": "proj", "TASKS_LOCATION": "europe-west1", "TASKS_QUEUE": "steps"}
    )

    queue = CloudTasksQueue.from_settings(settings)

    assert queue.callbacks_queue == "steps"
    assert queue.service_account is None
    assert queue.emulator_host is None
    assert queue.target_url == "http://127.0.0.1:8081/"


def test_from_settings_names_every_missing_variable() -> None:
    settings = Settings.from_env({"TASKS_LOCATION": "europe-west1"})

    with pytest.raises(Misconfigured) as raised:
        CloudTasksQueue.from_settings(settings)

    assert raised.value.variables == ("TASKS_PROJECT", "TASKS_QUEUE")


@pytest.mark.parametrize("url", ["/poll", "ftp://host/poll", "poll_job", ""])
def test_a_target_url_that_is_not_absolute_http_is_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="target_url"):
        make_queue(RecordingClient(), target_url=url)


def test_importing_the_adapter_does_not_load_the_client_library() -> None:
    code = (
        "import sys, adapters.cloud_tasks\n"
        "heavy = ['google.cloud.tasks_v2', 'grpc', 'google.api_core', 'google.protobuf']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    root = Path(__file__).resolve().parents[2]

    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"
