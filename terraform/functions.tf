# The three entry points of main.py, as 2nd-gen Cloud Functions built from the
# same source archive: one resource, one entry of local.functions per function.
# They share one set of settings; each has its own identity (iam.tf) and
# receives only the secrets it uses.
#
# Why one for_each and what it costs (checked with checkov 3.3, which expands
# for_each): the inline checkov skips stay attached with their reasons, but a
# skip on this block covers every instance, so CKV_GCP_124 is skipped for
# poll_job and delete_track_event too; tests/terraform holds their ingress to
# ALLOW_INTERNAL_ONLY instead. And a resource cannot depend on itself, so the
# intakes are no longer created strictly after poll_job: nothing needs that any
# more (their settings are built from known inputs, not from poll_job), and a
# task sent before poll_job or its invoker grant exists is retried by its queue.

locals {
  functions = {
    delete_track = {
      description = "Intake of deletion requests (DatoCMS webhooks, scripts), authenticated with INTAKE_TOKEN."
      account     = "intake"
      # Public at the network layer: DatoCMS calls from the internet; each request carries INTAKE_TOKEN.
      ingress       = var.intake_ingress
      max_instances = 20
      secrets       = local.secret_names
      # callbacks: an operator's re-delivery of a dead letter (POST /requests/{id}/callback).
      queues        = ["steps", "callbacks"]
      event_trigger = false
      enabled       = true
    }
    poll_job = {
      description = "Target of every task: polls DatoCMS jobs, retries DELETEs, delivers signed callbacks, sweeps."
      account     = "poller"
      # Reached only by Cloud Tasks and Cloud Scheduler (internal traffic on run.app), with the invoker's OIDC token.
      ingress = "ALLOW_INTERNAL_ONLY"
      # Can take every task both queues may dispatch at once, so Cloud Tasks is
      # never refused for want of an instance (a refusal costs an attempt).
      max_instances = local.poll_job_max_instances
      secrets       = ["DATOCMS_API_TOKEN", "TASK_SIGNING_SECRET", "CALLBACK_SIGNING_SECRET"]
      queues        = ["steps", "callbacks"]
      event_trigger = false
      enabled       = true
    }
    delete_track_event = {
      description = "Intake of deletion requests published to the ${var.name_prefix}-delete-requests topic."
      account     = "eventfn"
      # Eventarc's Pub/Sub push is internal traffic.
      ingress       = "ALLOW_INTERNAL_ONLY"
      max_instances = 10
      secrets       = ["DATOCMS_API_TOKEN", "TASK_SIGNING_SECRET", "CALLBACK_SIGNING_SECRET"]
      queues        = ["steps"]
      event_trigger = true
      enabled       = var.enable_event_intake
    }
  }

  deployed_functions = { for key, fn in local.functions : key => fn if fn.enabled }

  poll_job_max_instances = local.queue_concurrency.steps + local.queue_concurrency.callbacks

  # At least Cloud Tasks' dispatch deadline (adapters.cloud_tasks); also the sweeper's attempt deadline.
  function_timeout_seconds = 60
}

resource "google_cloudfunctions2_function" "service" {
  # checkov:skip=CKV_GCP_124: only delete_track is ALLOW_ALL (the webhook intake must accept DatoCMS calls from the internet; each request must carry INTAKE_TOKEN, checked in constant time, else 401); poll_job and delete_track_event are ALLOW_INTERNAL_ONLY, held by tests/terraform
  for_each = local.deployed_functions

  name        = local.function_names[each.key]
  location    = var.region
  description = each.value.description

  build_config {
    runtime         = "python312"
    entry_point     = each.key
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.function[each.key].email
    ingress_settings                 = each.value.ingress
    all_traffic_on_latest_revision   = true
    available_memory                 = "256M"
    timeout_seconds                  = local.function_timeout_seconds
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = 1
    environment_variables            = merge(local.runtime_env, local.optional_env)

    dynamic "secret_environment_variables" {
      for_each = toset(each.value.secrets)
      content {
        key        = secret_environment_variables.value
        project_id = var.project_id
        secret     = google_secret_manager_secret.service[secret_environment_variables.value].secret_id
        # A pinned version: a new secret value rolls out a new revision.
        version = google_secret_manager_secret_version.service[secret_environment_variables.value].version
      }
    }
  }

  dynamic "event_trigger" {
    for_each = each.value.event_trigger ? [one(google_pubsub_topic.delete_requests[*].id)] : []
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
      pubsub_topic          = event_trigger.value
      service_account_email = one(google_service_account.events[*].email)
      # Transient failures are retried; the code acknowledges requests that can never succeed.
      retry_policy = "RETRY_POLICY_RETRY"
    }
  }

  lifecycle {
    postcondition {
      # provider 7.x: service_config[0].uri is the run.app URL every function was given.
      condition     = self.service_config[0].uri == local.function_urls[each.key]
      error_message = "${each.key}'s URL is ${self.service_config[0].uri}, not the ${local.function_urls[each.key]} the functions were given (POLL_URL: task target and OIDC audience; INTAKE_URL)."
    }
  }

  # Every grant a function uses exists before it serves its first request.
  depends_on = [
    google_project_service.required,
    google_secret_manager_secret_iam_member.function,
    google_cloud_tasks_queue_iam_member.function_enqueues,
    google_service_account_iam_member.function_acts_as_invoker,
    google_project_iam_member.function_uses_firestore,
    google_firestore_database.state,
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_reads_source,
  ]
}

resource "google_pubsub_topic" "delete_requests" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; messages are deletion requests (ids and a callback URL), and a customer-managed key would add a KMS key ring this service does not otherwise need
  count = var.enable_event_intake ? 1 : 0

  name = "${var.name_prefix}-delete-requests"

  depends_on = [google_project_service.required]
}
