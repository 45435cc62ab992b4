"""The production cold-start baseline: a tutorial function creating one Cloud Task.

What the Cloud Tasks quickstarts show: one `functions_framework` HTTP function,
a `google-cloud-tasks` client made at import, one `create_task` per call (an
HTTP target task carrying the request's body). Against the emulator when
`CLOUD_TASKS_EMULATOR_HOST` is set (gRPC without TLS), as `adapters.cloud_tasks` does.
"""

import os
from datetime import UTC, datetime, timedelta

import functions_framework
from google.cloud import tasks_v2


def _client() -> tasks_v2.CloudTasksClient:
    host = os.environ.get("CLOUD_TASKS_EMULATOR_HOST")
    if not host:
        return tasks_v2.CloudTasksClient()
    import grpc  # noqa: PLC0415
    from google.cloud.tasks_v2.services.cloud_tasks.transports import (  # noqa: PLC0415
        CloudTasksGrpcTransport,
    )

    return tasks_v2.CloudTasksClient(
        transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(host))
    )


client = _client()
QUEUE = os.environ["TUTORIAL_QUEUE"]
TARGET = os.environ["TUTORIAL_TARGET_URL"]


@functions_framework.http
def create_task(request: object) -> tuple[str, int]:
    body = request.get_data()  # type: ignore[attr-defined]
    task = tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST, url=TARGET, body=body
        ),
        # Later than the benchmark lasts, like the service's first poll there.
        schedule_time=datetime.now(UTC) + timedelta(seconds=600),
    )
    client.create_task(parent=QUEUE, task=task)
    return "queued", 200
