# Two Cloud Tasks queues, both delivering to poll_job. Every value is explicit.
# A deleted queue's name stays blocked for up to 3 days (REST queues.delete):
# change name_prefix to recreate one sooner.

locals {
  queue_names = {
    steps     = "${var.name_prefix}-steps"
    callbacks = "${var.name_prefix}-callbacks"
  }

  queues = {
    steps     = google_cloud_tasks_queue.steps
    callbacks = google_cloud_tasks_queue.callbacks
  }

  # One grant per function and queue it enqueues on (local.functions[*].queues).
  function_queues = merge([
    for key, fn in local.deployed_functions : {
      for queue in fn.queues : "${key}/${queue}" => { function = key, queue = queue }
    }
  ]...)
}

# DatoCMS steps (polls, retried DELETEs). Its dispatch rate is the cluster-wide
# limiter that keeps the project under DatoCMS's 60 requests per 3 seconds.
resource "google_cloud_tasks_queue" "steps" {
  name     = local.queue_names.steps
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

# Callback deliveries. poll_job answers non-2xx to have a delivery retried and
# ends the sequence itself (delivered or dead-lettered) from its signed attempt
# count and age; the backoff bounds here are the ones the functions receive as
# CALLBACK_RETRY_*, and the queue allows more attempts than CALLBACK_MAX_ATTEMPTS
# so that it never drops a delivery the service has not decided on.
resource "google_cloud_tasks_queue" "callbacks" {
  name     = local.queue_names.callbacks
  location = var.region

  rate_limits {
    max_dispatches_per_second = 50
    max_concurrent_dispatches = local.queue_concurrency.callbacks
  }

  retry_config {
    max_attempts = local.callback_queue_max_attempts
    # Zero: no age limit, max_attempts alone ends the retries.
    max_retry_duration = "0s"
    min_backoff        = "${local.callback_retry.min_backoff_seconds}s"
    max_backoff        = "${local.callback_retry.max_backoff_seconds}s"
    max_doublings      = local.callback_retry.max_doublings
  }

  depends_on = [google_project_service.required]
}

resource "google_cloud_tasks_queue_iam_member" "function_enqueues" {
  for_each = local.function_queues

  location = local.queues[each.value.queue].location
  name     = local.queues[each.value.queue].name
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.function[each.value.function].member
}
