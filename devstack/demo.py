"""`make demo`: one deletion, end to end, on the local stack, told as a timeline.

Starts the DatoCMS simulator, a callback receiver that verifies signatures with
the `standardwebhooks` library, and both functions as real `functions-framework`
processes; submits one deletion; prints what happened; stops everything.
Exits 0 when a verified `upload_track.deleted` callback arrived.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from devstack.datocms_simulator import DEMO_TRACK_ID as TRACK_ID
from devstack.datocms_simulator import DEMO_UPLOAD_ID as UPLOAD_ID
from devstack.stack import LocalStack

JOB_SECONDS = 2.5


def settled_status(stack: LocalStack, request_id: str) -> dict[str, Any]:
    """The status resource once poll_job has recorded the delivery (just after the 2xx)."""
    view: dict[str, Any] = stack.status(request_id).json()
    waited = time.monotonic()
    while view["callback"]["state"] == "pending" and time.monotonic() - waited < 5:
        time.sleep(0.05)
        view = stack.status(request_id).json()
    return view


def show_status(label: str, view: dict[str, Any]) -> None:
    callback = view["callback"]
    print(
        f"  {label:>22}: status {view['status']}, done {view['done']}, polls {view['polls']}, "
        f"callback {callback['state']} ({callback['attempts']} attempt(s))"
    )


def main() -> int:
    print("Starting the local stack: DatoCMS simulator, callback receiver, delete_track, poll_job")
    with LocalStack() as stack:
        stack.simulator.add_track(
            UPLOAD_ID, TRACK_ID, name="Italiano", language_code="it-IT", job_seconds=JOB_SECONDS
        )
        request = {
            "upload_id": UPLOAD_ID,
            "upload_track_id": TRACK_ID,
            "callback_url": stack.receiver.url,
            "idempotency_key": "demo-1",
            "metadata": {"ticket": "SUB-42"},
        }
        started = time.monotonic()  # the simulator's and the receiver's clock
        print(f"\nPOST {stack.intake_url} (job takes {JOB_SECONDS} s in the simulator)")
        print("  " + json.dumps(request))
        answer = stack.submit(request)
        answered = time.monotonic() - started
        request_id = answer.json()["request_id"]
        before = stack.status(request_id).json()
        print()

        deliveries = stack.receiver.wait_for(1, timeout=30)
        for index, record in enumerate(stack.simulator.requests):
            offset = record.time - started
            what = {202: "job accepted", 404: "job still running", 200: "job result final"}.get(
                record.status or 0, "answer"
            )
            call = f"{record.method} {record.path} -> {record.status}"
            print(f"  {offset:6.2f} s  DatoCMS {call} ({what})")
            if index == 0:
                print(
                    f"  {answered:6.2f} s  delete_track answered {answer.status_code} {answer.text}"
                )
        if not deliveries:
            print("\nNo verified callback arrived within 30 s.", file=sys.stderr)
            return 1
        delivery = deliveries[0]
        print(
            f"  {delivery.at - started:6.2f} s  callback received, signature verified by "
            f"standardwebhooks (webhook-id {delivery.headers['webhook-id']})"
        )
        after = settled_status(stack, request_id)
        print(f"\nGET {answer.headers.get('Location')} (the status resource)")
        for label, view in (("right after the intake", before), ("after the callback", after)):
            show_status(label, view)
        print("\nCallback body:")
        print("  " + json.dumps(delivery.payload, indent=2).replace("\n", "\n  "))
        ok = delivery.payload["type"] == "upload_track.deleted" and after["done"]
        print("\nDemo " + ("succeeded." if ok else "did not end with a deletion."))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
