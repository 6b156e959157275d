#!/usr/bin/env bash
# Tests: venv + install with the tests extra and, alongside it, source-faker's own venv for the end-to-end test;
# then pytest (on every core, listing the ten slowest tests: see pytest.ini).
# Extra arguments go to pytest (e.g. -m pyairbyte for the opt-in PyAirbyte group).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
bash scripts/setup_e2e_envs.sh faker &
faker_setup=$!
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check --no-compile '.[tests]'  # modules compile when first imported
wait "$faker_setup"
.venv/bin/python -m pytest "$@"
