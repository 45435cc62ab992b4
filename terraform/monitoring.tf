# ---------------------------------------------------------------------------
# Logs-based metrics and alert policies. Every filter reads the structured log
# lines the functions write (adapters/log.py): `jsonPayload.event` names the
# line's meaning, independent of its message's wording; `labels.outcome` comes
# from `logging.googleapis.com/labels`. tests/terraform/test_monitoring.py
# holds each filter and extractor against lines recorded from an end-to-end
# run. docs/OPERATIONS.md says what each metric and alert means.
# ---------------------------------------------------------------------------

locals {
  # Gen2 functions log under their Cloud Run service.
  log_source = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=(${join(" OR ", [for name in values(local.function_names) : "\"${name}\""])})",
  ])

  metric_names = {
    requests_accepted = "${var.name_prefix}/requests_accepted"
    deletions         = "${var.name_prefix}/deletions"
    time_to_outcome   = "${var.name_prefix}/time_to_outcome"
    polls_per_request = "${var.name_prefix}/polls_per_request"
    callback_attempts = "${var.name_prefix}/callback_attempts"
    dead_letters      = "${var.name_prefix}/dead_letters"
    events_dropped    = "${var.name_prefix}/events_dropped"
  }

  # The metric types alert policies and the dashboard read.
  metric_types = { for key, name in local.metric_names : key => "logging.googleapis.com/user/${name}" }

  # Final outcomes that mean the track was not deleted on purpose.
  failure_outcomes = ["failed", "timed_out"]
}

resource "google_project_service" "monitoring" {
  service            = "monitoring.googleapis.com"
  disable_on_destroy = false
}

# ------------------------------------------------------------------ metrics

resource "google_logging_metric" "requests_accepted" {
  name        = local.metric_names.requests_accepted
  description = "Deletion requests accepted by the intake (HTTP or Pub/Sub): the operation's first line."
  filter      = "${local.log_source} AND jsonPayload.event=\"request_accepted\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Track deleter: requests accepted"
  }
}

resource "google_logging_metric" "deletions" {
  name        = local.metric_names.deletions
  description = "Requests that reached their final outcome, by outcome (deleted, not_found, failed, timed_out)."
  filter      = "${local.log_source} AND jsonPayload.event=\"request_finished\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Track deleter: final outcomes"

    labels {
      key         = "outcome"
      value_type  = "STRING"
      description = "The request's final status."
    }
  }

  label_extractors = {
    outcome = "EXTRACT(labels.outcome)"
  }
}

resource "google_logging_metric" "time_to_outcome" {
  name            = local.metric_names.time_to_outcome
  description     = "Seconds from a request's acceptance to its final outcome (before the callback)."
  filter          = "${local.log_source} AND jsonPayload.event=\"request_finished\""
  value_extractor = "EXTRACT(jsonPayload.elapsed_seconds)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "s"
    display_name = "Track deleter: time to final outcome"

    labels {
      key         = "outcome"
      value_type  = "STRING"
      description = "The request's final status."
    }
  }

  label_extractors = {
    outcome = "EXTRACT(labels.outcome)"
  }

  bucket_options {
    # 0.5 s, 1 s, 2 s ... about 9 hours.
    exponential_buckets {
      num_finite_buckets = 17
      growth_factor      = 2
      scale              = 0.5
    }
  }
}

resource "google_logging_metric" "polls_per_request" {
  name            = local.metric_names.polls_per_request
  description     = "DatoCMS job polls a request needed before its final outcome."
  filter          = "${local.log_source} AND jsonPayload.event=\"request_finished\""
  value_extractor = "EXTRACT(jsonPayload.polls)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "Track deleter: polls per request"
  }

  bucket_options {
    # 1, 2, 4 ... 512 polls (0 lands in the underflow bucket).
    exponential_buckets {
      num_finite_buckets = 10
      growth_factor      = 2
      scale              = 1
    }
  }
}

resource "google_logging_metric" "callback_attempts" {
  name        = local.metric_names.callback_attempts
  description = "Callback delivery attempts, by result: delivered, retry (the queue tries again) or dead_letter."
  filter      = "${local.log_source} AND jsonPayload.event=\"callback_attempt\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Track deleter: callback attempts"

    labels {
      key         = "result"
      value_type  = "STRING"
      description = "delivered, retry or dead_letter."
    }
  }

  label_extractors = {
    result = "EXTRACT(jsonPayload.callback_result)"
  }
}

resource "google_logging_metric" "dead_letters" {
  name        = local.metric_names.dead_letters
  description = "Callbacks given up on (attempts spent, or the receiver answered 410): re-deliver them (docs/OPERATIONS.md)."
  filter      = "${local.log_source} AND jsonPayload.event=\"callback_attempt\" AND jsonPayload.callback_result=\"dead_letter\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Track deleter: dead-lettered callbacks"
  }
}

resource "google_logging_metric" "events_dropped" {
  name        = local.metric_names.events_dropped
  description = "Pub/Sub or CloudEvent messages acknowledged without effect because they can never succeed (poison messages)."
  filter      = "${local.log_source} AND jsonPayload.event=\"event_dropped\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Track deleter: events dropped"
  }
}

# ------------------------------------------------------------------ alerts

resource "google_monitoring_alert_policy" "dead_letter" {
  display_name          = "Track deleter: a callback was dead-lettered"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  severity              = "ERROR"

  conditions {
    display_name = "Any dead-lettered callback"

    condition_threshold {
      filter          = "metric.type=\"${local.metric_types.dead_letters}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A callback receiver did not accept a callback within its attempts (or answered 410). The deletion itself is final. List them with `GET /requests?callback=dead_letter` on delete_track and re-deliver: see docs/OPERATIONS.md, \"Re-delivering dead letters\"."
  }

  depends_on = [google_project_service.monitoring, google_logging_metric.dead_letters]
}

resource "google_monitoring_alert_policy" "failure_rate" {
  display_name          = "Track deleter: deletion failure rate above ${var.alert_failure_rate_threshold * 100}%"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  severity              = "WARNING"

  conditions {
    display_name = "failed + timed_out / all final outcomes, over 15 minutes"

    condition_threshold {
      filter             = "metric.type=\"${local.metric_types.deletions}\" AND resource.type=\"cloud_run_revision\" AND metric.label.outcome=one_of(${join(", ", [for outcome in local.failure_outcomes : "\"${outcome}\""])})"
      denominator_filter = "metric.type=\"${local.metric_types.deletions}\" AND resource.type=\"cloud_run_revision\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_failure_rate_threshold
      duration           = "0s"

      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      denominator_aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "More than ${var.alert_failure_rate_threshold * 100}% of the requests that ended in the last 15 minutes failed or timed out. Look at the failures' `error` field (docs/OPERATIONS.md, \"Logs Explorer queries\"); during a DatoCMS incident, pause the queues."
  }

  depends_on = [google_project_service.monitoring, google_logging_metric.deletions]
}

resource "google_monitoring_alert_policy" "no_success" {
  display_name          = "Track deleter: requests accepted but none deleted for ${var.alert_no_success_minutes} minutes"
  combiner              = "AND"
  notification_channels = var.alert_notification_channels
  severity              = "ERROR"

  conditions {
    display_name = "Requests are being accepted"

    condition_threshold {
      filter          = "metric.type=\"${local.metric_types.requests_accepted}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "${var.alert_no_success_minutes * 60}s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  conditions {
    display_name = "No request ended deleted"

    condition_absent {
      filter   = "metric.type=\"${local.metric_types.deletions}\" AND resource.type=\"cloud_run_revision\" AND metric.label.outcome=\"deleted\""
      duration = "${var.alert_no_success_minutes * 60}s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Requests were accepted but none ended `deleted` for ${var.alert_no_success_minutes} minutes: DatoCMS may be down or refusing (token, environment), or the steps queue is paused or stuck. See docs/OPERATIONS.md."
  }

  depends_on = [google_project_service.monitoring, google_logging_metric.requests_accepted, google_logging_metric.deletions]
}

# ------------------------------------------------------------------ dashboard

resource "google_monitoring_dashboard" "overview" {
  count = var.create_dashboard ? 1 : 0

  dashboard_json = jsonencode({
    displayName = "Track deleter (${var.name_prefix})"
    mosaicLayout = {
      columns = 12
      tiles = [
        for index, tile in [
          { title = "Final outcomes (per second)", type = local.metric_types.deletions, aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group = ["metric.label.outcome"] },
          { title = "Requests accepted (per second)", type = local.metric_types.requests_accepted, aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group = [] },
          { title = "Time to final outcome, p95 (s)", type = local.metric_types.time_to_outcome, aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_95", group = [] },
          { title = "Polls per request, p95", type = local.metric_types.polls_per_request, aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_95", group = [] },
          { title = "Callback attempts (per second)", type = local.metric_types.callback_attempts, aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group = ["metric.label.result"] },
          { title = "Dead-lettered callbacks", type = local.metric_types.dead_letters, aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group = [] },
          ] : {
          xPos   = (index % 2) * 6
          yPos   = floor(index / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = tile.title
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"${tile.type}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = {
                      alignmentPeriod    = "300s"
                      perSeriesAligner   = tile.aligner
                      crossSeriesReducer = tile.reducer
                      groupByFields      = tile.group
                    }
                  }
                }
              }]
            }
          }
        }
      ]
    }
  })

  depends_on = [google_project_service.monitoring]
}
