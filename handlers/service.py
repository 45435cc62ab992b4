"""Moved to `adapters.service` (the composition root) and `adapters.tasks` (queue policies).

Kept only because `tests/terraform/` imports these two names from here; drop it
once that import reads `from adapters.tasks import STEPS_RETRY, callback_retry`.
"""

from adapters.tasks import STEPS_RETRY, callback_retry

__all__ = ["STEPS_RETRY", "callback_retry"]
