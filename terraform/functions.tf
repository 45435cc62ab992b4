# The three entry points of main.py, as 2nd-gen Cloud Functions built from the
# same source archive. They share one runtime account and one set of settings;
# each receives only the secrets it uses.

locals {
  function_secrets = {
    delete_track       = local.secret_names
    poll_job           = ["DATOCMS_API_TOKEN", "TASK_SIGNING_SECRET", "CALLBACK_SIGNING_SECRET"]
    delete_track_event = ["DATOCMS_API_TOKEN", "TASK_SIGNING_SECRET", "CALLBACK_SIGNING_SECRET"]
  }

  # poll_job can take every task both queues may dispatch at once, so Cloud
  # Tasks is never refused for want of an instance (a refusal costs an attempt).
  poll_job_max_instances = local.queue_concurrency.steps + local.queue_concurrency.callbacks
}

resource "google_cloudfunctions2_function" "poll_job" {
  name        = local.function_names.poll_job
  location    = var.region
  description = "Target of every task: polls DatoCMS jobs, retries DELETEs, delivers signed callbacks."

  build_config {
    runtime         = "python312"
    entry_point     = "poll_job"
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.runtime.email
    # Reached only by Cloud Tasks (internal traffic), with the invoker's OIDC token.
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    available_memory                 = "256M"
    timeout_seconds                  = 60
    max_instance_count               = local.poll_job_max_instances
    max_instance_request_concurrency = 1
    environment_variables            = merge(local.runtime_env, local.optional_env)

    dynamic "secret_environment_variables" {
      for_each = toset(local.function_secrets.poll_job)
      content {
        key        = secret_environment_variables.value
        project_id = var.project_id
        secret     = google_secret_manager_secret.service[secret_environment_variables.value].secret_id
        # A pinned version: a new secret value rolls out a new revision.
        version = google_secret_manager_secret_version.service[secret_environment_variables.value].version
      }
    }
  }

  lifecycle {
    postcondition {
      condition     = self.url == local.poll_url
      error_message = "poll_job's URL is ${self.url}, not the ${local.poll_url} every function was given as POLL_URL (task target and OIDC audience)."
    }
  }

  depends_on = [
    google_project_service.required,
    google_secret_manager_secret_iam_member.runtime,
  ]
}

resource "google_cloudfunctions2_function" "delete_track" {
  # checkov:skip=CKV_GCP_124: the webhook intake must accept DatoCMS calls from the internet; each request must carry INTAKE_TOKEN (bearer or Basic auth), checked in constant time, else 401
  name        = local.function_names.delete_track
  location    = var.region
  description = "Intake of deletion requests (DatoCMS webhooks, scripts), authenticated with INTAKE_TOKEN."

  build_config {
    runtime         = "python312"
    entry_point     = "delete_track"
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.runtime.email
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    available_memory                 = "256M"
    timeout_seconds                  = 60
    max_instance_count               = 20
    max_instance_request_concurrency = 1
    environment_variables            = merge(local.runtime_env, local.optional_env)

    dynamic "secret_environment_variables" {
      for_each = toset(local.function_secrets.delete_track)
      content {
        key        = secret_environment_variables.value
        project_id = var.project_id
        secret     = google_secret_manager_secret.service[secret_environment_variables.value].secret_id
        version    = google_secret_manager_secret_version.service[secret_environment_variables.value].version
      }
    }
  }

  # Accept requests only once the loop they start is wired: poll_job deployed
  # (and its URL checked), the queues writable, the invoker able to call it.
  depends_on = [
    google_project_service.required,
    google_secret_manager_secret_iam_member.runtime,
    google_cloudfunctions2_function.poll_job,
    google_cloud_tasks_queue_iam_member.runtime_enqueues,
    google_service_account_iam_member.runtime_acts_as_invoker,
    google_cloud_run_service_iam_member.invoker_invokes_poll_job,
  ]
}

resource "google_pubsub_topic" "delete_requests" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; messages are deletion requests (ids and a callback URL), and a customer-managed key would add a KMS key ring this service does not otherwise need
  count = var.enable_event_intake ? 1 : 0

  name = "${var.name_prefix}-delete-requests"

  depends_on = [google_project_service.required]
}

resource "google_cloudfunctions2_function" "delete_track_event" {
  count = var.enable_event_intake ? 1 : 0

  name        = local.function_names.delete_track_event
  location    = var.region
  description = "Intake of deletion requests published to the ${var.name_prefix}-delete-requests topic."

  build_config {
    runtime         = "python312"
    entry_point     = "delete_track_event"
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.runtime.email
    # Eventarc's Pub/Sub push is internal traffic.
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    available_memory                 = "256M"
    timeout_seconds                  = 60
    max_instance_count               = 10
    max_instance_request_concurrency = 1
    environment_variables            = merge(local.runtime_env, local.optional_env)

    dynamic "secret_environment_variables" {
      for_each = toset(local.function_secrets.delete_track_event)
      content {
        key        = secret_environment_variables.value
        project_id = var.project_id
        secret     = google_secret_manager_secret.service[secret_environment_variables.value].secret_id
        version    = google_secret_manager_secret_version.service[secret_environment_variables.value].version
      }
    }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.delete_requests[0].id
    service_account_email = google_service_account.events[0].email
    # Transient failures are retried; the code acknowledges requests that can never succeed.
    retry_policy = "RETRY_POLICY_RETRY"
  }

  depends_on = [
    google_project_service.required,
    google_secret_manager_secret_iam_member.runtime,
    google_cloudfunctions2_function.poll_job,
    google_cloud_tasks_queue_iam_member.runtime_enqueues,
    google_service_account_iam_member.runtime_acts_as_invoker,
    google_cloud_run_service_iam_member.invoker_invokes_poll_job,
  ]
}
