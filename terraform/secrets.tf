# The four secrets, in Secret Manager only. The service's own secrets are
# generated here; the DatoCMS token comes from the user. Terraform state holds
# their values (as it holds every generated secret): keep the state private.

resource "random_password" "intake_token" {
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

  secret_values = {
    DATOCMS_API_TOKEN = var.datocms_api_token
    INTAKE_TOKEN      = random_password.intake_token.result
    # Several keys, space-separated: the first signs, all verify.
    TASK_SIGNING_SECRET = join(" ", [for id in var.task_signing_key_ids : random_password.task_signing[id].result])
    # The service signs every callback with each key (rotation without a gap).
    CALLBACK_SIGNING_SECRET = join(" ", [for id in var.callback_signing_key_ids : "whsec_${random_bytes.callback_signing[id].base64}"])
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

  secret      = each.value.id
  secret_data = local.secret_values[each.key]

  lifecycle {
    # Functions pin a version number: the new one must exist before the old goes.
    create_before_destroy = true
  }
}

# Each secret is readable by the runtime account only.
resource "google_secret_manager_secret_iam_member" "runtime" {
  for_each = google_secret_manager_secret.service

  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.runtime.member
}
