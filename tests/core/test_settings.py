"""Settings read once from a mapping; missing values named, malformed values refused."""

from __future__ import annotations

import base64

import pytest

from core.errors import Misconfigured
from core.settings import VARIABLES, Secret, Settings, decode_webhook_secret

KEY = base64.b64encode(b"k" * 32).decode()
FULL = {
    "DATOCMS_API_TOKEN": "dato",
    "INTAKE_TOKEN": "intake-token-0123456789",
    "TASK_SIGNING_SECRET": "t" * 32,
    "CALLBACK_SIGNING_SECRET": f"whsec_{KEY}",
}


def test_defaults_are_the_contracts() -> None:
    settings = Settings.from_env({})
    assert settings.datocms_base_url == "https://site-api.datocms.com"
    assert settings.tasks_backend == "local"
    assert settings.poll_url == "http://127.0.0.1:8081/"
    assert (settings.poll_initial_delay, settings.poll_max_delay, settings.poll_timeout) == (
        1.0,
        30.0,
        900.0,
    )
    assert (
        settings.callback_max_attempts,
        settings.callback_retry_min,
        settings.callback_retry_max,
    ) == (12, 5.0, 3600.0)
    assert settings.callback_allow_private_networks is False
    assert settings.datocms_environment is None


def test_reading_never_fails_for_missing_values_but_require_names_them() -> None:
    settings = Settings.from_env({"INTAKE_TOKEN": "  "})
    with pytest.raises(Misconfigured) as missing:
        settings.require("DATOCMS_API_TOKEN", "INTAKE_TOKEN", "TASK_SIGNING_SECRET")
    assert missing.value.variables == ("DATOCMS_API_TOKEN", "INTAKE_TOKEN", "TASK_SIGNING_SECRET")


def test_cloudtasks_backend_requires_its_queue_coordinates() -> None:
    settings = Settings.from_env({**FULL, "TASKS_BACKEND": "cloudtasks", "TASKS_PROJECT": "p"})
    with pytest.raises(Misconfigured) as missing:
        settings.require_backend()
    assert missing.value.variables == ("TASKS_LOCATION", "TASKS_QUEUE")


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, ("steps", "callbacks")),
        ({"TASKS_QUEUE": "s"}, ("s", "s")),
        ({"TASKS_QUEUE": "s", "CALLBACK_QUEUE": "cb"}, ("s", "cb")),
    ],
)
def test_callback_queue_defaults_to_the_tasks_queue(
    env: dict[str, str], names: tuple[str, str]
) -> None:
    assert Settings.from_env(env).queue_names() == names


def test_accessors_return_the_value_or_name_the_missing_variable() -> None:
    settings = Settings.from_env(FULL)
    assert settings.api_token() == settings.datocms_api_token
    assert settings.task_keys() == settings.task_signing_keys
    empty = Settings.from_env({})
    for accessor, name in [
        (empty.api_token, "DATOCMS_API_TOKEN"),
        (empty.intake_tokens, "INTAKE_TOKEN"),
        (empty.task_keys, "TASK_SIGNING_SECRET"),
        (empty.callback_keys, "CALLBACK_SIGNING_SECRET"),
    ]:
        with pytest.raises(Misconfigured) as missing:
            accessor()
        assert missing.value.variables == (name,)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POLL_INITIAL_DELAY_SECONDS", "soon"),
        ("POLL_TIMEOUT_SECONDS", "-1"),
        ("POLL_MAX_DELAY_SECONDS", "nan"),
        ("CALLBACK_MAX_ATTEMPTS", "0"),
        ("CALLBACK_MAX_ATTEMPTS", "3.5"),
        ("CALLBACK_ALLOW_PRIVATE_NETWORKS", "maybe"),
        ("TASKS_BACKEND", "sqs"),
        ("CALLBACK_SIGNING_SECRET", "not-whsec"),
        ("CALLBACK_SIGNING_SECRET", "whsec_" + base64.b64encode(b"short").decode()),
        ("TASK_SIGNING_SECRET", "short"),
        ("INTAKE_TOKEN", "correct horse battery staple"),
    ],
)
def test_malformed_values_are_misconfigurations_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(Misconfigured) as malformed:
        Settings.from_env({**FULL, name: value})
    assert malformed.value.variables == (name,)


def test_rotation_accepts_several_space_separated_secrets() -> None:
    other = base64.b64encode(b"o" * 24).decode()
    settings = Settings.from_env(
        {
            **FULL,
            "CALLBACK_SIGNING_SECRET": f"whsec_{KEY} whsec_{other}",
            "TASK_SIGNING_SECRET": "a" * 16 + " " + "b" * 16,
        }
    )
    assert settings.callback_signing_keys == (b"k" * 32, b"o" * 24)
    assert settings.task_signing_keys == (b"a" * 16, b"b" * 16)


def test_secrets_never_show_in_a_repr() -> None:
    settings = Settings.from_env(FULL)
    assert "dato" not in repr(settings.datocms_api_token)
    assert "intake-token" not in f"{settings.intake_token}"
    assert Secret("x") == Secret("x") and Secret("x").reveal() == "x"


def test_webhook_secret_decodes_to_its_key() -> None:
    assert decode_webhook_secret(f"whsec_{KEY}") == b"k" * 32


def test_every_contract_variable_is_declared_once() -> None:
    names = [variable.name for variable in VARIABLES]
    assert len(names) == len(set(names))
    for name in ("DATOCMS_API_TOKEN", "POLL_URL", "CLOUD_TASKS_EMULATOR_HOST", "CALLBACK_QUEUE"):
        assert name in names
