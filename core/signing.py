"""HMAC signatures: the bodies of our own tasks, and Standard Webhooks callbacks.

Task body: `{"payload": "<the payload's compact JSON, as a string>", "signature":
"v1=<base64 HMAC-SHA256>"}`, the HMAC taken over the payload string's UTF-8
bytes exactly as they were signed (never over a re-serialisation), like Stripe
and Standard Webhooks. A body must be strict UTF-8 JSON without a BOM, and
neither the envelope nor the payload may repeat a key. The first key signs;
any configured key verifies, so `TASK_SIGNING_SECRET` can be rotated without
losing tasks in flight. Tasks sealed before this format (`"payload"` an
object) still open, but only when the body is byte for byte what was sealed.

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
_BOM = b"\xef\xbb\xbf"


def _mac(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def seal_task(payload: dict[str, Any], key: bytes) -> bytes:
    """The signed task body for `payload`."""
    signed = compact_json(payload)
    return compact_json(
        {"payload": signed, "signature": "v1=" + _mac(key, signed.encode("utf-8"))}
    ).encode("utf-8")


def _legacy_seal(payload: dict[str, Any], key: bytes) -> bytes:
    """The body an earlier version sealed `payload` into (payload as an object)."""
    canonical = compact_json(payload)
    return compact_json(
        {"payload": payload, "signature": "v1=" + _mac(key, canonical.encode())}
    ).encode()


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _strict_json(raw: bytes, what: str) -> Any:
    """`raw` as strict UTF-8 JSON: no BOM, no repeated key, no NaN/Infinity."""
    if raw.startswith(_BOM):
        raise TaskRejected(f"{what} starts with a byte order mark")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TaskRejected(f"{what} is not UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except _DuplicateKey:
        raise TaskRejected(f"{what} repeats a key") from None
    except (ValueError, RecursionError):
        raise TaskRejected(f"{what} is not JSON") from None


def open_task(body: bytes, keys: Sequence[bytes]) -> dict[str, Any]:
    """The payload of a task body signed with one of `keys`; `TaskRejected` otherwise."""
    if not keys:
        raise TaskRejected("no task signing key configured")
    if len(body) > MAX_TASK_BODY:
        raise TaskRejected("task body too large")
    envelope = _strict_json(body, "task body")
    if not isinstance(envelope, dict) or set(envelope) != {"payload", "signature"}:
        raise TaskRejected("task body is not a signed envelope")
    payload, signature = envelope["payload"], envelope["signature"]
    if not isinstance(signature, str):
        raise TaskRejected("task body is not a signed envelope")
    if isinstance(payload, dict):
        return _open_legacy(body, payload, keys)
    if not isinstance(payload, str):
        raise TaskRejected("task body is not a signed envelope")
    signed = _verified(payload, signature, keys)
    opened = _strict_json(signed, "task payload")
    if not isinstance(opened, dict):
        raise TaskRejected("task payload is not an object")
    return opened


def _verified(payload: str, signature: str, keys: Sequence[bytes]) -> bytes:
    """The payload's bytes, exactly as signed, if `signature` is one of `keys`'."""
    if not signature.startswith("v1="):
        raise TaskRejected("unknown task signature version")
    try:
        signed = payload.encode("utf-8")
    except UnicodeEncodeError:
        raise TaskRejected("task payload is not UTF-8") from None
    given = signature[len("v1=") :].encode()
    if not any(hmac.compare_digest(_mac(key, signed).encode(), given) for key in keys):
        raise TaskRejected("task signature does not verify")
    return signed


def _open_legacy(body: bytes, payload: dict[str, Any], keys: Sequence[bytes]) -> dict[str, Any]:
    """A task sealed by an earlier version: only the exact bytes it sealed are accepted."""
    try:
        if any(hmac.compare_digest(_legacy_seal(payload, key), body) for key in keys):
            return payload
    except (ValueError, RecursionError):
        pass
    raise TaskRejected("task signature does not verify")


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
