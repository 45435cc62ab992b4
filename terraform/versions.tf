terraform {
  # 1.11+: write-only arguments (secret_data_wo) and ephemeral values; 1.9+:
  # variable validations may refer to other variables.
  required_version = ">= 1.11.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
    random = {
      source = "hashicorp/random"
      # 3.7.1+: ephemeral random_password.
      version = ">= 3.7.1, < 4.0.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.7"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = {
    app = "datocms-track-deleter"
  }
}
