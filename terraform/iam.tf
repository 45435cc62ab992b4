# Identities and least-privilege grants. Only *_iam_member (non-authoritative)
# resources: nothing here overwrites a policy the project already has.
#
#   intake   delete_track runs as it: its four secrets, enqueue on the steps
#            queue, act as `invoker`, Firestore records
#   poller   poll_job runs as it: three secrets (no INTAKE_TOKEN), enqueue on
#            both queues, act as `invoker`, Firestore records
#   eventfn  delete_track_event runs as it: the same as intake without INTAKE_TOKEN
#   invoker  the identity on every task's and the sweeper's OIDC token: may
#            invoke poll_job, nothing else
#   events   the Eventarc trigger's identity: may invoke delete_track_event, nothing else

resource "google_service_account" "function" {
  for_each = local.deployed_functions

  account_id   = "${var.name_prefix}-${each.value.account}"
  display_name = "DatoCMS track deleter: ${each.key} runtime"

  depends_on = [google_project_service.required]
}

resource "google_service_account" "invoker" {
  account_id   = "${var.name_prefix}-invoker"
  display_name = "DatoCMS track deleter: Cloud Tasks and Scheduler OIDC identity"

  lifecycle {
    postcondition {
      condition     = self.email == local.invoker_email
      error_message = "The invoker account is ${self.email}, not the ${local.invoker_email} the functions were given as TASKS_SERVICE_ACCOUNT."
    }
  }

  depends_on = [google_project_service.required]
}

resource "google_service_account" "events" {
  count = var.enable_event_intake ? 1 : 0

  account_id   = "${var.name_prefix}-events"
  display_name = "DatoCMS track deleter: Eventarc trigger identity"

  depends_on = [google_project_service.required]
}

# Creating a task that carries the invoker's OIDC token needs
# iam.serviceAccounts.actAs on the invoker (cloud.google.com/tasks/docs/creating-http-target-tasks).
# Granted on that one account, the narrowest scope IAM offers for actAs.
resource "google_service_account_iam_member" "function_acts_as_invoker" {
  for_each = local.deployed_functions

  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.function[each.key].member
}

# roles/datastore.user (read and write documents) on the project: Firestore
# grants it per project; a narrower scope would need IAM conditions
# (cloud.google.com/firestore/docs/security/iam).
resource "google_project_iam_member" "function_uses_firestore" {
  for_each = local.deployed_functions

  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.function[each.key].member
}

# The only thing the invoker may do: invoke poll_job (a 2nd-gen function is a
# Cloud Run service of the same name; roles/run.invoker on it is what counts,
# cloud.google.com/functions/docs/securing/authenticating).
resource "google_cloud_run_service_iam_member" "invoker_invokes_poll_job" {
  location = google_cloudfunctions2_function.service["poll_job"].location
  service  = google_cloudfunctions2_function.service["poll_job"].name
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}

# DatoCMS cannot present a Google identity token: the intake is public at the
# IAM layer and authenticates each request with INTAKE_TOKEN itself. An
# organisation enforcing Domain Restricted Sharing refuses allUsers: set
# public_intake = false and list the callers in intake_invokers (docs/DEPLOY.md).
resource "google_cloud_run_service_iam_member" "public_invokes_delete_track" {
  # checkov:skip=CKV_GCP_102: the webhook intake must be callable by DatoCMS, which cannot send Google ID tokens; every request is authenticated with INTAKE_TOKEN in constant time (public_intake = false removes this binding)
  count = var.public_intake ? 1 : 0

  location = google_cloudfunctions2_function.service["delete_track"].location
  service  = google_cloudfunctions2_function.service["delete_track"].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Callers with a Google identity (they send its ID token in X-Serverless-Authorization
# and INTAKE_TOKEN in Authorization), for organisations that refuse allUsers.
resource "google_cloud_run_service_iam_member" "callers_invoke_delete_track" {
  for_each = toset(var.intake_invokers)

  location = google_cloudfunctions2_function.service["delete_track"].location
  service  = google_cloudfunctions2_function.service["delete_track"].name
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_cloud_run_service_iam_member" "events_invoke_delete_track_event" {
  count = var.enable_event_intake ? 1 : 0

  location = google_cloudfunctions2_function.service["delete_track_event"].location
  service  = google_cloudfunctions2_function.service["delete_track_event"].name
  role     = "roles/run.invoker"
  member   = google_service_account.events[0].member
}

# Projects whose Pub/Sub service agent predates 8 April 2021 must let it mint
# tokens for push subscriptions (cloud.google.com/eventarc/docs/run/create-trigger-pubsub-gcloud):
# granted on the trigger's account only, not the project.
resource "google_service_account_iam_member" "pubsub_agent_mints_event_tokens" {
  count = var.enable_event_intake && var.grant_pubsub_token_creator ? 1 : 0

  service_account_id = google_service_account.events[0].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# ---------------------------------------------------------------------------
# The build account, when one is given: what a Cloud Functions build needs
# (cloud.google.com/functions/docs/securing/build-custom-sa): write build logs,
# push the image to Artifact Registry, read the source archive.
# ---------------------------------------------------------------------------

locals {
  build_member = var.build_service_account == null ? null : "serviceAccount:${regex("serviceAccounts/(.+)$", var.build_service_account)[0]}"

  # Project level: the gcf-artifacts repository is created by the first build,
  # so it cannot be granted on before it exists.
  build_project_roles = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])
}

resource "google_project_iam_member" "build" {
  for_each = var.build_service_account == null ? toset([]) : local.build_project_roles

  project = var.project_id
  role    = each.value
  member  = local.build_member
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  count = var.build_service_account == null ? 0 : 1

  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = local.build_member
}
