#!/usr/bin/env bash
# One prepared GPU benchmark run (benchmarks/gpu/README.md says how a session runs it on the lent machine).
#   bash benchmarks/gpu/run.sh [bench_gpu options...]     e.g.  --device cuda --budget-s 420
# Installs carried wheels from .whl/ (if any) into /tmp/site, records nvidia-smi, runs bench_gpu, and leaves
# results.json, report.md, plots and log.txt in $OUT (or bench-gpu-results when OUT is unset).
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-bench-gpu-results}"
mkdir -p "$out"
py="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "run.sh: installing the carried wheels failed" >&2; exit 1; }
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
{ nvidia-smi || echo "no nvidia-smi here"; } >"$out/nvidia-smi.txt" 2>&1
export PYTHONUNBUFFERED=1
"$py" -m benchmarks.gpu.bench_gpu --out "$out" "$@" 2>&1 | tee "$out/log.txt"
exit "${PIPESTATUS[0]}"
