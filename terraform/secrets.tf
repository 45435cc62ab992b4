# The four secrets, in Secret Manager only, written through the provider's
# write-only secret_data_wo (Terraform >= 1.11): no secret version in the state
# holds a value. What the state still holds, and why, is in docs/DEPLOY.md
# ("What the Terraform state holds").
#
#   DATOCMS_API_TOKEN        an ephemeral input variable: never in state or plan
#   INTAKE_TOKEN             an ephemeral random_password: never in state or plan
#   TASK_SIGNING_SECRET      managed random_password per key id: IN STATE, since a
#   CALLBACK_SIGNING_SECRET  rotation must keep the earlier keys across applies,
#                            and an ephemeral value is new on every run
#
# A write-only value is written only when its secret_data_wo_version changes.

ephemeral "random_password" "intake_token" {
  # Sent as a bearer token or a Basic auth password: letters and digits only.
  length  = 48
  special = false
}

resource "random_password" "task_signing" {
  for_each = toset(var.task_signing_key_ids)

  # The code splits TASK_SIGNING_SECRET on whitespace and wants 16+ characters per key.
  length  = 64
  special = false
}

resource "random_bytes" "callback_signing" {
  for_each = toset(var.callback_signing_key_ids)

  # Standard Webhooks keys are 24 to 64 bytes.
  length = 32
}

locals {
  secret_names = ["DATOCMS_API_TOKEN", "INTAKE_TOKEN", "TASK_SIGNING_SECRET", "CALLBACK_SIGNING_SECRET"]

  # Ephemeral (it holds ephemeral values): usable only in write-only arguments.
  secret_values = {
    DATOCMS_API_TOKEN = var.datocms_api_token
    INTAKE_TOKEN      = ephemeral.random_password.intake_token.result
    # Several keys, space-separated: the first signs, all verify.
    TASK_SIGNING_SECRET = join(" ", [for id in var.task_signing_key_ids : random_password.task_signing[id].result])
    # The service signs every callback with each key (rotation without a gap).
    CALLBACK_SIGNING_SECRET = join(" ", [for id in var.callback_signing_key_ids : "whsec_${random_bytes.callback_signing[id].base64}"])
  }

  # When each value is written again. The two given by hand count up; the key
  # lists write a new version whenever the list of ids changes (a number taken
  # from the ids, which are not secret).
  secret_data_versions = {
    DATOCMS_API_TOKEN       = var.datocms_api_token_version
    INTAKE_TOKEN            = var.intake_token_version
    TASK_SIGNING_SECRET     = parseint(substr(sha256(join(" ", var.task_signing_key_ids)), 0, 8), 16)
    CALLBACK_SIGNING_SECRET = parseint(substr(sha256(join(" ", var.callback_signing_key_ids)), 0, 8), 16)
  }
}

resource "google_secret_manager_secret" "service" {
  for_each = toset(local.secret_names)

  secret_id = "${var.name_prefix}-${lower(replace(each.key, "_", "-"))}"

  replication {
    auto {}
  }

  depends_on = [google_project_service.required]
}

resource "google_secret_manager_secret_version" "service" {
  for_each = google_secret_manager_secret.service

  secret                 = each.value.id
  secret_data_wo         = local.secret_values[each.key]
  secret_data_wo_version = local.secret_data_versions[each.key]

  # A new value replaces the version. No create_before_destroy (it would spread
  # to the secret and the generated values); instead the replaced version is
  # left enabled, so instances still pinned to it keep starting until the
  # functions roll to the new one. Destroy it by hand after a rotation (docs/DEPLOY.md).
  deletion_policy = "ABANDON"
}

# Each secret is readable only by the functions that use it (local.functions[*].secrets).
locals {
  function_secrets = merge([
    for key, fn in local.deployed_functions : {
      for secret in fn.secrets : "${key}/${secret}" => { function = key, secret = secret }
    }
  ]...)
}

resource "google_secret_manager_secret_iam_member" "function" {
  for_each = local.function_secrets

  secret_id = google_secret_manager_secret.service[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.value.function].member
}
