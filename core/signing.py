"""HMAC signatures: the bodies of our own tasks, and Standard Webhooks callbacks.

Task body: `{"payload": {...}, "signature": "v1=<base64 HMAC-SHA256>"}`, the HMAC
taken over the payload's compact JSON. The first key signs; any configured key
verifies, so `TASK_SIGNING_SECRET` can be rotated without losing tasks in flight.

Callbacks: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` per key,
space-separated (Standard Webhooks allows several during a secret rotation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

from core.errors import TaskRejected
from core.validation import compact_json

MAX_TASK_BODY = 96 * 1024  # Cloud Tasks' smallest documented task size limit is 100 KB


def _mac(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def seal_task(payload: dict[str, Any], key: bytes) -> bytes:
    """The signed task body for `payload`."""
    canonical = compact_json(payload)
    return compact_json(
        {"payload": payload, "signature": "v1=" + _mac(key, canonical.encode())}
    ).encode()


def open_task(body: bytes, keys: Sequence[bytes]) -> dict[str, Any]:
    """The payload of a task body signed with one of `keys`; `TaskRejected` otherwise."""
    if not keys:
        raise TaskRejected("no task signing key configured")
    if len(body) > MAX_TASK_BODY:
        raise TaskRejected("task body too large")
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        raise TaskRejected("task body is not JSON") from None
    if not isinstance(envelope, dict) or set(envelope) != {"payload", "signature"}:
        raise TaskRejected("task body is not a signed envelope")
    payload, signature = envelope["payload"], envelope["signature"]
    if not isinstance(payload, dict) or not isinstance(signature, str):
        raise TaskRejected("task body is not a signed envelope")
    try:
        canonical = compact_json(payload).encode()
    except ValueError:
        raise TaskRejected("task payload is not canonical JSON") from None
    if not signature.startswith("v1="):
        raise TaskRejected("unknown task signature version")
    given = signature[len("v1=") :].encode()
    if not any(hmac.compare_digest(_mac(key, canonical).encode(), given) for key in keys):
        raise TaskRejected("task signature does not verify")
    return payload


def webhook_signature(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: one `v1,<sig>` per key."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + _mac(key, signed) for key in keys)


def constant_time_equal(given: str, expected: str) -> bool:
    """Compare a presented secret with the configured one without leaking timing."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest(),
        hashlib.sha256(expected.encode("utf-8", "surrogatepass")).digest(),
    )
