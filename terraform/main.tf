# Shared values, the APIs the deployment needs, and the source archive.

# The project number is known at plan time (the project exists before this
# module runs): it makes the functions' run.app URLs deterministic.
data "google_project" "this" {
  project_id = var.project_id
}

locals {
  function_names = {
    delete_track       = "${var.name_prefix}-delete-track"
    poll_job           = "${var.name_prefix}-poll-job"
    delete_track_event = "${var.name_prefix}-delete-track-event"
  }

  # Each function's deterministic run.app URL, https://SERVICE-PROJECT_NUMBER.REGION.run.app
  # (cloud.google.com/run/docs/triggering/https-request#deterministic). Built, not read:
  # poll_job needs its own URL and a resource cannot read its own attributes. The
  # DNS label (name + "-" + project number) must stay within 63 characters: the
  # longest name is name_prefix (21 at most) + "-delete-track-event" (19), so 54.
  # A postcondition on every function compares it with service_config[0].uri.
  function_urls = {
    for key, name in local.function_names :
    key => "https://${name}-${data.google_project.this.number}.${var.region}.run.app"
  }

  # The URL of poll_job: the target of every task and the OIDC audience of its
  # token (the code uses POLL_URL for both). Internal-only ingress admits Cloud
  # Tasks only on the default run.app URL (cloud.google.com/run/docs/securing/ingress),
  # and the token's aud must be the run.app URL (cloud.google.com/run/docs/configuring/custom-audiences).
  poll_url = local.function_urls.poll_job

  # delete_track's public URL, for the Location headers of its answers.
  intake_url = local.function_urls.delete_track

  # The tasks' OIDC identity, spelled from known inputs so that no function's
  # environment is unknown at the first plan (the provider has reported
  # "inconsistent final plan" on unknown environment_variables); a postcondition
  # on the account holds the two equal.
  invoker_email = "${var.name_prefix}-invoker@${var.project_id}.iam.gserviceaccount.com"

  # One definition of the callback retry budget: the callbacks queue's
  # retry_config and the CALLBACK_* settings the functions receive.
  callback_retry = {
    max_attempts        = var.callback_max_attempts
    min_backoff_seconds = var.callback_retry_min_seconds
    max_backoff_seconds = var.callback_retry_max_seconds
    # Cloud Tasks' default, and adapters.tasks.RetryPolicy's.
    max_doublings = 16
  }

  # The service ends every callback sequence itself, from its signed attempt
  # count and age (and the sweeper ends those that outlived their budget), so
  # the queue must never drop a delivery before the service decides: Cloud Tasks
  # counts dispatches the target never handled (crash, platform 5xx) as attempts.
  callback_queue_extra_attempts = 5
  callback_queue_max_attempts   = local.callback_retry.max_attempts + local.callback_queue_extra_attempts

  # The steps queue: the code schedules its own polls and ends them at
  # POLL_TIMEOUT_SECONDS; these retries only cover a crashed or unreachable
  # poll_job. The same policy as the local queue's (adapters.tasks.STEPS_RETRY).
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
  # only as secret_environment_variables (secrets.tf, functions.tf). Every value
  # here is known at plan time: variables, names and locals, never a computed
  # attribute.
  runtime_env = {
    TASKS_BACKEND                   = "cloudtasks"
    DATOCMS_BASE_URL                = var.datocms_base_url
    POLL_URL                        = local.poll_url
    INTAKE_URL                      = local.intake_url
    TASKS_PROJECT                   = var.project_id
    TASKS_LOCATION                  = var.region
    TASKS_QUEUE                     = local.queue_names.steps
    CALLBACK_QUEUE                  = local.queue_names.callbacks
    TASKS_SERVICE_ACCOUNT           = local.invoker_email
    POLL_INITIAL_DELAY_SECONDS      = var.poll_initial_delay_seconds
    POLL_MAX_DELAY_SECONDS          = var.poll_max_delay_seconds
    POLL_TIMEOUT_SECONDS            = var.poll_timeout_seconds
    CALLBACK_MAX_ATTEMPTS           = local.callback_retry.max_attempts
    CALLBACK_RETRY_MIN_SECONDS      = local.callback_retry.min_backoff_seconds
    CALLBACK_RETRY_MAX_SECONDS      = local.callback_retry.max_backoff_seconds
    CALLBACK_ALLOW_PRIVATE_NETWORKS = "false"
    GOOGLE_CLOUD_PROJECT            = var.project_id
    STATE_BACKEND                   = "firestore"
    FIRESTORE_PROJECT               = var.project_id
    FIRESTORE_DATABASE              = var.firestore_database
    IDEMPOTENCY_WINDOW_SECONDS      = var.idempotency_window_seconds
    STATE_RETENTION_DAYS            = var.state_retention_days
  }

  # Set only when given: an unset DATOCMS_ENVIRONMENT means the primary environment.
  optional_env = var.datocms_environment == null ? {} : { DATOCMS_ENVIRONMENT = var.datocms_environment }

  required_apis = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtasks.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
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
