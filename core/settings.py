"""Configuration, read once from a mapping into a frozen `Settings`.

`Settings.from_env(os.environ)` never raises for a *missing* value: each entry
point asks for what it needs through an accessor (`settings.api_token()`, or
`settings.require(...)` to name several at once) that returns the value or raises
`Misconfigured` naming the variable, so that a missing variable becomes a
`500 misconfigured` answer, never a crash at import. A malformed value (a delay
that is not a number) raises `Misconfigured` at once.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from core.errors import Misconfigured


@dataclass(frozen=True)
class Variable:
    """One environment variable the service reads."""

    name: str
    default: str | None
    secret: bool = False
    required_when: str = ""  # human description; "" means optional with a default


#: Every environment variable the service reads, with its default.
#: The Terraform tests hold the deployment against this list.
VARIABLES: tuple[Variable, ...] = (
    Variable("DATOCMS_API_TOKEN", None, secret=True, required_when="always"),
    Variable("DATOCMS_BASE_URL", "https://site-api.datocms.com"),
    Variable("DATOCMS_ENVIRONMENT", None, required_when="optional"),
    Variable(
        "INTAKE_TOKEN", None, secret=True, required_when="delete_track"
    ),  # space-separated: several
    Variable(
        "CALLBACK_SIGNING_SECRET", None, secret=True, required_when="a request has callback_url"
    ),
    Variable("TASK_SIGNING_SECRET", None, secret=True, required_when="always"),
    Variable("TASKS_BACKEND", "local"),
    Variable("POLL_URL", "http://127.0.0.1:8081/"),
    Variable("TASKS_PROJECT", None, required_when="TASKS_BACKEND=cloudtasks"),
    Variable("TASKS_LOCATION", None, required_when="TASKS_BACKEND=cloudtasks"),
    Variable("TASKS_QUEUE", None, required_when="TASKS_BACKEND=cloudtasks"),
    Variable("CALLBACK_QUEUE", None, required_when="optional (defaults to TASKS_QUEUE)"),
    Variable("TASKS_SERVICE_ACCOUNT", None, required_when="optional"),
    Variable("CLOUD_TASKS_EMULATOR_HOST", None, required_when="optional"),
    Variable("POLL_INITIAL_DELAY_SECONDS", "1"),
    Variable("POLL_MAX_DELAY_SECONDS", "30"),
    Variable("POLL_TIMEOUT_SECONDS", "900"),
    Variable("CALLBACK_MAX_ATTEMPTS", "12"),
    Variable("CALLBACK_RETRY_MIN_SECONDS", "5"),
    Variable("CALLBACK_RETRY_MAX_SECONDS", "3600"),
    Variable("CALLBACK_ALLOW_PRIVATE_NETWORKS", "false"),
    Variable("GOOGLE_CLOUD_PROJECT", None, required_when="optional (log trace links)"),
    Variable("STATE_BACKEND", "sqlite"),
    Variable("STATE_PATH", ".devstack/state.sqlite3"),
    Variable("FIRESTORE_PROJECT", None, required_when="optional (defaults to TASKS_PROJECT)"),
    Variable("FIRESTORE_DATABASE", "(default)"),
    Variable("FIRESTORE_EMULATOR_HOST", None, required_when="optional"),
    Variable("INTAKE_URL", None, required_when="optional (Location headers)"),
    Variable("IDEMPOTENCY_WINDOW_SECONDS", "86400"),
    Variable("STATE_RETENTION_DAYS", "7"),
)

_DEFAULTS = {v.name: v.default for v in VARIABLES}

Backend = Literal["local", "cloudtasks"]
T = TypeVar("T")


class Secret:
    """A secret string that never shows itself in a repr, a log line or an f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "")
    value = value.strip() if value else ""
    if value:
        return value
    default = _DEFAULTS[name]
    return default if default else None


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    value = _text(env, name)
    return Secret(value) if value else None


def _float(env: Mapping[str, str], name: str, *, minimum: float) -> float:
    raw = _text(env, name)
    try:
        value = float(raw or "")
    except ValueError:
        raise Misconfigured([name], "malformed") from None
    if not math.isfinite(value) or value < minimum:
        raise Misconfigured([name], "malformed")
    return value


def _int(env: Mapping[str, str], name: str, *, minimum: int) -> int:
    raw = _text(env, name) or ""
    if not raw.isdigit() or int(raw) < minimum:
        raise Misconfigured([name], "malformed")
    return int(raw)


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = (_text(env, name) or "false").lower()
    if raw not in {"true", "false", "1", "0", "yes", "no"}:
        raise Misconfigured([name], "malformed")
    return raw in {"true", "1", "yes"}


def _given(value: T | None, name: str) -> T:
    """`value`, or `Misconfigured` naming `name` when it is missing (None or empty)."""
    if not value:
        raise Misconfigured([name])
    return value


def _state_backend(env: Mapping[str, str]) -> str:
    backend = (_text(env, "STATE_BACKEND") or "sqlite").lower()
    if backend not in ("sqlite", "firestore"):
        raise Misconfigured(["STATE_BACKEND"], "malformed")
    return backend


def decode_webhook_secret(value: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (`whsec_<base64>`)."""
    if not value.startswith("whsec_"):
        raise ValueError("not a whsec_ secret")
    try:
        key = base64.b64decode(value[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("key must be 24 to 64 bytes")
    return key


@dataclass(frozen=True)
class Settings:
    """Everything the service is configured with. Secrets are `Secret`s."""

    datocms_api_token: Secret | None
    datocms_base_url: str
    datocms_environment: str | None
    intake_token: Secret | None
    #: HMAC keys for callbacks: every one signs, so receivers holding either secret
    #: verify during a rotation.
    callback_signing_keys: tuple[bytes, ...]
    #: HMAC keys for task bodies: the first signs, any verifies (rotation).
    task_signing_keys: tuple[bytes, ...]
    tasks_backend: Backend
    poll_url: str
    tasks_project: str | None
    tasks_location: str | None
    tasks_queue: str | None
    callback_queue: str | None  # as set: `queue_names()` decides its default
    tasks_service_account: str | None
    cloud_tasks_emulator_host: str | None
    poll_initial_delay: float
    poll_max_delay: float
    poll_timeout: float
    callback_max_attempts: int
    callback_retry_min: float
    callback_retry_max: float
    callback_allow_private_networks: bool
    log_project: str | None
    state_backend: str
    state_path: str
    firestore_project: str | None
    firestore_database: str
    firestore_emulator_host: str | None
    intake_url: str | None
    idempotency_window: float
    state_retention: float  # seconds

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read every variable once. Raises `Misconfigured` only for malformed values."""
        backend = (_text(env, "TASKS_BACKEND") or "local").lower()
        if backend not in ("local", "cloudtasks"):
            raise Misconfigured(["TASKS_BACKEND"], "malformed")

        callback_keys: list[bytes] = []
        for part in (_text(env, "CALLBACK_SIGNING_SECRET") or "").split():
            try:
                callback_keys.append(decode_webhook_secret(part))
            except ValueError:
                raise Misconfigured(["CALLBACK_SIGNING_SECRET"], "malformed") from None
        intake = _text(env, "INTAKE_TOKEN") or ""
        if any(len(token) < 16 for token in intake.split()):
            # Several tokens are space-separated (rotation): a passphrase must not
            # turn into several short tokens that each authenticate.
            raise Misconfigured(["INTAKE_TOKEN"], "too short (16+ characters per token)")
        task_keys = tuple(
            part.encode() for part in (_text(env, "TASK_SIGNING_SECRET") or "").split()
        )
        if any(len(key) < 16 for key in task_keys):
            raise Misconfigured(["TASK_SIGNING_SECRET"], "too short (16+ characters)")

        poll_initial = _float(env, "POLL_INITIAL_DELAY_SECONDS", minimum=0)
        poll_max = _float(env, "POLL_MAX_DELAY_SECONDS", minimum=0.01)
        retry_min = _float(env, "CALLBACK_RETRY_MIN_SECONDS", minimum=0)
        retry_max = _float(env, "CALLBACK_RETRY_MAX_SECONDS", minimum=0)
        if poll_max < poll_initial:
            raise Misconfigured(["POLL_MAX_DELAY_SECONDS"], "smaller than the initial delay")
        if retry_max < retry_min:
            raise Misconfigured(["CALLBACK_RETRY_MAX_SECONDS"], "smaller than the minimum")

        return cls(
            datocms_api_token=_secret(env, "DATOCMS_API_TOKEN"),
            datocms_base_url=(_text(env, "DATOCMS_BASE_URL") or "").rstrip("/"),
            datocms_environment=_text(env, "DATOCMS_ENVIRONMENT"),
            intake_token=_secret(env, "INTAKE_TOKEN"),
            callback_signing_keys=tuple(callback_keys),
            task_signing_keys=task_keys,
            tasks_backend="cloudtasks" if backend == "cloudtasks" else "local",
            poll_url=_text(env, "POLL_URL") or "",
            tasks_project=_text(env, "TASKS_PROJECT"),
            tasks_location=_text(env, "TASKS_LOCATION"),
            tasks_queue=_text(env, "TASKS_QUEUE"),
            callback_queue=_text(env, "CALLBACK_QUEUE"),
            tasks_service_account=_text(env, "TASKS_SERVICE_ACCOUNT"),
            cloud_tasks_emulator_host=_text(env, "CLOUD_TASKS_EMULATOR_HOST"),
            poll_initial_delay=poll_initial,
            poll_max_delay=poll_max,
            poll_timeout=_float(env, "POLL_TIMEOUT_SECONDS", minimum=0),
            callback_max_attempts=_int(env, "CALLBACK_MAX_ATTEMPTS", minimum=1),
            callback_retry_min=retry_min,
            callback_retry_max=retry_max,
            callback_allow_private_networks=_bool(env, "CALLBACK_ALLOW_PRIVATE_NETWORKS"),
            log_project=_text(env, "GOOGLE_CLOUD_PROJECT") or _text(env, "TASKS_PROJECT"),
            state_backend=_state_backend(env),
            state_path=_text(env, "STATE_PATH") or "",
            firestore_project=_text(env, "FIRESTORE_PROJECT") or _text(env, "TASKS_PROJECT"),
            firestore_database=_text(env, "FIRESTORE_DATABASE") or "(default)",
            firestore_emulator_host=_text(env, "FIRESTORE_EMULATOR_HOST"),
            intake_url=(_text(env, "INTAKE_URL") or "").rstrip("/") or None,
            idempotency_window=_float(env, "IDEMPOTENCY_WINDOW_SECONDS", minimum=0),
            state_retention=_float(env, "STATE_RETENTION_DAYS", minimum=0) * 86400.0,
        )

    def require(self, *names: str) -> None:
        """Raise `Misconfigured` naming every listed variable that has no value."""
        present = {
            "DATOCMS_API_TOKEN": self.datocms_api_token is not None,
            "INTAKE_TOKEN": self.intake_token is not None,
            "CALLBACK_SIGNING_SECRET": bool(self.callback_signing_keys),
            "TASK_SIGNING_SECRET": bool(self.task_signing_keys),
            "TASKS_PROJECT": self.tasks_project is not None,
            "TASKS_LOCATION": self.tasks_location is not None,
            "TASKS_QUEUE": self.tasks_queue is not None,
            "DATOCMS_BASE_URL": bool(self.datocms_base_url),
            "POLL_URL": bool(self.poll_url),
        }
        missing = [name for name in names if not present[name]]
        if missing:
            raise Misconfigured(missing)

    def api_token(self) -> Secret:
        """`DATOCMS_API_TOKEN`, or `Misconfigured`."""
        return _given(self.datocms_api_token, "DATOCMS_API_TOKEN")

    def intake_tokens(self) -> list[str]:
        """The tokens `INTAKE_TOKEN` holds (several during a rotation), or `Misconfigured`."""
        return _given(self.intake_token, "INTAKE_TOKEN").reveal().split()

    def task_keys(self) -> tuple[bytes, ...]:
        """The task signing keys (the first signs), or `Misconfigured`."""
        return _given(self.task_signing_keys, "TASK_SIGNING_SECRET")

    def callback_keys(self) -> tuple[bytes, ...]:
        """The callback signing keys (every one signs), or `Misconfigured`."""
        return _given(self.callback_signing_keys, "CALLBACK_SIGNING_SECRET")

    def cloud_tasks_location(self) -> tuple[str, str]:
        """`TASKS_PROJECT` and `TASKS_LOCATION`; `Misconfigured` names each missing one
        (`TASKS_QUEUE` included, which Cloud Tasks needs too)."""
        self.require("TASKS_PROJECT", "TASKS_LOCATION", "TASKS_QUEUE")
        return (
            _given(self.tasks_project, "TASKS_PROJECT"),
            _given(self.tasks_location, "TASKS_LOCATION"),
        )

    def queue_names(self) -> tuple[str, str]:
        """The steps and callbacks queues' names, the one place their defaults are decided.

        `CALLBACK_QUEUE` defaults to `TASKS_QUEUE`; without either (the local
        queue only: Cloud Tasks requires `TASKS_QUEUE`), "steps" and "callbacks".
        """
        steps = self.tasks_queue or "steps"
        return steps, self.callback_queue or self.tasks_queue or "callbacks"

    def require_backend(self) -> None:
        """The settings every task-enqueuing function needs."""
        self.require("DATOCMS_API_TOKEN", "TASK_SIGNING_SECRET", "DATOCMS_BASE_URL", "POLL_URL")
        if self.tasks_backend == "cloudtasks":
            self.require("TASKS_PROJECT", "TASKS_LOCATION", "TASKS_QUEUE")
