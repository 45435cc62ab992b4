"""Sealed values: only a configured key opens them, and any change is refused."""

from __future__ import annotations

import base64
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.sealing import NONCE_BYTES, seal, unseal

KEY = b"k" * 32
OTHER = b"o" * 32
NONCE = bytes(range(NONCE_BYTES))


@given(st.text(max_size=3000))
def test_unseal_returns_what_was_sealed(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates are refused by the schema long before sealing
    assert unseal(seal(text, KEY, secrets.token_bytes(NONCE_BYTES)), (KEY,)) == text


def test_sealed_value_does_not_contain_the_plaintext() -> None:
    url = "https://hooks.example.com/secret-path?token=abc"
    sealed = seal(url, KEY, NONCE)
    assert "secret-path" not in sealed
    assert "secret-path" not in base64.urlsafe_b64decode(sealed[3:]).decode("latin-1")


def test_any_configured_key_opens_and_others_do_not() -> None:
    sealed = seal("https://a.example/x", OTHER, NONCE)
    assert unseal(sealed, (KEY, OTHER)) == "https://a.example/x"
    assert unseal(sealed, (KEY,)) is None


@pytest.mark.parametrize("position", [3, 10, 30, -3])
def test_a_changed_byte_is_refused(position: int) -> None:
    sealed = seal("https://a.example/x", KEY, NONCE)
    flipped = "A" if sealed[position] != "A" else "B"
    tampered = sealed[:position] + flipped + sealed[position + 1 :]
    if position == -3:
        tampered = sealed[:-3] + flipped + sealed[-2:]
    assert unseal(tampered, (KEY,)) is None


@pytest.mark.parametrize("garbage", ["", "s1.", "s1.!!!", "s2.AAAA", "s1." + "A" * 8])
def test_garbage_is_refused_without_raising(garbage: str) -> None:
    assert unseal(garbage, (KEY,)) is None


def test_the_same_value_sealed_twice_differs() -> None:
    a = seal("https://a.example/x", KEY, secrets.token_bytes(NONCE_BYTES))
    b = seal("https://a.example/x", KEY, secrets.token_bytes(NONCE_BYTES))
    assert a != b


def test_a_nonce_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="nonce"):
        seal("x", KEY, b"short")
