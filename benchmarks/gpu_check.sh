#!/usr/bin/env bash
# GPU check of a copy of this repository on a fresh GPU machine, in at most ~10 minutes, as one command:
#
#   bash benchmarks/gpu_check.sh            # results under $OUT (default: out/gpu_check)
#
# 1. torch with CUDA: the one installed (a venv's, $PYTHON, or python3), else the CUDA build docs/gpu.md
#    documents (torch==2.13.0 from download.pytorch.org/whl/cu130; needs the package index)
# 2. the project: importable from this folder, else `pip install -e . -c constraints.txt`
# 3. determinism: every study model trained a few steps twice on the GPU with the switches
#    train/device.py sets, compared bitwise (determinism.json)
# 4. benchmarks/study_epochs.py --device cuda --budget-seconds 400: measured per-epoch times of the study
#    preset beside the CPU projection (study_epochs.json, study_epochs.log)
# 5. benchmarks/study_cost.py --device cuda, if the time left allows (study_cost.log)
#
# Each step has its own timeout; the script goes on after a failed step where the next one can still run,
# and exits non-zero when any step failed. Set TOTAL_SECONDS to change the overall limit (default 590).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out/gpu_check}
TOTAL_SECONDS=${TOTAL_SECONDS:-590}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
CUDA_INDEX=https://download.pytorch.org/whl/cu130 # docs/gpu.md
TORCH_PIN=torch==2.13.0
failed=0

log() { echo "[gpu_check +${SECONDS}s] $*" | tee -a "$OUT/gpu_check.log"; }
left() { echo $((TOTAL_SECONDS - SECONDS)); }
# step LIMIT NAME CMD...: run CMD with at most LIMIT seconds (and never past the overall limit)
step() {
    local limit=$1 name=$2 rc
    shift 2
    if [ "$(left)" -lt "$limit" ]; then limit=$(left); fi
    if [ "$limit" -lt 20 ]; then
        log "SKIP $name: $(left) s left"
        return 3
    fi
    log "START $name (timeout ${limit} s): $*"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ]; then log "OK $name"; else log "FAIL $name (rc $rc)"; fi
    return "$rc"
}

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3
fi
log "python: $PY ($("$PY" --version 2>&1)); out: $OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt"

has_cuda() { "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }
if has_cuda; then
    log "torch with CUDA already installed: $("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda)')"
else
    step 300 install_torch "$PY" -m pip install "$TORCH_PIN" --index-url "$CUDA_INDEX" || true
    if ! has_cuda; then
        log "FAIL: torch sees no GPU ($("$PY" -c 'import torch; print(torch.__version__)' 2>&1 | tail -1));"
        log "install the CUDA build (docs/gpu.md) or check the driver (nvidia-smi above)"
        exit 2
    fi
fi

importable() { "$PY" -c "import e2cnn, pydantic, zarr, pipelines.params, train.loop, models.registry" 2>/dev/null; }
if ! importable; then
    step 240 install_project "$PY" -m pip install -e . -c constraints.txt || true
    if ! importable; then
        log "FAIL: the project does not import (see $OUT/install_project.log)"
        exit 2
    fi
fi

step 150 determinism "$PY" benchmarks/study_epochs.py --device cuda --check-determinism \
    --out "$OUT/determinism.json" || failed=1
step 460 study_epochs "$PY" benchmarks/study_epochs.py --device cuda --budget-seconds 400 \
    --out "$OUT/study_epochs.json" || failed=1
step 300 study_cost "$PY" benchmarks/study_cost.py --device cuda  # only if time allows: a skip (3) is no failure
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then failed=1; fi
log "done in ${SECONDS} s; results in $OUT"
exit "$failed"
