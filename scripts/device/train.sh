#!/usr/bin/env bash
# Runs ON a lent GPU machine (the `device` tool), from the repo root: builds the corpus from the
# Python packages installed there (requests/flask/click and vendored copies excluded; shingles of
# shared/eval, carried here as hashes, decontaminate), trains on CUDA, and packs fp16 weights,
# counters and the log into $OUT (each file <= 16 MB). Back home:
#   unmask export --run <fetched dir> --out engine/models/denoiser
# Usage: MINUTES=20 [INIT=engine/models/denoiser] [EXTRA="--d-model 384 ..."] bash scripts/device/train.sh
set -euo pipefail
MINUTES=${MINUTES:-20}
OUT=${OUT:-/tmp/out}
shim=/tmp/shim/unmask
mkdir -p "$shim" /tmp/data
cp unmask/__init__.py "$shim/"
ln -sfn "$PWD/engine" "$shim/engine"
export PYTHONPATH=/tmp/shim PYTHONUNBUFFERED=1
corpus=${CORPUS:-/tmp/data/corpus.jsonl}
[[ -f $corpus ]] || python3 -m unmask.engine.corpus --out "$corpus" --eval-shingles scripts/device/eval_shingles.npy
init=()
[[ -n ${INIT:-} ]] && init=(--init-from "$INIT")
python3 -m unmask.engine.train --out /tmp/run --corpus "$corpus" \
  --tokenizer engine/models/denoiser/tokenizer.json "${init[@]}" --device "${DEVICE:-cuda}" --bf16 \
  --workers "${WORKERS:-12}" --batch "${BATCH:-128}" --seq-len 384 --max-spans 6 --p-whole 0.25 \
  --minutes "$MINUTES" --ckpt-minutes 5 --no-progress ${EXTRA:-} | tail -n 40
python3 -c "from pathlib import Path; from unmask.engine.export import pack_run; pack_run(Path('/tmp/run'), Path('$OUT'))"
ls -la "$OUT"
