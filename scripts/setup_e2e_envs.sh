#!/usr/bin/env bash
# Creates the extra virtualenvs used by the end-to-end tests (only PyPI is needed, no other internet):
#
#   scripts/setup_e2e_envs.sh faker       .venv-faker/      airbyte-source-faker (pins an older CDK, so its own venv)
#   scripts/setup_e2e_envs.sh pyairbyte   .venv-pyairbyte/  PyAirbyte (`airbyte`, ~800 MB) + this connector (pip install -e .)
#   scripts/setup_e2e_envs.sh all         both
#
# Both venvs live under the repo root (git-ignored via `.venv-*/`). Versions are pinned so CI is reproducible;
# bump them here deliberately. Environment overrides:
#   PYTHON       interpreter for the venvs (default: python3.11, else python3)
#   FAKER_VENV   default <repo>/.venv-faker        (the tests read FAKER_BIN=<venv>/bin/source-faker)
#   PYAIRBYTE_VENV default <repo>/.venv-pyairbyte  (the tests read PYAIRBYTE_PYTHON=<venv>/bin/python)
#   RECREATE=1   delete an existing venv first
set -euo pipefail

FAKER_VERSION="7.2.1"
PYAIRBYTE_VERSION="0.71.3"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FAKER_VENV="${FAKER_VENV:-$REPO_ROOT/.venv-faker}"
PYAIRBYTE_VENV="${PYAIRBYTE_VENV:-$REPO_ROOT/.venv-pyairbyte}"
if [[ -z "${PYTHON:-}" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

make_venv() {
  local venv="$1"
  if [[ "${RECREATE:-0}" == "1" && -d "$venv" ]]; then rm -rf "$venv"; fi
  if [[ ! -x "$venv/bin/python" ]]; then "$PYTHON" -m venv "$venv"; fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
}

setup_faker() {
  local started=$SECONDS
  make_venv "$FAKER_VENV"
  "$FAKER_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile "airbyte-source-faker==$FAKER_VERSION"
  "$FAKER_VENV/bin/source-faker" spec >/dev/null
  echo "faker venv ready: $FAKER_VENV/bin/source-faker ($((SECONDS - started)) s)"
}

setup_pyairbyte() {
  local started=$SECONDS
  make_venv "$PYAIRBYTE_VENV"
  "$PYAIRBYTE_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "airbyte==$PYAIRBYTE_VERSION"
  "$PYAIRBYTE_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$REPO_ROOT"
  AIRBYTE_OFFLINE_MODE=1 DO_NOT_TRACK=1 "$PYAIRBYTE_VENV/bin/python" -c "import airbyte, destination_kvdb"
  "$PYAIRBYTE_VENV/bin/destination-kvdb" spec >/dev/null
  echo "pyairbyte venv ready: $PYAIRBYTE_VENV/bin/python ($((SECONDS - started)) s)"
}

case "${1:-all}" in
  faker) setup_faker ;;
  pyairbyte) setup_pyairbyte ;;
  all) setup_faker; setup_pyairbyte ;;
  *) echo "usage: $0 [faker|pyairbyte|all]" >&2; exit 2 ;;
esac
