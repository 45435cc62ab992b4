# The sweeper: every few minutes Cloud Scheduler asks poll_job to end the
# callback sequences that outlived their budget (delivered or dead-lettered),
# whatever happened to their tasks. Same identity and audience as the tasks:
# same-project Cloud Scheduler on the run.app URL is internal traffic
# (cloud.google.com/run/docs/securing/ingress).
resource "google_cloud_scheduler_job" "sweep" {
  name        = "${var.name_prefix}-sweep"
  region      = var.region
  description = "Ends callback sequences that outlived their budget (POST ${local.poll_url}/sweep)."
  schedule    = var.sweep_schedule
  time_zone   = "Etc/UTC"
  # As long as poll_job may run; the next run comes soon enough, so no retries.
  attempt_deadline = "${local.function_timeout_seconds}s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = "${local.poll_url}/sweep"
    body        = base64encode("{}")
    headers = {
      "Content-Type" = "application/json"
    }

    oidc_token {
      service_account_email = local.invoker_email
      audience              = local.poll_url
    }
  }

  depends_on = [
    google_project_service.required,
    google_cloud_run_service_iam_member.invoker_invokes_poll_job,
  ]
}

