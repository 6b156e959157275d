#!/usr/bin/env bash
# Tests: venv + install with the tests extra, source-faker's own venv for the end-to-end test, then pytest.
# Extra arguments go to pytest (e.g. -m pyairbyte for the opt-in PyAirbyte group).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check '.[tests]'
bash scripts/setup_e2e_envs.sh faker
.venv/bin/python -m pytest "$@"
