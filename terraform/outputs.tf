output "intake_url" {
  description = "URL of delete_track: where DatoCMS webhooks and scripts POST deletion requests."
  value       = google_cloudfunctions2_function.delete_track.url
}

output "datocms_webhook" {
  description = "What to paste into DatoCMS (Project settings > Webhooks): the URL, then either the custom header or the Basic auth pair. Read it with: terraform output -json datocms_webhook"
  sensitive   = true
  value = {
    url = google_cloudfunctions2_function.delete_track.url
    custom_header = {
      name  = "Authorization"
      value = "Bearer ${random_password.intake_token.result}"
    }
    # Alternative to the header: the username is not checked.
    basic_auth = {
      username = "datocms"
      password = random_password.intake_token.result
    }
  }
}

output "secret_names" {
  description = "Secret Manager secret holding each secret setting (read one with: gcloud secrets versions access latest --secret=NAME)."
  value       = { for name, secret in google_secret_manager_secret.service : name => secret.secret_id }
}

output "poll_url" {
  description = "URL of poll_job: the target of every task and the audience of its OIDC token."
  value       = google_cloudfunctions2_function.poll_job.url
}

output "queues" {
  description = "Cloud Tasks queues: DatoCMS steps and callback deliveries."
  value = {
    steps     = google_cloud_tasks_queue.steps.id
    callbacks = google_cloud_tasks_queue.callbacks.id
  }
}

output "service_accounts" {
  description = "Identities: the functions' runtime, the tasks' OIDC invoker, and the Eventarc trigger (null without the event intake)."
  value = {
    runtime = google_service_account.runtime.email
    invoker = google_service_account.invoker.email
    events  = one(google_service_account.events[*].email)
  }
}

output "event_topic" {
  description = "Pub/Sub topic whose messages delete_track_event receives (null without the event intake)."
  value       = one(google_pubsub_topic.delete_requests[*].id)
}
