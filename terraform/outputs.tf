output "intake_url" {
  description = "URL of delete_track (its run.app URL, also INTAKE_URL): where DatoCMS webhooks and scripts POST deletion requests."
  value       = local.intake_url
}

output "datocms_webhook" {
  description = "What to paste into DatoCMS (Project settings > Webhooks): the URL, and how to read the token to put in the Authorization header (Bearer TOKEN) or as the Basic auth password. The token itself is not in the state."
  value = {
    url            = local.intake_url
    token_secret   = google_secret_manager_secret.service["INTAKE_TOKEN"].secret_id
    token_version  = google_secret_manager_secret_version.service["INTAKE_TOKEN"].version
    read_token     = "gcloud secrets versions access ${google_secret_manager_secret_version.service["INTAKE_TOKEN"].version} --project=${var.project_id} --secret=${google_secret_manager_secret.service["INTAKE_TOKEN"].secret_id}"
    basic_username = "datocms"
  }
}

output "secret_names" {
  description = "Secret Manager secret holding each secret setting (read one with: gcloud secrets versions access VERSION --secret=NAME)."
  value       = { for name, secret in google_secret_manager_secret.service : name => secret.secret_id }
}

output "secret_versions" {
  description = "The secret version each function is pinned to."
  value       = { for name, version in google_secret_manager_secret_version.service : name => version.version }
}

output "poll_url" {
  description = "URL of poll_job: the target of every task and the audience of its OIDC token."
  value       = local.poll_url
}

output "queues" {
  description = "Cloud Tasks queues: DatoCMS steps and callback deliveries."
  value = {
    steps     = google_cloud_tasks_queue.steps.id
    callbacks = google_cloud_tasks_queue.callbacks.id
  }
}

output "service_accounts" {
  description = "Identities: each function's runtime account, the tasks' OIDC invoker, and the Eventarc trigger (null without the event intake)."
  value = {
    functions = { for key, account in google_service_account.function : key => account.email }
    invoker   = google_service_account.invoker.email
    events    = one(google_service_account.events[*].email)
  }
}

output "event_topic" {
  description = "Pub/Sub topic whose messages delete_track_event receives (null without the event intake)."
  value       = one(google_pubsub_topic.delete_requests[*].id)
}

output "firestore_database" {
  description = "Firestore database holding the request records."
  value       = var.firestore_database
}

output "log_metrics" {
  description = "Logs-based metric types (for dashboards and alerting): see docs/OPERATIONS.md."
  value       = local.metric_types
}

output "alert_policies" {
  description = "Alert policy ids: dead letter, failure rate, no successful deletion."
  value = {
    dead_letter  = google_monitoring_alert_policy.dead_letter.name
    failure_rate = google_monitoring_alert_policy.failure_rate.name
    no_success   = google_monitoring_alert_policy.no_success.name
  }
}
