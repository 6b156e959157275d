#!/usr/bin/env bash
# Demo: venv + install, then a sync of sample_files into the embedded local KvDB (scripts/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check .
.venv/bin/python scripts/demo.py
