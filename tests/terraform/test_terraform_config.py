"""The deployment in terraform/, held against the code it deploys.

`terraform validate` needs the providers, which cannot be downloaded here, so
these tests parse the module with python-hcl2 and check what matters to the
code: every setting it reads reaches the functions that need it, secrets travel
only through Secret Manager, the queues retry exactly as the code is told, the
poll URL is both the task target and the OIDC audience, and only what runs in
production is deployed. `scripts/check-terraform.sh` adds `terraform fmt` and
checkov.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

from adapters.cloud_tasks import CloudTasksQueue
from adapters.tasks import STEPS_RETRY, RetryPolicy, callback_retry
from core.settings import VARIABLES, Settings, Variable, decode_webhook_secret

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "terraform"
ENTRY_POINTS = ("delete_track", "poll_job", "delete_track_event")
CODE_VARIABLES = {variable.name: variable for variable in VARIABLES}
SECRETS = {variable.name for variable in VARIABLES if variable.secret}
#: Settings whose deployed value differs from the code's (laptop) default on purpose.
DEPLOYMENT_VALUES = {"TASKS_BACKEND", "POLL_URL", "STATE_BACKEND"}
FUNCTIONS = ("google_cloudfunctions2_function", "service")
#: The deterministic run.app URL (cloud.google.com/run/docs/triggering/https-request).
RUN_APP_URL = '"https://${name}-${data.google_project.this.number}.${var.region}.run.app"'
#: Stands for data.google_project.this.number, known at plan time in a real run.
PROJECT_NUMBER = "123456789012"

_PARSE = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
#: A plain reference such as `${var.region}` or `${local.callback_retry.max_attempts}`.
_REFERENCE = re.compile(r"\$\{([A-Za-z_][\w-]*(?:\.[\w-]+)+)\}")


@dataclass(frozen=True)
class Module:
    """The parsed module, with just enough evaluation to compare values."""

    variables: dict[str, dict[str, Any]]
    locals: dict[str, Any]
    resources: dict[str, dict[str, dict[str, Any]]]
    data: dict[str, dict[str, dict[str, Any]]]
    ephemeral: dict[str, dict[str, dict[str, Any]]]
    outputs: dict[str, dict[str, Any]]
    providers: dict[str, dict[str, Any]]
    settings: list[dict[str, Any]]
    texts: dict[str, str]

    @classmethod
    def load(cls, directory: Path) -> Module:
        module = cls({}, {}, {}, {}, {}, {}, {}, [], {})
        for path in sorted(directory.glob("*.tf")):
            text = path.read_text(encoding="utf-8")
            module.texts[path.name] = text
            parsed = hcl2.loads(text, serialization_options=_PARSE)
            for block in parsed.get("variable", []):
                module.variables.update(block)
            for block in parsed.get("locals", []):
                module.locals.update(block)
            for block in parsed.get("output", []):
                module.outputs.update(block)
            for block in parsed.get("provider", []):
                module.providers.update(block)
            for kind, target in (
                ("resource", module.resources),
                ("data", module.data),
                ("ephemeral", module.ephemeral),
            ):
                for block in parsed.get(kind, []):
                    for type_, named in block.items():
                        target.setdefault(type_, {}).update(named)
            module.settings.extend(parsed.get("terraform", []))
        return module

    def resource(self, type_: str, name: str) -> dict[str, Any]:
        return self.resources[type_][name]

    def function(self, entry_point: str) -> dict[str, Any]:
        """The function instance whose entry point is `entry_point`, `each.*` filled in.

        The functions are one `for_each` resource over `local.functions`; an
        instance is its body with `each.key` the entry point and `each.value.x`
        read as `local.functions.<entry point>.x`.
        """
        body = self.resource(*FUNCTIONS)
        assert body["for_each"] == "${local.deployed_functions}"
        assert entry_point in self.locals["functions"], entry_point
        instance: dict[str, Any] = _each(body, entry_point)
        assert instance["build_config"][0]["entry_point"] == entry_point
        return instance

    def resolve(self, value: Any) -> Any:
        """`value` with plain references replaced by what the module says they are.

        `var.x` becomes the variable's default, `local.x.y` the local's value, and
        `type.name.arg` a resource argument written in the module. Anything else
        (computed attributes, function calls) is kept as written.
        """
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, str):
            return value
        whole = _REFERENCE.fullmatch(value)
        if whole:
            return self._lookup(whole.group(1), value)
        return _REFERENCE.sub(lambda m: _text(self._lookup(m.group(1), m.group(0))), value)

    def _lookup(self, reference: str, unresolved: str) -> Any:
        head, name, *path = reference.split(".")
        if head == "var":
            spec = self.variables[name]  # KeyError: an undeclared variable
            if "default" not in spec:
                return unresolved
            value = spec["default"]
        elif head == "local" and name == "function_urls":
            value = self._function_urls()
        elif head == "local":
            value = self.resolve(self.locals[name])
        elif name in self.resources.get(head, {}):
            value = self.resources[head][name]
        else:
            return unresolved
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return unresolved
            value = self.resolve(value[key])
        return value

    def _function_urls(self) -> dict[str, str]:
        """`local.function_urls` evaluated, with a stand-in project number."""
        assert RUN_APP_URL in self.locals["function_urls"]
        region = self.resolve("${var.region}")
        return {
            key: f"https://{self.resolve(name)}-{PROJECT_NUMBER}.{region}.run.app"
            for key, name in self.locals["function_names"].items()
        }

    def function_env(self, entry_point: str) -> dict[str, Any]:
        """A function's environment_variables, resolved (a `merge` of locals)."""
        expression = self.function(entry_point)["service_config"][0]["environment_variables"]
        merged = re.fullmatch(r"\$\{merge\((.*)\)\}", expression)
        assert merged, f"{entry_point}: expected merge(local..., ...), got {expression}"
        env: dict[str, Any] = {}
        for reference in merged.group(1).split(", "):
            env.update(self._entries(self.locals[reference.removeprefix("local.")]))
        return env

    def _entries(self, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            resolved: dict[str, Any] = self.resolve(value)
            return resolved
        # A conditional map such as `cond ? {} : {KEY = var.x}`: its keys, values resolved.
        return {
            key: self.resolve("${" + expression + "}")
            for key, expression in re.findall(r"([A-Z][A-Z0-9_]*) = ([\w.]+)", value)
        }

    def function_secrets(self, entry_point: str) -> dict[str, dict[str, Any]]:
        """A function's secret_environment_variables by key, static or `dynamic`."""
        config = self.function(entry_point)["service_config"][0]
        secrets = {block["key"]: block for block in config.get("secret_environment_variables", [])}
        for dynamic in config.get("dynamic", []):
            body = dynamic.get("secret_environment_variables")
            if body is None:
                continue
            for_each = re.fullmatch(r"\$\{toset\((local\.[\w.]+)\)\}", body["for_each"])
            assert for_each, f"{entry_point}: unexpected for_each {body['for_each']}"
            for key in self.resolve("${" + for_each.group(1) + "}"):
                secrets[key] = body["content"][0]
        return secrets

    def iam_members(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (type_, name, body)
            for type_, named in self.resources.items()
            if type_.endswith("_iam_member")
            for name, body in named.items()
        ]

    def block_text(self, type_: str, name: str) -> str:
        """The source text of one resource block."""
        header = f'resource "{type_}" "{name}" {{'
        for text in self.texts.values():
            start = text.find(header)
            if start >= 0:
                end = text.find("\n}\n", start)
                return text[start:end]
        raise AssertionError(f"{type_}.{name} not found")


def _each(value: Any, key: str) -> Any:
    """`value` with `each.key` and `each.value.x` of the `key` instance written out."""
    if isinstance(value, dict):
        return {name: _each(item, key) for name, item in value.items()}
    if isinstance(value, list):
        return [_each(item, key) for item in value]
    if not isinstance(value, str):
        return value
    if value == "${each.key}":
        return key
    value = value.replace("[each.key]", f".{key}").replace("each.value.", f"local.functions.{key}.")
    return value.replace("${each.key}", key)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def _same(deployed: Any, default: str) -> bool:
    try:
        return float(deployed) == float(default)
    except (TypeError, ValueError):
        return _text(deployed) == default


def _required_in(variable: Variable, entry_point: str) -> bool:
    """Whether the deployed `entry_point` needs `variable` set (the deployment uses Cloud Tasks)."""
    rule = variable.required_when
    if rule == "" or rule.startswith("optional"):
        return False
    if rule in {"always", "TASKS_BACKEND=cloudtasks", "a request has callback_url"}:
        return True
    if rule in ENTRY_POINTS:
        return rule == entry_point
    raise AssertionError(f"{variable.name}: unknown required_when {rule!r}: teach this test")


def _queue_policy(tf: Module, name: str) -> RetryPolicy:
    retry = tf.resolve(tf.resource("google_cloud_tasks_queue", name)["retry_config"][0])
    attempts = _callback_queue_attempts(tf) if name == "callbacks" else int(retry["max_attempts"])
    return RetryPolicy(
        max_attempts=attempts,
        min_backoff=_seconds(retry["min_backoff"]),
        max_backoff=_seconds(retry["max_backoff"]),
        max_doublings=int(retry["max_doublings"]),
    )


def _callback_queue_attempts(tf: Module) -> int:
    """The callbacks queue's max_attempts, with the module's defaults."""
    expression = tf.locals["callback_queue_max_attempts"]
    terms = re.fullmatch(r"\$\{([\w.]+) \+ ([\w.]+)\}", expression)
    assert terms, expression
    return sum(int(tf.resolve("${" + term + "}")) for term in terms.groups())


def _deployed_settings(tf: Module, entry_point: str) -> Settings:
    """The `Settings` the function would read, with every variable at its default."""
    env = tf.function_env(entry_point)
    env = {key: _text(value) for key, value in env.items() if value is not None}
    return Settings.from_env(env)


@pytest.fixture(scope="module")
def tf() -> Module:
    return Module.load(MODULE)


# --- settings ---------------------------------------------------------------------


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_every_setting_the_code_requires_reaches_the_function(tf: Module, entry_point: str) -> None:
    provided = set(tf.function_env(entry_point)) | set(tf.function_secrets(entry_point))
    missing = [v.name for v in VARIABLES if _required_in(v, entry_point) and v.name not in provided]
    assert missing == []


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_every_setting_deployed_is_one_the_code_reads(tf: Module, entry_point: str) -> None:
    provided = set(tf.function_env(entry_point)) | set(tf.function_secrets(entry_point))
    assert provided - set(CODE_VARIABLES) == set()


def test_functions_share_one_set_of_settings(tf: Module) -> None:
    expressions = {
        tf.function(entry)["service_config"][0]["environment_variables"] for entry in ENTRY_POINTS
    }
    assert len(expressions) == 1


def test_deployed_defaults_match_the_code_defaults(tf: Module) -> None:
    env = tf.function_env("poll_job")
    defaults = {v.name: v.default for v in VARIABLES if v.default is not None}
    differing = {
        name: value
        for name, value in env.items()
        if name in defaults and name not in DEPLOYMENT_VALUES and not _same(value, defaults[name])
    }
    assert differing == {}


def test_functions_use_cloud_tasks_with_both_queues_and_the_invoker_identity(tf: Module) -> None:
    env = tf.function_env("delete_track")
    steps = tf.resolve(tf.resource("google_cloud_tasks_queue", "steps"))
    callbacks = tf.resolve(tf.resource("google_cloud_tasks_queue", "callbacks"))
    prefix = tf.resolve("${var.name_prefix}")

    assert env["TASKS_BACKEND"] == "cloudtasks"
    assert (env["TASKS_QUEUE"], env["CALLBACK_QUEUE"]) == (steps["name"], callbacks["name"])
    assert steps["name"] != callbacks["name"]
    assert env["TASKS_LOCATION"] == steps["location"] == callbacks["location"]
    assert env["TASKS_PROJECT"] == tf.resolve(tf.providers["google"]["project"])
    assert env["TASKS_SERVICE_ACCOUNT"] == (
        f"{prefix}-invoker@${{var.project_id}}.iam.gserviceaccount.com"
    )
    assert "CLOUD_TASKS_EMULATOR_HOST" not in env
    assert env["CALLBACK_ALLOW_PRIVATE_NETWORKS"] == "false"


def test_no_setting_is_unknown_at_the_first_plan(tf: Module) -> None:
    # Computed attributes in environment_variables have broken applies with
    # "inconsistent final plan": only variables, locals and the project's number.
    for entry in ENTRY_POINTS:
        for name, value in tf.function_env(entry).items():
            references = re.findall(r"\b(google_\w+|random_\w+|ephemeral)\.", str(value))
            assert references == [], (entry, name, value)
    # data.google_project is read at plan time only while nothing defers it.
    assert "depends_on" not in tf.data["google_project"]["this"]


def test_invoker_email_is_spelled_as_the_account_will_have_it(tf: Module) -> None:
    invoker = tf.resource("google_service_account", "invoker")
    postcondition = invoker["lifecycle"][0]["postcondition"][0]

    assert invoker["account_id"] == "${var.name_prefix}-invoker"
    assert tf.locals["invoker_email"] == (
        "${var.name_prefix}-invoker@${var.project_id}.iam.gserviceaccount.com"
    )
    assert postcondition["condition"] == "${self.email == local.invoker_email}"


def test_the_queue_the_functions_build_targets_poll_job_as_the_invoker(tf: Module) -> None:
    env = tf.function_env("delete_track")
    queue = CloudTasksQueue.from_settings(_deployed_settings(tf, "delete_track"))

    assert queue.target_url == env["POLL_URL"] == tf.resolve("${local.poll_url}")
    assert queue.service_account == env["TASKS_SERVICE_ACCOUNT"]
    assert (queue.steps_queue, queue.callbacks_queue) == (env["TASKS_QUEUE"], env["CALLBACK_QUEUE"])


def test_functions_keep_their_state_in_firestore(tf: Module) -> None:
    env = tf.function_env("poll_job")

    assert env["STATE_BACKEND"] == "firestore"
    assert env["FIRESTORE_PROJECT"] == env["TASKS_PROJECT"]
    assert env["FIRESTORE_DATABASE"] == tf.resolve("${var.firestore_database}") == "(default)"
    assert env["INTAKE_URL"] == tf.resolve("${local.function_urls.delete_track}")
    # Laptop-only settings never reach the cloud.
    assert {"STATE_PATH", "FIRESTORE_EMULATOR_HOST"}.isdisjoint(env)


# --- secrets ----------------------------------------------------------------------


def test_secrets_never_travel_as_plain_environment_variables(tf: Module) -> None:
    for entry in ENTRY_POINTS:
        assert SECRETS.isdisjoint(tf.function_env(entry)), entry
    plain = str([tf.locals["runtime_env"], tf.locals["optional_env"]])
    assert not re.search(r"random_|secret_values|datocms_api_token", plain)


def test_secrets_reach_each_function_from_the_secret_terraform_wrote(tf: Module) -> None:
    for entry in ENTRY_POINTS:
        for key, block in tf.function_secrets(entry).items():
            assert key in SECRETS, (entry, key)
            assert block["secret"].startswith("${google_secret_manager_secret.service["), entry
            # A pinned version: a new value rolls out a new revision; "latest" would not.
            assert block["version"].startswith("${google_secret_manager_secret_version.service[")
            assert block["version"].endswith("].version}"), (entry, block["version"])


def test_only_delete_track_holds_the_intake_token(tf: Module) -> None:
    holders = [entry for entry in ENTRY_POINTS if "INTAKE_TOKEN" in tf.function_secrets(entry)]
    assert holders == ["delete_track"]


def test_secret_manager_holds_exactly_the_secrets_the_code_reads(tf: Module) -> None:
    secret = tf.resource("google_secret_manager_secret", "service")

    assert secret["for_each"] == "${toset(local.secret_names)}"
    assert set(tf.resolve("${local.secret_names}")) == SECRETS
    assert set(tf.locals["secret_values"]) == SECRETS
    assert set(tf.locals["secret_data_versions"]) == SECRETS
    assert secret["replication"] == [{"auto": [{}]}]


def test_secret_values_are_written_write_only(tf: Module) -> None:
    version = tf.resource("google_secret_manager_secret_version", "service")
    required = tf.settings[0]["required_version"]

    assert "secret_data" not in version
    assert version["secret_data_wo"] == "${local.secret_values[each.key]}"
    assert version["secret_data_wo_version"] == "${local.secret_data_versions[each.key]}"
    # Write-only arguments need Terraform 1.11.
    assert re.fullmatch(r">= 1\.(1[1-9]|[2-9]\d)\.\d+", required), required


def test_given_and_generated_tokens_never_reach_the_state(tf: Module) -> None:
    token = tf.variables["datocms_api_token"]
    values = tf.locals["secret_values"]

    assert token["ephemeral"] is True and token["sensitive"] is True
    assert values["DATOCMS_API_TOKEN"] == "${var.datocms_api_token}"
    assert values["INTAKE_TOKEN"] == "${ephemeral.random_password.intake_token.result}"
    assert "intake_token" not in tf.resources.get("random_password", {})
    # Raising these writes a new value: nothing else can, a write-only value is not diffed.
    versions = tf.locals["secret_data_versions"]
    assert versions["DATOCMS_API_TOKEN"] == "${var.datocms_api_token_version}"
    assert versions["INTAKE_TOKEN"] == "${var.intake_token_version}"


def test_a_changed_signing_key_list_writes_a_new_version(tf: Module) -> None:
    versions = tf.locals["secret_data_versions"]
    for secret, ids in (
        ("TASK_SIGNING_SECRET", "task_signing_key_ids"),
        ("CALLBACK_SIGNING_SECRET", "callback_signing_key_ids"),
    ):
        assert f"var.{ids}" in versions[secret], secret
        # Derived from the ids, never from a secret value.
        assert "random_" not in versions[secret], secret


def test_no_create_before_destroy_spreads_to_the_secrets(tf: Module) -> None:
    for type_, named in tf.resources.items():
        for name, body in named.items():
            for lifecycle in body.get("lifecycle", []):
                assert "create_before_destroy" not in lifecycle, (type_, name)
    version = tf.resource("google_secret_manager_secret_version", "service")
    # The replaced version stays enabled for the instances still pinned to it.
    assert version["deletion_policy"] == "ABANDON"


def test_each_secret_is_readable_only_by_the_functions_that_use_it(tf: Module) -> None:
    grants = [
        (type_, name, body)
        for type_, name, body in tf.iam_members()
        if type_.startswith("google_secret_manager") or "secretmanager" in body["role"]
    ]
    assert [(type_, name) for type_, name, _ in grants] == [
        ("google_secret_manager_secret_iam_member", "function")
    ]
    body = grants[0][2]
    assert body["for_each"] == "${local.function_secrets}"
    assert body["role"] == "roles/secretmanager.secretAccessor"
    assert body["member"] == "${google_service_account.function[each.value.function].member}"
    assert body["secret_id"] == "${google_secret_manager_secret.service[each.value.secret].id}"
    assert "for secret in fn.secrets" in tf.locals["function_secrets"]
    for entry in ENTRY_POINTS:
        secrets = tf.function(entry)["service_config"][0]["dynamic"][0]
        assert secrets["secret_environment_variables"]["for_each"] == (
            f"${{toset(local.functions.{entry}.secrets)}}"
        )


def test_generated_secrets_have_the_shape_the_code_accepts(tf: Module) -> None:
    intake = tf.ephemeral["random_password"]["intake_token"]
    task = tf.resource("random_password", "task_signing")
    callback = tf.resource("random_bytes", "callback_signing")
    values = tf.locals["secret_values"]

    # Bearer tokens and Basic auth passwords: no characters that need escaping.
    assert intake["special"] is False and intake["length"] >= 32
    # The code splits TASK_SIGNING_SECRET on whitespace and wants 16+ characters per key.
    assert task["special"] is False and task["length"] >= 16
    assert (
        '"whsec_${random_bytes.callback_signing[id].base64}"' in values["CALLBACK_SIGNING_SECRET"]
    )
    key = base64.b64encode(bytes(callback["length"])).decode()
    assert len(decode_webhook_secret("whsec_" + key)) == callback["length"]
    assert "default" not in tf.variables["datocms_api_token"]


# --- queues -----------------------------------------------------------------------


def test_callback_queue_and_callback_settings_come_from_one_definition(tf: Module) -> None:
    retry = tf.resource("google_cloud_tasks_queue", "callbacks")["retry_config"][0]
    env = tf.locals["runtime_env"]

    assert retry["max_attempts"] == "${local.callback_queue_max_attempts}"
    assert tf.locals["callback_queue_max_attempts"].startswith(
        "${" + env["CALLBACK_MAX_ATTEMPTS"][2:-1] + " + "
    )
    assert retry["min_backoff"] == env["CALLBACK_RETRY_MIN_SECONDS"] + "s"
    assert retry["max_backoff"] == env["CALLBACK_RETRY_MAX_SECONDS"] + "s"
    for setting in ("min_backoff", "max_backoff", "max_doublings"):
        assert retry[setting].startswith("${local.callback_retry."), setting


def test_callback_queue_backs_off_as_the_functions_are_told(tf: Module) -> None:
    retry = tf.resource("google_cloud_tasks_queue", "callbacks")["retry_config"][0]
    told = callback_retry(_deployed_settings(tf, "poll_job"))
    queue = _queue_policy(tf, "callbacks")

    assert dataclasses.replace(queue, max_attempts=told.max_attempts) == told
    # No age limit: max_attempts alone bounds the queue's own retries.
    assert retry["max_retry_duration"] == "0s"


def test_callback_queue_allows_more_attempts_than_the_service_makes(tf: Module) -> None:
    # The service ends every sequence from its signed count and age; the queue
    # must never drop a delivery first (it also counts dispatches never handled).
    told = callback_retry(_deployed_settings(tf, "poll_job"))
    attempts = _callback_queue_attempts(tf)

    assert attempts == -1 or attempts > told.max_attempts


def test_steps_queue_retries_as_the_local_queue_does(tf: Module) -> None:
    retry = tf.resource("google_cloud_tasks_queue", "steps")["retry_config"][0]

    assert _queue_policy(tf, "steps") == STEPS_RETRY
    assert retry["max_retry_duration"] == "0s"


def test_steps_queue_keeps_the_project_under_the_datocms_rate_limit(tf: Module) -> None:
    limits = tf.resolve(tf.resource("google_cloud_tasks_queue", "steps")["rate_limits"][0])
    conditions = [v["condition"] for v in tf.variables["datocms_requests_per_second"]["validation"]]

    # DatoCMS: 60 requests per 3 seconds; the intake's own DELETEs need headroom.
    assert 0 < limits["max_dispatches_per_second"] * 3 < 60
    assert any("var.datocms_requests_per_second <= 20" in c for c in conditions)


def test_poll_job_can_take_every_task_both_queues_dispatch_at_once(tf: Module) -> None:
    steps = tf.resource("google_cloud_tasks_queue", "steps")["rate_limits"][0]
    callbacks = tf.resource("google_cloud_tasks_queue", "callbacks")["rate_limits"][0]
    poll = tf.function("poll_job")["service_config"][0]

    assert steps["max_concurrent_dispatches"] == "${local.queue_concurrency.steps}"
    assert callbacks["max_concurrent_dispatches"] == "${local.queue_concurrency.callbacks}"
    assert poll["max_instance_count"] == "${local.functions.poll_job.max_instances}"
    assert tf.locals["functions"]["poll_job"]["max_instances"] == "${local.poll_job_max_instances}"
    assert tf.locals["poll_job_max_instances"] == (
        "${local.queue_concurrency.steps + local.queue_concurrency.callbacks}"
    )
    assert poll["max_instance_request_concurrency"] == 1


def test_poll_job_runs_as_long_as_cloud_tasks_waits_for_it(tf: Module) -> None:
    deadline = inspect.signature(CloudTasksQueue).parameters["dispatch_deadline"].default
    timeout = tf.resolve(tf.function("poll_job")["service_config"][0]["timeout_seconds"])
    assert timeout >= deadline


def test_queue_names_are_blocked_up_to_3_days_after_a_delete(tf: Module) -> None:
    text = tf.texts["queues.tf"]
    assert "up to 3 days" in text
    assert "7 days" not in text


def test_each_function_enqueues_only_on_the_queues_it_uses(tf: Module) -> None:
    grant = tf.resource("google_cloud_tasks_queue_iam_member", "function_enqueues")
    queues = {entry: tf.resolve(tf.locals["functions"][entry]["queues"]) for entry in ENTRY_POINTS}

    assert grant["for_each"] == "${local.function_queues}"
    assert grant["role"] == "roles/cloudtasks.enqueuer"
    assert grant["member"] == "${google_service_account.function[each.value.function].member}"
    assert "for queue in fn.queues" in tf.locals["function_queues"]
    assert queues == {
        "delete_track": ["steps", "callbacks"],  # re-delivery of dead letters
        "poll_job": ["steps", "callbacks"],
        "delete_track_event": ["steps"],
    }
    assert [t for t in tf.resources if t == "google_cloud_tasks_queue_iam_member"] == [
        "google_cloud_tasks_queue_iam_member"
    ]
    assert list(tf.resources["google_cloud_tasks_queue_iam_member"]) == ["function_enqueues"]


# --- poll URL, OIDC and invocation ------------------------------------------------


def test_every_function_url_is_its_deterministic_run_app_url(tf: Module) -> None:
    urls = tf.locals["function_urls"]

    assert urls.startswith("${{for key, name in local.function_names : key => ")
    assert RUN_APP_URL in urls
    assert tf.locals["poll_url"] == "${local.function_urls.poll_job}"
    assert tf.locals["intake_url"] == "${local.function_urls.delete_track}"
    assert "cloudfunctions.net" not in str(tf.locals)
    # The apply fails if the API ever reports another run.app URL for a function.
    postcondition = tf.resource(*FUNCTIONS)["lifecycle"][0]["postcondition"][0]
    assert postcondition["condition"] == (
        "${self.service_config[0].uri == local.function_urls[each.key]}"
    )


def test_run_app_labels_fit_in_63_characters(tf: Module) -> None:
    # https://[TAG---]SERVICE-PROJECT_NUMBER.REGION.run.app exists only for labels of 63 or less.
    condition = tf.variables["name_prefix"]["validation"][0]["condition"]
    longest_prefix = int(re.search(r"\{0,(\d+)\}", condition).group(1)) + 2  # type: ignore[union-attr]
    longest_name = max(
        len(name.replace("${var.name_prefix}", "")) for name in tf.locals["function_names"].values()
    )
    project_number = 13
    assert longest_prefix + longest_name + 1 + project_number <= 63


def test_every_function_gets_the_poll_url_as_task_target_and_audience(tf: Module) -> None:
    # The code sends tasks to POLL_URL with an OIDC token whose audience is POLL_URL.
    assert tf.locals["runtime_env"]["POLL_URL"] == "${local.poll_url}"
    for entry in ENTRY_POINTS:
        assert tf.function_env(entry)["POLL_URL"] == tf.resolve("${local.poll_url}"), entry


def test_the_invoker_may_invoke_poll_job_and_nothing_else(tf: Module) -> None:
    grants = [
        (type_, body)
        for type_, _, body in tf.iam_members()
        if body["member"] == "${google_service_account.invoker.member}"
    ]
    assert grants == [
        (
            "google_cloud_run_service_iam_member",
            {
                "location": '${google_cloudfunctions2_function.service["poll_job"].location}',
                "service": '${google_cloudfunctions2_function.service["poll_job"].name}',
                "role": "roles/run.invoker",
                "member": "${google_service_account.invoker.member}",
            },
        )
    ]


def test_each_function_runs_as_its_own_account(tf: Module) -> None:
    accounts = tf.resource("google_service_account", "function")
    ids = {entry: tf.locals["functions"][entry]["account"] for entry in ENTRY_POINTS}

    assert accounts["for_each"] == "${local.deployed_functions}"
    assert accounts["account_id"] == "${var.name_prefix}-${each.value.account}"
    assert len(set(ids.values())) == len(ENTRY_POINTS)
    assert "runtime" not in tf.resources["google_service_account"]
    for entry in ENTRY_POINTS:
        config = tf.function(entry)["service_config"][0]
        assert config["service_account_email"] == (
            f"${{google_service_account.function.{entry}.email}}"
        )
    # Service account ids are at most 30 characters.
    condition = tf.variables["name_prefix"]["validation"][0]["condition"]
    longest_prefix = int(re.search(r"\{0,(\d+)\}", condition).group(1)) + 2  # type: ignore[union-attr]
    assert all(longest_prefix + 1 + len(account) <= 30 for account in [*ids.values(), "invoker"])


def test_each_function_may_act_as_the_invoker_and_on_nothing_wider(tf: Module) -> None:
    grants = [
        (name, body)
        for type_, name, body in tf.iam_members()
        if type_ == "google_service_account_iam_member"
        and body["role"] == "roles/iam.serviceAccountUser"
    ]
    assert grants == [
        (
            "function_acts_as_invoker",
            {
                "for_each": "${local.deployed_functions}",
                "service_account_id": "${google_service_account.invoker.name}",
                "role": "roles/iam.serviceAccountUser",
                "member": "${google_service_account.function[each.key].member}",
            },
        )
    ]
    project_roles = {body["role"] for _, _, body in tf.iam_members() if "project" in body}
    assert not {"roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator"} & (
        project_roles
    )


def test_functions_deploy_after_the_grants_they_use(tf: Module) -> None:
    depends_on = set(tf.resource(*FUNCTIONS)["depends_on"])
    assert {
        "${google_secret_manager_secret_iam_member.function}",
        "${google_cloud_tasks_queue_iam_member.function_enqueues}",
        "${google_service_account_iam_member.function_acts_as_invoker}",
        "${google_project_iam_member.function_uses_firestore}",
        "${google_firestore_database.state}",
    } <= depends_on
    # One resource cannot wait for itself: why poll_job is no longer first is written down.
    assert "a resource cannot depend on itself" in tf.texts["functions.tf"]


def test_iam_is_granted_member_by_member_on_single_resources(tf: Module) -> None:
    iam_types = {type_ for type_ in tf.resources if "_iam_" in type_}
    assert iam_types
    assert all(type_.endswith("_iam_member") for type_ in iam_types)
    assert not any(type_.startswith("google_organization") for type_ in iam_types)
    # Project-wide only where nothing narrower exists: Firestore, the build's logs and images.
    project_roles = {
        (name, tf.resolve(body["role"]))
        for name, body in tf.resources.get("google_project_iam_member", {}).items()
    }
    assert project_roles == {
        ("function_uses_firestore", "roles/datastore.user"),
        ("build", "${each.value}"),
    }


def test_only_delete_track_is_reachable_from_the_internet(tf: Module) -> None:
    ingress = {
        entry: tf.resolve(tf.function(entry)["service_config"][0]["ingress_settings"])
        for entry in ENTRY_POINTS
    }
    public = [
        (type_, body["service"])
        for type_, _, body in tf.iam_members()
        if body["member"] == "allUsers"
    ]

    assert ingress == {
        "delete_track": "ALLOW_ALL",
        "poll_job": "ALLOW_INTERNAL_ONLY",
        "delete_track_event": "ALLOW_INTERNAL_ONLY",
    }
    assert public == [
        (
            "google_cloud_run_service_iam_member",
            '${google_cloudfunctions2_function.service["delete_track"].name}',
        )
    ]
    assert "checkov:skip=CKV_GCP_124:" in tf.block_text(*FUNCTIONS)


def test_public_intake_can_be_switched_off_for_domain_restricted_sharing(tf: Module) -> None:
    public = tf.resource("google_cloud_run_service_iam_member", "public_invokes_delete_track")
    callers = tf.resource("google_cloud_run_service_iam_member", "callers_invoke_delete_track")

    assert public["count"] == "${var.public_intake ? 1 : 0}"
    assert tf.variables["public_intake"]["default"] is True
    assert callers["for_each"] == "${toset(var.intake_invokers)}"
    assert callers["member"] == "${each.value}"
    assert callers["role"] == "roles/run.invoker"
    assert tf.variables["intake_invokers"]["default"] == []


def test_event_intake_is_a_pubsub_trigger_with_its_own_identity(tf: Module) -> None:
    event = tf.function("delete_track_event")
    trigger = event["dynamic"][0]["event_trigger"]
    content = trigger["content"][0]
    grant = tf.resource("google_cloud_run_service_iam_member", "events_invoke_delete_track_event")

    assert tf.locals["functions"]["delete_track_event"]["enabled"] == "${var.enable_event_intake}"
    assert tf.locals["deployed_functions"] == (
        "${{for key, fn in local.functions : key => fn if fn.enabled}}"
    )
    assert "local.functions.delete_track_event.event_trigger" in trigger["for_each"]
    assert tf.locals["functions"]["delete_track_event"]["event_trigger"] is True
    assert not any(tf.locals["functions"][e]["event_trigger"] for e in ("delete_track", "poll_job"))
    assert "google_pubsub_topic.delete_requests" in trigger["for_each"]
    assert content["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert content["retry_policy"] == "RETRY_POLICY_RETRY"
    assert content["service_account_email"] == "${one(google_service_account.events[*].email)}"
    assert grant["member"] == "${google_service_account.events[0].member}"
    assert (
        grant["service"] == '${google_cloudfunctions2_function.service["delete_track_event"].name}'
    )


def test_old_pubsub_service_agents_can_be_given_token_creator(tf: Module) -> None:
    grant = tf.resource("google_service_account_iam_member", "pubsub_agent_mints_event_tokens")

    assert grant["count"] == "${var.enable_event_intake && var.grant_pubsub_token_creator ? 1 : 0}"
    assert grant["role"] == "roles/iam.serviceAccountTokenCreator"
    assert grant["member"] == (
        "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    )
    # On the trigger's account only, not on the project.
    assert grant["service_account_id"] == "${google_service_account.events[0].name}"
    assert tf.variables["grant_pubsub_token_creator"]["default"] is False


def test_a_given_build_account_gets_what_a_functions_build_needs(tf: Module) -> None:
    project = tf.resource("google_project_iam_member", "build")
    bucket = tf.resource("google_storage_bucket_iam_member", "build_reads_source")
    roles = set(re.findall(r"roles/[\w.]+", tf.locals["build_project_roles"]))

    assert roles == {"roles/logging.logWriter", "roles/artifactregistry.writer"}
    assert project["for_each"] == (
        "${var.build_service_account == null ? toset([]) : local.build_project_roles}"
    )
    assert project["member"] == bucket["member"] == "${local.build_member}"
    assert bucket["count"] == "${var.build_service_account == null ? 0 : 1}"
    assert bucket["bucket"] == "${google_storage_bucket.source.name}"
    assert bucket["role"] == "roles/storage.objectViewer"
    # The functions are built only once the grants exist.
    depends_on = set(tf.resource(*FUNCTIONS)["depends_on"])
    assert {
        "${google_project_iam_member.build}",
        "${google_storage_bucket_iam_member.build_reads_source}",
    } <= depends_on


# --- state store and sweeper ------------------------------------------------------


def test_firestore_database_is_native_protected_and_optional(tf: Module) -> None:
    database = tf.resource("google_firestore_database", "state")

    assert database["count"] == "${var.create_firestore_database ? 1 : 0}"
    assert database["name"] == "${var.firestore_database}"
    assert database["type"] == "FIRESTORE_NATIVE"
    assert database["location_id"] == "${local.firestore_location}"
    assert database["delete_protection_state"] == "DELETE_PROTECTION_ENABLED"
    assert database["deletion_policy"] == "ABANDON"
    assert tf.variables["create_firestore_database"]["default"] is True
    assert tf.variables["firestore_location"]["default"] is None
    assert "firestore.googleapis.com" in tf.locals["required_apis"]


def test_firestore_fields_exempt_data_and_expire_records(tf: Module) -> None:
    field = tf.resource("google_firestore_field", "state")
    fields = tf.locals["firestore_fields"]

    assert field["for_each"] == "${local.firestore_fields}"
    assert field["database"] == "${var.firestore_database}"
    # An empty index_config: no single-field index on these fields.
    assert field["index_config"] == [{}]
    assert field["dynamic"][0]["ttl_config"]["for_each"] == "${each.value.ttl ? [1] : []}"
    assert {(f["collection"], f["field"], f["ttl"]) for f in fields.values()} == {
        ("requests", "data", False),
        ("requests", "expire_at", True),
        ("shared", "data", False),
        ("shared", "expire_at", True),
    }


def test_queried_fields_keep_their_single_field_indexes_and_need_no_composite(
    tf: Module,
) -> None:
    fields = tf.locals["firestore_fields"]

    assert not {f["field"] for f in fields.values()} & {"dead_letter_at", "due_at"}
    assert "google_firestore_index" not in tf.resources
    assert "needs a composite index" in tf.texts["firestore.tf"].replace("neither query ", "")


def test_every_function_may_read_and_write_records(tf: Module) -> None:
    grant = tf.resource("google_project_iam_member", "function_uses_firestore")

    assert grant["for_each"] == "${local.deployed_functions}"
    assert grant["role"] == "roles/datastore.user"
    assert grant["member"] == "${google_service_account.function[each.key].member}"


def test_sweeper_posts_to_poll_job_as_the_invoker(tf: Module) -> None:
    job = tf.resource("google_cloud_scheduler_job", "sweep")
    target = job["http_target"][0]
    token = target["oidc_token"][0]

    assert job["schedule"] == "${var.sweep_schedule}"
    assert tf.variables["sweep_schedule"]["default"] == "*/5 * * * *"
    assert target["http_method"] == "POST"
    assert target["uri"] == "${local.poll_url}/sweep"
    assert target["headers"] == {"Content-Type": "application/json"}
    assert token["service_account_email"] == "${local.invoker_email}"
    assert token["audience"] == "${local.poll_url}" == tf.locals["runtime_env"]["POLL_URL"]
    assert "cloudscheduler.googleapis.com" in tf.locals["required_apis"]
    assert "${google_cloud_run_service_iam_member.invoker_invokes_poll_job}" in job["depends_on"]


def test_deploy_guide_covers_the_apply_hazards_and_a_smoke_test() -> None:
    guide = (ROOT / "docs" / "DEPLOY.md").read_text(encoding="utf-8")
    for needed in (
        "Domain Restricted Sharing",
        "public_intake = false",
        "grant_pubsub_token_creator",
        "up to 3 days",
        "GET",
        "/requests/",
        "What the Terraform state holds",
        "build_service_account",
    ):
        assert needed in guide, needed


# --- what is deployed -------------------------------------------------------------


def test_every_function_is_an_entry_point_defined_in_main_py() -> None:
    tree = ast.parse((ROOT / "main.py").read_text(encoding="utf-8"))
    defined = {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert set(ENTRY_POINTS) <= defined


def test_functions_run_python312_from_the_source_archive(tf: Module) -> None:
    for entry in ENTRY_POINTS:
        build = tf.function(entry)["build_config"][0]
        assert build["runtime"] == "python312", entry
        assert build["source"][0]["storage_source"][0] == {
            "bucket": "${google_storage_bucket.source.name}",
            "object": "${google_storage_bucket_object.source.name}",
        }
    archive_name = tf.resource("google_storage_bucket_object", "source")["name"]
    assert "${data.archive_file.source.output_md5}" in archive_name


def test_source_archive_holds_only_what_runs_in_production(tf: Module) -> None:
    archive = tf.data["archive_file"]["source"]
    dynamic = archive["dynamic"][0]["source"]

    assert set(tf.locals["deployed_files"]) | set(tf.locals["deployed_dirs"]) == {
        "main.py",
        "requirements.txt",
        "handlers",
        "core",
        "adapters",
        "schemas",
    }
    assert "source_dir" not in archive and "source_file" not in archive
    assert dynamic["for_each"] == "${toset(local.source_files)}"
    assert dynamic["content"][0]["filename"] == "${source.value}"


def test_source_archive_leaves_out_bytecode_and_hidden_files(tf: Module) -> None:
    found = re.search(r'regex\("(.+?)", path\)', tf.locals["source_files"])
    assert found
    hidden = re.compile(found.group(1).replace("\\\\", "\\"))
    assert 'endswith(path, ".pyc")' in tf.locals["source_files"]

    for skipped in ("__pycache__/main.cpython-312.pyc", "sub/__pycache__/x", ".DS_Store", ".x/y"):
        assert hidden.search(skipped), skipped
    for kept in ("intake.py", "sub/model.py", "deletion_request.json", "__init__.py"):
        assert not hidden.search(kept), kept


# --- the module itself ------------------------------------------------------------


def test_providers_are_pinned(tf: Module) -> None:
    providers = tf.settings[0]["required_providers"][0]

    assert set(providers) == {"google", "random", "archive"}
    for name, spec in providers.items():
        assert spec["source"] == f"hashicorp/{name}"
        assert re.fullmatch(r"~> \d+\.\d+|>= [\d.]+, < \d+\.0\.0", spec["version"]), spec
    # Ephemeral random_password arrived in random 3.7.1.
    assert providers["random"]["version"] == ">= 3.7.1, < 4.0.0"


def test_every_variable_is_typed_and_described(tf: Module) -> None:
    for name, spec in tf.variables.items():
        assert spec.get("type") and spec.get("description"), name


def test_tfvars_example_sets_only_declared_variables(tf: Module) -> None:
    text = (MODULE / "terraform.tfvars.example").read_text(encoding="utf-8")
    example = hcl2.loads(text, serialization_options=_PARSE)
    commented = re.findall(r"^# ([a-z_]+) +=", text, flags=re.MULTILINE)

    assert "project_id" in example
    assert set(example) | set(commented) <= set(tf.variables)


def test_outputs_say_what_to_paste_into_datocms(tf: Module) -> None:
    webhook = tf.outputs["datocms_webhook"]["value"]

    assert webhook["url"] == tf.outputs["intake_url"]["value"] == "${local.intake_url}"
    # The token itself is not in the state: the output says where to read it.
    assert webhook["read_token"].startswith("gcloud secrets versions access ")
    assert 'google_secret_manager_secret.service["INTAKE_TOKEN"]' in webhook["token_secret"]
    assert "random_" not in str(tf.outputs)
    assert "secret_names" in tf.outputs


def test_only_sensitive_outputs_carry_secret_values(tf: Module) -> None:
    for name, output in tf.outputs.items():
        if re.search(r"random_|secret_values|datocms_api_token", str(output["value"])):
            assert output.get("sensitive") is True, name


def test_every_checkov_suppression_gives_its_reason(tf: Module) -> None:
    suppressions = [
        line.strip()
        for text in tf.texts.values()
        for line in text.splitlines()
        if "checkov:skip" in line
    ]
    assert suppressions
    for line in suppressions:
        assert re.fullmatch(r"# checkov:skip=CKV2?_[A-Z]+_\d+: .{20,}", line), line
