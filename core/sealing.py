"""Sealing: a short secret value (the callback URL) kept in a record, unreadable without the key.

The record store must never hold the callback URL beyond its host, yet a dead letter
must be re-deliverable after its tasks are gone. The URL is kept sealed: HMAC-SHA256
in counter mode as the key stream, then encrypt-then-MAC with a second derived key
(both derived from a task signing key). Standard library only; the first key seals,
any configured key opens, so `TASK_SIGNING_SECRET` rotations keep old records readable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

NONCE_BYTES = 16
TAG_BYTES = 16
_VERSION = "s1."


def _derive(key: bytes, purpose: bytes) -> bytes:
    return hmac.new(key, b"datocms-track-deleter/seal/" + purpose, hashlib.sha256).digest()


def _stream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (length + 31) // 32
    out = b"".join(
        hmac.new(key, nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        for counter in range(blocks)
    )
    return out[:length]


def _xor(data: bytes, stream: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))


def seal(plaintext: str, key: bytes, nonce: bytes) -> str:
    """`plaintext` sealed under `key`; `nonce` must be fresh random bytes (NONCE_BYTES)."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
    data = plaintext.encode("utf-8")
    cipher = _xor(data, _stream(_derive(key, b"enc"), nonce, len(data)))
    tag = hmac.new(_derive(key, b"mac"), nonce + cipher, hashlib.sha256).digest()[:TAG_BYTES]
    return _VERSION + base64.urlsafe_b64encode(nonce + cipher + tag).decode()


def unseal(sealed: str, keys: tuple[bytes, ...]) -> str | None:
    """The plaintext, if one of `keys` sealed it and nothing was changed; else None."""
    if not sealed.startswith(_VERSION):
        return None
    try:
        raw = base64.urlsafe_b64decode(sealed[len(_VERSION) :].encode())
    except ValueError:
        return None
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        return None
    nonce, cipher, tag = raw[:NONCE_BYTES], raw[NONCE_BYTES:-TAG_BYTES], raw[-TAG_BYTES:]
    for key in keys:
        expected = hmac.new(_derive(key, b"mac"), nonce + cipher, hashlib.sha256).digest()
        if hmac.compare_digest(expected[:TAG_BYTES], tag):
            plain = _xor(cipher, _stream(_derive(key, b"enc"), nonce, len(cipher)))
            try:
                return plain.decode("utf-8")
            except UnicodeDecodeError:
                return None
    return None
