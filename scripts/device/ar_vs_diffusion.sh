#!/usr/bin/env bash
# Runs ON a lent GPU machine (the `device` tool), from the repo root: issue 7's comparison on the
# GPU, both models' float32 weights in PyTorch on CUDA (bench/ar_vs_diffusion.py --backend torch
# --device cuda), one completion at a time, into $OUT (summary JSON, plots, the log).
# Here first (the shared eval data and the ignored AR export do not travel by themselves):
#   python -m unmask.engine.ar --run runs/ar --out runs/ar-onnx        # also writes weights.npz
#   mkdir -p runs/he && cp ../shared/eval/humaneval-infilling/HumanEval-SingleLineInfilling.jsonl.gz runs/he/
# Then: run(command="LIMIT=300 bash scripts/device/ar_vs_diffusion.sh", carry=["runs/ar-onnx", "runs/he"])
# (LIMIT=0: all 1033 tasks; MODEL=dir for another diffusion model, EXTRA_MODEL=dir for a second one.)
set -euo pipefail
OUT=${OUT:-/tmp/out}
shim=/tmp/shim/unmask
mkdir -p "$shim" "$OUT"
cp unmask/__init__.py "$shim/"
for d in engine context; do ln -sfn "$PWD/$d" "$shim/$d"; done
export PYTHONPATH=/tmp/shim PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv | tee "$OUT/gpu.txt" || echo "no nvidia-smi: on the CPU"
args=(--backend torch --device cuda --ar-model "${AR_MODEL:-runs/ar-onnx}" --data "${DATA:-runs/he}" --limit "${LIMIT:-300}" --test-workers 8
  --json /tmp/ar_vs_diffusion_gpu.json --plots "$OUT/plots")
[[ -n ${MODEL:-} ]] && args+=(--model "$MODEL")
[[ -n ${EXTRA_MODEL:-} ]] && args+=(--extra-model "$EXTRA_MODEL")
python3 bench/ar_vs_diffusion.py "${args[@]}" 2>&1 | tee "$OUT/log.txt"
# the per-completion records stay behind (large); the summary is $OUT/plots/ar_vs_diffusion.json
