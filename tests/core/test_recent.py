"""The in-process memory of recent keys: claims, expiry, capacity, release."""

from __future__ import annotations

from core.recent import RecentKeys


def test_a_key_is_claimed_once_until_it_expires() -> None:
    keys = RecentKeys(ttl=10)
    assert keys.claim("a", now=0)
    assert not keys.claim("a", now=9.9)
    assert keys.claim("a", now=10.1)


def test_a_released_key_can_be_claimed_again() -> None:
    keys = RecentKeys(ttl=10)
    keys.claim("a", now=0)
    keys.release("a")
    assert keys.claim("a", now=1)


def test_the_oldest_keys_are_forgotten_beyond_the_capacity() -> None:
    keys = RecentKeys(ttl=100, capacity=2)
    for key in ("a", "b", "c"):
        assert keys.claim(key, now=0)
    assert keys.claim("a", now=1)  # forgotten
    assert not keys.claim("c", now=1)
