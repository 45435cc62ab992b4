"""A bounded, in-process memory of recently seen keys, with expiry.

Used for the intake's idempotency claims (a duplicate delivered to the same
instance never reaches DatoCMS) and for task names already carried out (a
replayed task is a no-op). The authority across instances is the task queue's
name de-duplication; this only saves work inside one instance.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class RecentKeys:
    """Keys remembered for `ttl` seconds, at most `capacity` of them (oldest forgotten first)."""

    def __init__(self, ttl: float, capacity: int = 100_000) -> None:
        self._ttl = ttl
        self._capacity = capacity
        self._keys: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, key: str, now: float) -> bool:
        """Remember `key`; False when it was already remembered and has not expired."""
        with self._lock:
            expires = self._keys.get(key)
            if expires is not None and expires > now:
                return False
            self._keys[key] = now + self._ttl
            self._keys.move_to_end(key)
            while len(self._keys) > self._capacity:
                self._keys.popitem(last=False)
            return True

    def release(self, key: str) -> None:
        """Forget `key` (a claim whose request was not accepted after all)."""
        with self._lock:
            self._keys.pop(key, None)
