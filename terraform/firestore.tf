# The state store: one Firestore (Native mode) database holding a record per
# request (collection `requests`) and the small documents every instance shares
# (collection `shared`: learned job durations, the DatoCMS rate-limit hold).

locals {
  # Default location: the multi-region that contains the region, else the region
  # (cloud.google.com/firestore/docs/locations).
  firestore_multi_regions = {
    "europe-west1" = "eur3"
    "europe-west4" = "eur3"
    "us-central1"  = "nam5"
  }
  firestore_location = coalesce(var.firestore_location, lookup(local.firestore_multi_regions, var.region, var.region))

  # Single-field index settings (cloud.google.com/firestore/docs/query-data/indexing):
  #   data       the record as compact JSON, never queried: exempt from indexing
  #              (large string values slow writes and count towards index limits)
  #   expire_at  the TTL field (cloud.google.com/firestore/docs/ttl); exempt too,
  #              as the TTL page advises for timestamps that grow with time
  # Not listed, so indexed by the database's automatic single-field indexes:
  #   requests.dead_letter_at  `where dead_letter_at >= X order by dead_letter_at desc`
  #   requests.due_at          `where due_at <= now order by due_at`
  # A range filter and an order on the same single field are served by its
  # automatic single-field index: neither query needs a composite index.
  firestore_fields = {
    "requests/data"      = { collection = "requests", field = "data", ttl = false }
    "requests/expire_at" = { collection = "requests", field = "expire_at", ttl = true }
    "shared/data"        = { collection = "shared", field = "data", ttl = false }
    "shared/expire_at"   = { collection = "shared", field = "expire_at", ttl = true }
  }
}

resource "google_firestore_database" "state" {
  # Off for a project that already has this database (one "(default)" per project).
  count = var.create_firestore_database ? 1 : 0

  project     = var.project_id
  name        = var.firestore_database
  location_id = local.firestore_location
  type        = "FIRESTORE_NATIVE"

  # The records outlive any one deployment: neither the API nor `terraform destroy` deletes them.
  delete_protection_state = "DELETE_PROTECTION_ENABLED"
  deletion_policy         = "ABANDON"

  depends_on = [google_project_service.required]
}

resource "google_firestore_field" "state" {
  for_each = local.firestore_fields

  project    = var.project_id
  database   = var.firestore_database
  collection = each.value.collection
  field      = each.value.field

  # An empty index_config removes every single-field index of the field.
  index_config {}

  dynamic "ttl_config" {
    for_each = each.value.ttl ? [1] : []
    content {}
  }

  depends_on = [google_firestore_database.state, google_project_service.required]
}
