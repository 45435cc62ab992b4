# Identities and least-privilege grants. Only *_iam_member (non-authoritative)
# resources: nothing here overwrites a policy the project already has.
#
#   runtime  the functions run as it: reads the four secrets, enqueues on the
#            two queues, and may act as `invoker` (to put its OIDC token on tasks)
#   invoker  the identity on every task's OIDC token: may invoke poll_job, nothing else
#   events   the Eventarc trigger's identity: may invoke delete_track_event, nothing else

resource "google_service_account" "runtime" {
  account_id   = "${var.name_prefix}-runtime"
  display_name = "DatoCMS track deleter: functions runtime"

  depends_on = [google_project_service.required]
}

resource "google_service_account" "invoker" {
  account_id   = "${var.name_prefix}-invoker"
  display_name = "DatoCMS track deleter: Cloud Tasks OIDC identity"

  depends_on = [google_project_service.required]
}

resource "google_service_account" "events" {
  count = var.enable_event_intake ? 1 : 0

  account_id   = "${var.name_prefix}-events"
  display_name = "DatoCMS track deleter: Eventarc trigger identity"

  depends_on = [google_project_service.required]
}

# The runtime account creates tasks carrying the invoker's OIDC token:
# Cloud Tasks requires iam.serviceAccounts.actAs on the invoker for that.
resource "google_service_account_iam_member" "runtime_acts_as_invoker" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.runtime.member
}

# The only thing the invoker may do: invoke poll_job (a 2nd-gen function is a
# Cloud Run service of the same name).
resource "google_cloud_run_service_iam_member" "invoker_invokes_poll_job" {
  location = google_cloudfunctions2_function.poll_job.location
  service  = google_cloudfunctions2_function.poll_job.name
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}

# DatoCMS cannot present a Google identity token: the intake is public at the
# IAM layer and authenticates each request with INTAKE_TOKEN itself.
resource "google_cloud_run_service_iam_member" "public_invokes_delete_track" {
  # checkov:skip=CKV_GCP_102: the webhook intake must be callable by DatoCMS, which cannot send Google ID tokens; every request is authenticated with INTAKE_TOKEN in constant time
  location = google_cloudfunctions2_function.delete_track.location
  service  = google_cloudfunctions2_function.delete_track.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_service_iam_member" "events_invoke_delete_track_event" {
  count = var.enable_event_intake ? 1 : 0

  location = google_cloudfunctions2_function.delete_track_event[0].location
  service  = google_cloudfunctions2_function.delete_track_event[0].name
  role     = "roles/run.invoker"
  member   = google_service_account.events[0].member
}
