# Two Cloud Tasks queues, both delivering to poll_job. Every value is explicit.
# A deleted queue's name stays blocked for 7 days: change name_prefix to
# recreate one sooner.

# DatoCMS steps (polls, retried DELETEs). Its dispatch rate is the cluster-wide
# limiter that keeps the project under DatoCMS's 60 requests per 3 seconds.
resource "google_cloud_tasks_queue" "steps" {
  name     = "${var.name_prefix}-steps"
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.datocms_requests_per_second
    max_concurrent_dispatches = local.queue_concurrency.steps
  }

  retry_config {
    max_attempts       = local.steps_retry.max_attempts
    max_retry_duration = "0s"
    min_backoff        = "${local.steps_retry.min_backoff_seconds}s"
    max_backoff        = "${local.steps_retry.max_backoff_seconds}s"
    max_doublings      = local.steps_retry.max_doublings
  }

  depends_on = [google_project_service.required]
}

# Callback deliveries. poll_job answers non-2xx to have a delivery retried and,
# on the last attempt (X-CloudTasks-TaskRetryCount), dead-letters it and answers
# 2xx: the retry budget here is the one the functions receive as CALLBACK_*.
resource "google_cloud_tasks_queue" "callbacks" {
  name     = "${var.name_prefix}-callbacks"
  location = var.region

  rate_limits {
    max_dispatches_per_second = 50
    max_concurrent_dispatches = local.queue_concurrency.callbacks
  }

  retry_config {
    max_attempts = local.callback_retry.max_attempts
    # Zero: no age limit, max_attempts alone ends the retries.
    max_retry_duration = "0s"
    min_backoff        = "${local.callback_retry.min_backoff_seconds}s"
    max_backoff        = "${local.callback_retry.max_backoff_seconds}s"
    max_doublings      = local.callback_retry.max_doublings
  }

  depends_on = [google_project_service.required]
}

resource "google_cloud_tasks_queue_iam_member" "runtime_enqueues" {
  for_each = {
    steps     = google_cloud_tasks_queue.steps
    callbacks = google_cloud_tasks_queue.callbacks
  }

  location = each.value.location
  name     = each.value.name
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.runtime.member
}
