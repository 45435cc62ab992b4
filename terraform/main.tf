# Shared values, the APIs the deployment needs, and the source archive.

locals {
  function_names = {
    delete_track       = "${var.name_prefix}-delete-track"
    poll_job           = "${var.name_prefix}-poll-job"
    delete_track_event = "${var.name_prefix}-delete-track-event"
  }

  # The URL of poll_job: the target of every task and the OIDC audience of its
  # token (the code uses POLL_URL for both). poll_job re-enqueues itself and a
  # resource cannot read its own attributes, so the URL is built here in the
  # deterministic form the Cloud Functions API reports as the function's `url`;
  # a postcondition on poll_job fails the apply should the two ever differ.
  poll_url = "https://${var.region}-${var.project_id}.cloudfunctions.net/${local.function_names.poll_job}"

  # One definition of the callback retry budget: the callbacks queue's
  # retry_config and the CALLBACK_* settings the functions receive.
  callback_retry = {
    max_attempts        = var.callback_max_attempts
    min_backoff_seconds = var.callback_retry_min_seconds
    max_backoff_seconds = var.callback_retry_max_seconds
    # Cloud Tasks' default, and adapters.tasks.RetryPolicy's.
    max_doublings = 16
  }

  # The steps queue: the code schedules its own polls and ends them at
  # POLL_TIMEOUT_SECONDS; these retries only cover a crashed or unreachable
  # poll_job. The same policy as the local queue's (handlers.service.STEPS_RETRY).
  steps_retry = {
    max_attempts        = -1
    min_backoff_seconds = 1
    max_backoff_seconds = 60
    max_doublings       = 6
  }

  queue_concurrency = {
    steps     = 10
    callbacks = 20
  }

  # Every setting the functions read that is not a secret. Secrets are passed
  # only as secret_environment_variables (secrets.tf, functions.tf).
  runtime_env = {
    TASKS_BACKEND                   = "cloudtasks"
    DATOCMS_BASE_URL                = var.datocms_base_url
    POLL_URL                        = local.poll_url
    TASKS_PROJECT                   = var.project_id
    TASKS_LOCATION                  = var.region
    TASKS_QUEUE                     = google_cloud_tasks_queue.steps.name
    CALLBACK_QUEUE                  = google_cloud_tasks_queue.callbacks.name
    TASKS_SERVICE_ACCOUNT           = google_service_account.invoker.email
    POLL_INITIAL_DELAY_SECONDS      = var.poll_initial_delay_seconds
    POLL_MAX_DELAY_SECONDS          = var.poll_max_delay_seconds
    POLL_TIMEOUT_SECONDS            = var.poll_timeout_seconds
    CALLBACK_MAX_ATTEMPTS           = local.callback_retry.max_attempts
    CALLBACK_RETRY_MIN_SECONDS      = local.callback_retry.min_backoff_seconds
    CALLBACK_RETRY_MAX_SECONDS      = local.callback_retry.max_backoff_seconds
    CALLBACK_ALLOW_PRIVATE_NETWORKS = "false"
    GOOGLE_CLOUD_PROJECT            = var.project_id
  }

  # Set only when given: an unset DATOCMS_ENVIRONMENT means the primary environment.
  optional_env = var.datocms_environment == null ? {} : { DATOCMS_ENVIRONMENT = var.datocms_environment }

  required_apis = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudtasks.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "required" {
  for_each = local.required_apis

  service = each.value
  # Other workloads of the project may use these APIs too.
  disable_on_destroy = false
}

# ---------------------------------------------------------------------------
# Source archive: only what runs in production. Tests, the local development
# stack, benchmarks, Terraform and docs stay out.
# ---------------------------------------------------------------------------

locals {
  source_root    = coalesce(var.source_root, abspath("${path.module}/.."))
  deployed_files = ["main.py", "requirements.txt"]
  deployed_dirs  = ["handlers", "core", "adapters", "schemas"]

  source_files = sort(concat(
    local.deployed_files,
    flatten([
      for dir in local.deployed_dirs : [
        for path in fileset("${local.source_root}/${dir}", "**") : "${dir}/${path}"
        # No bytecode caches, no hidden files or folders.
        if !can(regex("(^|/)(__pycache__|\\.[^/]*)(/|$)", path)) && !endswith(path, ".pyc")
      ]
    ]),
  ))
}

data "archive_file" "source" {
  type        = "zip"
  output_path = "${path.module}/build/function-source.zip"

  dynamic "source" {
    for_each = toset(local.source_files)
    content {
      content  = file("${local.source_root}/${source.value}")
      filename = source.value
    }
  }
}

resource "google_storage_bucket" "source" {
  # checkov:skip=CKV_GCP_62: holds only build inputs written by Terraform; Cloud Audit Logs record access to it, a second bucket for usage logs adds nothing
  name                        = "${var.project_id}-${var.name_prefix}-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Archives are rebuilt from the repository on every apply.
  force_destroy = true

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.required]
}

resource "google_storage_bucket_object" "source" {
  # The name changes with the content, so a code change redeploys the functions.
  name   = "function-source-${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}
