#!/usr/bin/env bash
# Regenerates requirements.lock: the exact version and the sha256 of every file on PyPI of every package the image
# installs (setup.py's install_requires, resolved, plus setuptools to build the package), for Python 3.11 on Linux as
# in Airbyte's python-connector-base. The Dockerfile installs only from this file, so two builds get the same
# packages whenever they run. Run it after changing install_requires, and commit the result:
#
#   bash scripts/lock.sh
#
# Only PyPI is asked (this machine's pip configuration, find-links and extra indexes are ignored), so the hashes are
# PyPI's. PYTHON overrides the interpreter (default python3.11; the lock is only right for 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

PIP_TOOLS_VERSION="7.6.2"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || { echo "lock.sh: $PYTHON not found; the lock must be made with Python 3.11" >&2; exit 1; }

export PIP_CONFIG_FILE=/dev/null PIP_INDEX_URL=https://pypi.org/simple PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
"$PYTHON" -m venv "$tools"
"$tools/bin/python" -m pip install --quiet "pip-tools==$PIP_TOOLS_VERSION"
# --all-build-deps adds what building the package needs (setuptools), so the image builds it without isolation and
# without fetching an unpinned setuptools; --allow-unsafe lets pip-compile pin it.
CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh" "$tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe \
  --all-build-deps --strip-extras --no-emit-index-url --no-emit-find-links --rebuild \
  --output-file requirements.lock setup.py
echo "requirements.lock: $(grep -c '==' requirements.lock) packages pinned with hashes"
