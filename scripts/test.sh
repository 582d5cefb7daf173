#!/usr/bin/env bash
# Installs what the tests need (Debian packages when run as root, the project with its test extra) and runs them.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` for the slow tests only.
set -euo pipefail
cd "$(dirname "$0")/.."
DEBS=(espeak-ng sox pocketsphinx-testdata chromium firefox-esr pulseaudio pulseaudio-utils libportaudio2 libasound2-plugins janus iproute2 apertium apertium-eng-spa apertium-eng-cat)
missing=()
for p in "${DEBS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[test] installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "[test] missing Debian packages (install them as root): ${missing[*]}" >&2
  fi
fi
bash scripts/setup.sh test,event
.venv/bin/ruff check rt_f2f engines benchmarks tests
if [ $# -eq 0 ]; then set -- -m "not slow"; fi
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
