# Inputs of the deployment. Defaults mirror the code's own defaults
# (core/settings.py); tests/terraform holds the two against each other.

variable "project_id" {
  description = "Google Cloud project to deploy into (its ID, not its number)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID: 6 to 30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the functions, the task queues and the source bucket."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Cloud Functions region such as europe-west1 or us-central1."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (functions, queues, secrets, service accounts)."
  type        = string
  default     = "track-deleter"

  validation {
    # Service account IDs are at most 30 characters: prefix + "-eventfn" must fit.
    # run.app labels are at most 63: prefix + "-delete-track-event-" + project number fits.
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2 to 21 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "datocms_api_token" {
  description = "DatoCMS Content Management API token (needs permission to edit uploads). Ephemeral: written to Secret Manager only when datocms_api_token_version changes, never stored in the Terraform state. Pass it as TF_VAR_datocms_api_token on every plan and apply."
  type        = string
  sensitive   = true
  ephemeral   = true

  validation {
    condition     = length(trimspace(var.datocms_api_token)) > 0
    error_message = "datocms_api_token must not be empty."
  }
}

variable "datocms_api_token_version" {
  description = "Generation of the DatoCMS token in Secret Manager: raise it (2, 3, ...) to write a new datocms_api_token. The value is write-only, so Terraform cannot see it change by itself."
  type        = number
  default     = 1

  validation {
    condition     = var.datocms_api_token_version >= 1 && floor(var.datocms_api_token_version) == var.datocms_api_token_version
    error_message = "datocms_api_token_version must be a whole number, at least 1."
  }
}

variable "intake_token_version" {
  description = "Generation of INTAKE_TOKEN: raise it to generate and write a new token (the old one stops working once the functions roll to the new version)."
  type        = number
  default     = 1

  validation {
    condition     = var.intake_token_version >= 1 && floor(var.intake_token_version) == var.intake_token_version
    error_message = "intake_token_version must be a whole number, at least 1."
  }
}

variable "datocms_base_url" {
  description = "Base URL of the DatoCMS Content Management API."
  type        = string
  default     = "https://site-api.datocms.com"

  validation {
    condition     = can(regex("^https://[^/]+", var.datocms_base_url))
    error_message = "datocms_base_url must be an https:// URL."
  }
}

variable "datocms_environment" {
  description = "DatoCMS environment used when a request names none (sent as X-Environment). null targets the primary environment."
  type        = string
  default     = null

  validation {
    condition     = var.datocms_environment == null || can(regex("^[a-z0-9][a-z0-9-]{0,63}$", var.datocms_environment))
    error_message = "datocms_environment must be a DatoCMS environment id (lowercase letters, digits, hyphens) or null."
  }
}

variable "datocms_requests_per_second" {
  description = "Dispatch rate of the DatoCMS steps queue (polls and retried DELETEs). DatoCMS allows 60 requests per 3 seconds (20/s) per project; the default leaves 5/s for the intake's own DELETEs and anything else using the project."
  type        = number
  default     = 15

  validation {
    condition     = var.datocms_requests_per_second > 0 && var.datocms_requests_per_second <= 20
    error_message = "datocms_requests_per_second must be above 0 and at most 20 (DatoCMS: 60 requests per 3 seconds)."
  }
}

variable "poll_initial_delay_seconds" {
  description = "Delay before the first poll of a DatoCMS job (POLL_INITIAL_DELAY_SECONDS)."
  type        = number
  default     = 1

  validation {
    condition     = var.poll_initial_delay_seconds >= 0
    error_message = "poll_initial_delay_seconds must not be negative."
  }
}

variable "poll_max_delay_seconds" {
  description = "Cap on the delay between two polls (POLL_MAX_DELAY_SECONDS)."
  type        = number
  default     = 30

  validation {
    condition     = var.poll_max_delay_seconds >= var.poll_initial_delay_seconds && var.poll_max_delay_seconds > 0
    error_message = "poll_max_delay_seconds must be positive and at least poll_initial_delay_seconds."
  }
}

variable "poll_timeout_seconds" {
  description = "Give up polling and send a timed_out callback after this long (POLL_TIMEOUT_SECONDS)."
  type        = number
  default     = 900

  validation {
    # Cloud Tasks schedules at most 30 days ahead.
    condition     = var.poll_timeout_seconds > 0 && var.poll_timeout_seconds <= 2592000
    error_message = "poll_timeout_seconds must be between 1 second and 30 days."
  }
}

variable "callback_max_attempts" {
  description = "Callback delivery attempts, the first included, before the callback is dead-lettered (CALLBACK_MAX_ATTEMPTS). The callbacks queue allows a few more, so that the service, not the queue, ends every sequence."
  type        = number
  default     = 12

  validation {
    condition     = var.callback_max_attempts >= 1 && var.callback_max_attempts <= 100 && floor(var.callback_max_attempts) == var.callback_max_attempts
    error_message = "callback_max_attempts must be a whole number from 1 to 100."
  }
}

variable "callback_retry_min_seconds" {
  description = "Shortest wait between two callback attempts. Sets both the callbacks queue's min_backoff and CALLBACK_RETRY_MIN_SECONDS."
  type        = number
  default     = 5

  validation {
    condition     = var.callback_retry_min_seconds >= 1 && floor(var.callback_retry_min_seconds) == var.callback_retry_min_seconds
    error_message = "callback_retry_min_seconds must be a whole number of seconds, at least 1."
  }
}

variable "callback_retry_max_seconds" {
  description = "Longest wait between two callback attempts. Sets both the callbacks queue's max_backoff and CALLBACK_RETRY_MAX_SECONDS."
  type        = number
  default     = 3600

  validation {
    condition     = var.callback_retry_max_seconds >= var.callback_retry_min_seconds && floor(var.callback_retry_max_seconds) == var.callback_retry_max_seconds
    error_message = "callback_retry_max_seconds must be a whole number of seconds, at least callback_retry_min_seconds."
  }
}

variable "task_signing_key_ids" {
  description = "Generations of the key that signs task bodies (TASK_SIGNING_SECRET). The first signs, all verify. Rotate by prepending a new id, then dropping the old one once its tasks are done (docs/DEPLOY.md)."
  type        = list(string)
  default     = ["1"]

  validation {
    condition     = length(var.task_signing_key_ids) > 0 && length(distinct(var.task_signing_key_ids)) == length(var.task_signing_key_ids) && alltrue([for id in var.task_signing_key_ids : can(regex("^[a-z0-9-]{1,20}$", id))])
    error_message = "task_signing_key_ids must be a non-empty list of distinct ids made of lowercase letters, digits and hyphens."
  }
}

variable "callback_signing_key_ids" {
  description = "Generations of the Standard Webhooks secret that signs callbacks (CALLBACK_SIGNING_SECRET). The service signs with every listed key, so receivers holding either secret verify during a rotation (docs/DEPLOY.md)."
  type        = list(string)
  default     = ["1"]

  validation {
    condition     = length(var.callback_signing_key_ids) > 0 && length(distinct(var.callback_signing_key_ids)) == length(var.callback_signing_key_ids) && alltrue([for id in var.callback_signing_key_ids : can(regex("^[a-z0-9-]{1,20}$", id))])
    error_message = "callback_signing_key_ids must be a non-empty list of distinct ids made of lowercase letters, digits and hyphens."
  }
}

variable "enable_event_intake" {
  description = "Deploy delete_track_event with a Pub/Sub topic and its Eventarc trigger, for requests published as messages."
  type        = bool
  default     = true
}

variable "build_service_account" {
  description = "Full resource name (projects/PROJECT/serviceAccounts/EMAIL) of the account Cloud Build uses to build the functions; it is granted what a build needs (logs, Artifact Registry writer, read on the source bucket). null keeps the project's default build account (docs/DEPLOY.md: what newer projects need)."
  type        = string
  default     = null

  validation {
    condition     = var.build_service_account == null || can(regex("^projects/[^/]+/serviceAccounts/[^/]+@[^/]+$", var.build_service_account))
    error_message = "build_service_account must look like projects/PROJECT/serviceAccounts/EMAIL, or be null."
  }
}

variable "source_root" {
  description = "Directory holding main.py, requirements.txt and the packages to deploy. null means the repository root (the parent of this module)."
  type        = string
  default     = null
}

variable "public_intake" {
  description = "Let anyone invoke delete_track at the IAM layer (allUsers), as DatoCMS webhooks need; every request still needs INTAKE_TOKEN. false for organisations that enforce Domain Restricted Sharing: then only intake_invokers may call it."
  type        = bool
  default     = true
}

variable "intake_invokers" {
  description = "IAM members (e.g. serviceAccount:ci@PROJECT.iam.gserviceaccount.com) that may invoke delete_track with their own Google ID token, sent in X-Serverless-Authorization next to INTAKE_TOKEN. Needed when public_intake = false."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for member in var.intake_invokers : can(regex("^(user|serviceAccount|group|domain|principal|principalSet):.+", member))])
    error_message = "intake_invokers must be IAM members such as serviceAccount:EMAIL or group:EMAIL (not allUsers: that is public_intake)."
  }
}

variable "intake_ingress" {
  description = "Ingress of delete_track: ALLOW_ALL (DatoCMS calls from the internet), or ALLOW_INTERNAL_AND_GCLB behind an external Application Load Balancer of your own."
  type        = string
  default     = "ALLOW_ALL"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_AND_GCLB"], var.intake_ingress)
    error_message = "intake_ingress must be ALLOW_ALL or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "grant_pubsub_token_creator" {
  description = "Grant the project's Pub/Sub service agent Token Creator on the Eventarc trigger's account. Needed when Pub/Sub was enabled in the project before 8 April 2021."
  type        = bool
  default     = false
}

variable "firestore_database" {
  description = "Firestore database holding the request records (FIRESTORE_DATABASE)."
  type        = string
  default     = "(default)"

  validation {
    condition     = var.firestore_database == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore_database))
    error_message = "firestore_database must be (default) or a database id: 4 to 63 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "firestore_location" {
  description = "Location of the Firestore database when this module creates it. null: the multi-region containing the region (eur3 for europe-west1/4, nam5 for us-central1), else the region."
  type        = string
  default     = null
}

variable "create_firestore_database" {
  description = "Create the Firestore database. false when the project already has it (a project has one (default) database, created once)."
  type        = bool
  default     = true
}

variable "idempotency_window_seconds" {
  description = "How long a request_id answers duplicate (IDEMPOTENCY_WINDOW_SECONDS)."
  type        = number
  default     = 86400

  validation {
    condition     = var.idempotency_window_seconds >= 1 && floor(var.idempotency_window_seconds) == var.idempotency_window_seconds
    error_message = "idempotency_window_seconds must be a whole number of seconds, at least 1."
  }
}

variable "state_retention_days" {
  description = "How long a finished request's record is kept (STATE_RETENTION_DAYS); Firestore's TTL policy then deletes it, typically within 24 hours."
  type        = number
  default     = 7

  validation {
    condition     = var.state_retention_days >= 1 && floor(var.state_retention_days) == var.state_retention_days
    error_message = "state_retention_days must be a whole number of days, at least 1."
  }
}

variable "sweep_schedule" {
  description = "Cron schedule (UTC) of the sweeper that ends callback sequences which outlived their budget."
  type        = string
  default     = "*/5 * * * *"
}

variable "alert_notification_channels" {
  description = "Notification channel ids (projects/P/notificationChannels/N) the alert policies notify. None by default: the alerts show in Cloud Monitoring only."
  type        = list(string)
  default     = []
}

variable "alert_failure_rate_threshold" {
  description = "Share (0 to 1) of final outcomes that are failed or timed_out, over 15 minutes, above which the failure-rate alert fires."
  type        = number
  default     = 0.2

  validation {
    condition     = var.alert_failure_rate_threshold > 0 && var.alert_failure_rate_threshold < 1
    error_message = "alert_failure_rate_threshold must be between 0 and 1 (exclusive)."
  }
}

variable "alert_no_success_minutes" {
  description = "How long requests may be accepted without any ending deleted before the no-success alert fires."
  type        = number
  default     = 60

  validation {
    condition     = var.alert_no_success_minutes >= 15 && floor(var.alert_no_success_minutes) == var.alert_no_success_minutes
    error_message = "alert_no_success_minutes must be a whole number of minutes, at least 15."
  }
}

variable "create_dashboard" {
  description = "Whether to create the Cloud Monitoring dashboard of the service's metrics."
  type        = bool
  default     = false
}
