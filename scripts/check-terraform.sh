#!/usr/bin/env bash
# Offline checks of terraform/: formatting, then checkov. No provider registry
# is needed. checkov lives in its own virtual environment (.venv-checkov):
# it pins dependency versions the project's tools do not accept.
set -euo pipefail

cd "$(dirname "$0")/.."

checkov_version="3.3.30"
venv=".venv-checkov"
python="${PYTHON:-python3.11}"

installed="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("checkov"))' 2>/dev/null || true)"
if [ "$installed" != "$checkov_version" ]; then
  echo "Installing checkov $checkov_version into $venv"
  log="$(mktemp)"
  if ! { "$python" -m venv "$venv" &&
    "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$checkov_version"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
fi

terraform fmt -check -recursive -diff terraform

# Fails on any finding that is not suppressed in place with its reason.
"$venv/bin/checkov" -d terraform --framework terraform --quiet --compact --skip-download
