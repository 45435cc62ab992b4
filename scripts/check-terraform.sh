#!/usr/bin/env bash
# Offline checks of terraform/: formatting, then checkov. No provider registry
# is needed. checkov lives in its own virtual environment (.venv-checkov):
# it pins versions the project's tools do not accept.
set -euo pipefail

cd "$(dirname "$0")/.."

checkov_version="3.3.30"
venv=".venv-checkov"
python="${PYTHON:-python3.11}"

if ! "$venv/bin/checkov" --version 2>/dev/null | grep -qx "$checkov_version"; then
  echo "Installing checkov $checkov_version into $venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$checkov_version"
fi

terraform fmt -check -recursive -diff terraform

# Fails on any finding that is not suppressed inline with a reason.
"$venv/bin/checkov" -d terraform --framework terraform --quiet --compact --skip-download
