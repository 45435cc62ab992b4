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
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

from adapters.cloud_tasks import CloudTasksQueue
from adapters.tasks import RetryPolicy
from core.settings import VARIABLES, Settings, Variable, decode_webhook_secret
from handlers.service import STEPS_RETRY, callback_retry

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "terraform"
ENTRY_POINTS = ("delete_track", "poll_job", "delete_track_event")
CODE_VARIABLES = {variable.name: variable for variable in VARIABLES}
SECRETS = {variable.name for variable in VARIABLES if variable.secret}
#: Settings whose deployed value differs from the code's (laptop) default on purpose.
DEPLOYMENT_VALUES = {"TASKS_BACKEND", "POLL_URL"}

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
    outputs: dict[str, dict[str, Any]]
    providers: dict[str, dict[str, Any]]
    settings: list[dict[str, Any]]
    texts: dict[str, str]

    @classmethod
    def load(cls, directory: Path) -> Module:
        module = cls({}, {}, {}, {}, {}, {}, [], {})
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
            for kind, target in (("resource", module.resources), ("data", module.data)):
                for block in parsed.get(kind, []):
                    for type_, named in block.items():
                        target.setdefault(type_, {}).update(named)
            module.settings.extend(parsed.get("terraform", []))
        return module

    def resource(self, type_: str, name: str) -> dict[str, Any]:
        return self.resources[type_][name]

    def function(self, entry_point: str) -> dict[str, Any]:
        """The function whose entry point is `entry_point` (exactly one)."""
        found = [
            body
            for body in self.resources.get("google_cloudfunctions2_function", {}).values()
            if body["build_config"][0]["entry_point"] == entry_point
        ]
        assert len(found) == 1, f"{entry_point}: deployed {len(found)} times"
        return found[0]

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
    return RetryPolicy(
        max_attempts=int(retry["max_attempts"]),
        min_backoff=_seconds(retry["min_backoff"]),
        max_backoff=_seconds(retry["max_backoff"]),
        max_doublings=int(retry["max_doublings"]),
    )


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

    assert env["TASKS_BACKEND"] == "cloudtasks"
    assert (env["TASKS_QUEUE"], env["CALLBACK_QUEUE"]) == (steps["name"], callbacks["name"])
    assert steps["name"] != callbacks["name"]
    assert env["TASKS_LOCATION"] == steps["location"] == callbacks["location"]
    assert env["TASKS_PROJECT"] == tf.resolve(tf.providers["google"]["project"])
    assert env["TASKS_SERVICE_ACCOUNT"] == "${google_service_account.invoker.email}"
    assert "CLOUD_TASKS_EMULATOR_HOST" not in env
    assert env["CALLBACK_ALLOW_PRIVATE_NETWORKS"] == "false"


def test_the_queue_the_functions_build_targets_poll_job_as_the_invoker(tf: Module) -> None:
    env = tf.function_env("delete_track")
    queue = CloudTasksQueue.from_settings(_deployed_settings(tf, "delete_track"))

    assert queue.target_url == env["POLL_URL"] == tf.resolve("${local.poll_url}")
    assert queue.service_account == env["TASKS_SERVICE_ACCOUNT"]
    assert (queue.steps_queue, queue.callbacks_queue) == (env["TASKS_QUEUE"], env["CALLBACK_QUEUE"])


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
    version = tf.resource("google_secret_manager_secret_version", "service")

    assert secret["for_each"] == "${toset(local.secret_names)}"
    assert set(tf.resolve("${local.secret_names}")) == SECRETS
    assert set(tf.locals["secret_values"]) == SECRETS
    assert secret["replication"] == [{"auto": [{}]}]
    assert version["lifecycle"][0]["create_before_destroy"] is True


def test_each_secret_is_readable_by_the_runtime_account_only(tf: Module) -> None:
    grants = [
        (type_, body)
        for type_, _, body in tf.iam_members()
        if type_.startswith("google_secret_manager") or "secretmanager" in body["role"]
    ]
    assert grants == [
        (
            "google_secret_manager_secret_iam_member",
            {
                "for_each": "${google_secret_manager_secret.service}",
                "secret_id": "${each.value.id}",
                "role": "roles/secretmanager.secretAccessor",
                "member": "${google_service_account.runtime.member}",
            },
        )
    ]


def test_generated_secrets_have_the_shape_the_code_accepts(tf: Module) -> None:
    intake = tf.resource("random_password", "intake_token")
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
    assert values["DATOCMS_API_TOKEN"] == "${var.datocms_api_token}"
    assert tf.variables["datocms_api_token"]["sensitive"] is True
    assert "default" not in tf.variables["datocms_api_token"]


# --- queues -----------------------------------------------------------------------


def test_callback_queue_and_callback_settings_come_from_one_definition(tf: Module) -> None:
    retry = tf.resource("google_cloud_tasks_queue", "callbacks")["retry_config"][0]
    env = tf.locals["runtime_env"]

    assert retry["max_attempts"] == env["CALLBACK_MAX_ATTEMPTS"]
    assert retry["min_backoff"] == env["CALLBACK_RETRY_MIN_SECONDS"] + "s"
    assert retry["max_backoff"] == env["CALLBACK_RETRY_MAX_SECONDS"] + "s"
    for setting in ("max_attempts", "min_backoff", "max_backoff", "max_doublings"):
        assert retry[setting].startswith("${local.callback_retry."), setting


def test_callback_queue_retries_exactly_as_the_functions_are_told(tf: Module) -> None:
    retry = tf.resource("google_cloud_tasks_queue", "callbacks")["retry_config"][0]

    assert _queue_policy(tf, "callbacks") == callback_retry(_deployed_settings(tf, "poll_job"))
    # No age limit: max_attempts alone decides which attempt is the last.
    assert retry["max_retry_duration"] == "0s"


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
    assert poll["max_instance_count"] == "${local.poll_job_max_instances}"
    assert tf.locals["poll_job_max_instances"] == (
        "${local.queue_concurrency.steps + local.queue_concurrency.callbacks}"
    )
    assert poll["max_instance_request_concurrency"] == 1


def test_poll_job_runs_as_long_as_cloud_tasks_waits_for_it(tf: Module) -> None:
    deadline = inspect.signature(CloudTasksQueue).parameters["dispatch_deadline"].default
    assert tf.function("poll_job")["service_config"][0]["timeout_seconds"] >= deadline


def test_runtime_account_may_enqueue_on_both_queues(tf: Module) -> None:
    grant = tf.resource("google_cloud_tasks_queue_iam_member", "runtime_enqueues")

    assert grant["for_each"] == {
        "steps": "${google_cloud_tasks_queue.steps}",
        "callbacks": "${google_cloud_tasks_queue.callbacks}",
    }
    assert grant["role"] == "roles/cloudtasks.enqueuer"
    assert grant["member"] == "${google_service_account.runtime.member}"


# --- poll URL, OIDC and invocation ------------------------------------------------


def test_poll_url_is_the_deterministic_url_of_poll_job(tf: Module) -> None:
    poll = tf.function("poll_job")
    region = tf.resolve(poll["location"])
    project = tf.resolve(tf.providers["google"]["project"])
    expected = f"https://{region}-{project}.cloudfunctions.net/{tf.resolve(poll['name'])}"

    assert tf.resolve("${local.poll_url}") == expected
    # The apply fails if the API ever reports another URL for poll_job.
    assert {
        "condition": "${self.url == local.poll_url}",
        "error_message": poll["lifecycle"][0]["postcondition"][0]["error_message"],
    } == poll["lifecycle"][0]["postcondition"][0]


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
                "location": "${google_cloudfunctions2_function.poll_job.location}",
                "service": "${google_cloudfunctions2_function.poll_job.name}",
                "role": "roles/run.invoker",
                "member": "${google_service_account.invoker.member}",
            },
        )
    ]


def test_the_runtime_account_may_act_as_the_invoker_only(tf: Module) -> None:
    grants = [
        body for type_, _, body in tf.iam_members() if type_ == "google_service_account_iam_member"
    ]
    assert grants == [
        {
            "service_account_id": "${google_service_account.invoker.name}",
            "role": "roles/iam.serviceAccountUser",
            "member": "${google_service_account.runtime.member}",
        }
    ]
    for entry in ENTRY_POINTS:
        config = tf.function(entry)["service_config"][0]
        assert config["service_account_email"] == "${google_service_account.runtime.email}"


def test_intake_functions_deploy_after_the_loop_they_start_is_wired(tf: Module) -> None:
    for entry in ("delete_track", "delete_track_event"):
        depends_on = set(tf.function(entry)["depends_on"])
        assert {
            "${google_cloudfunctions2_function.poll_job}",
            "${google_cloud_tasks_queue_iam_member.runtime_enqueues}",
            "${google_service_account_iam_member.runtime_acts_as_invoker}",
            "${google_cloud_run_service_iam_member.invoker_invokes_poll_job}",
            "${google_secret_manager_secret_iam_member.runtime}",
        } <= depends_on, entry


def test_iam_is_granted_member_by_member_on_single_resources(tf: Module) -> None:
    iam_types = {type_ for type_ in tf.resources if "_iam_" in type_}
    assert iam_types
    assert all(type_.endswith("_iam_member") for type_ in iam_types)
    assert not any(
        type_.startswith(("google_project_iam", "google_organization")) for type_ in iam_types
    )


def test_only_delete_track_is_reachable_from_the_internet(tf: Module) -> None:
    ingress = {
        entry: tf.function(entry)["service_config"][0]["ingress_settings"] for entry in ENTRY_POINTS
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
            "${google_cloudfunctions2_function.delete_track.name}",
        )
    ]
    assert "checkov:skip=CKV_GCP_124:" in tf.block_text(
        "google_cloudfunctions2_function", "delete_track"
    )


def test_event_intake_is_a_pubsub_trigger_with_its_own_identity(tf: Module) -> None:
    event = tf.function("delete_track_event")
    trigger = event["event_trigger"][0]
    grant = tf.resource("google_cloud_run_service_iam_member", "events_invoke_delete_track_event")

    assert event["count"] == "${var.enable_event_intake ? 1 : 0}"
    assert trigger["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert trigger["pubsub_topic"] == "${google_pubsub_topic.delete_requests[0].id}"
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert trigger["service_account_email"] == "${google_service_account.events[0].email}"
    assert grant["member"] == "${google_service_account.events[0].member}"
    assert grant["service"] == "${google_cloudfunctions2_function.delete_track_event[0].name}"


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
        assert re.fullmatch(r"~> \d+\.\d+", spec["version"]), spec


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
    webhook = tf.outputs["datocms_webhook"]

    assert webhook["sensitive"] is True
    assert webhook["value"]["url"] == tf.outputs["intake_url"]["value"]
    assert webhook["value"]["custom_header"] == {
        "name": "Authorization",
        "value": "Bearer ${random_password.intake_token.result}",
    }
    assert webhook["value"]["basic_auth"]["password"] == "${random_password.intake_token.result}"
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
