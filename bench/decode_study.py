"""Decoding choices measured on held-out code, against one checkpoint (issue 8's "measure each").

    python bench/decode_study.py [--model DIR] [--n 300]

The held-out set is the corpus's validation split (the first 1% of the shuffled
``data/corpus.jsonl``, never trained on): N whole non-trivial lines are masked one at a
time (single-line infill, like HumanEval's single-line set). Decoding knobs are tuned here,
not on HumanEval, which stays a pure measurement.

Prints exact match, a whitespace-insensitive match and the mean character similarity
(difflib ratio, a signal even while exact match is still near zero) per configuration.
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import time
from pathlib import Path

import numpy as np

from unmask.engine.infill import Engine
from unmask.engine.runtime import backend_config


def heldout_lines(corpus: Path, n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    docs = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8")]
    val = docs[: max(20, len(docs) // 100)]
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        d = rng.choice(val)
        lines = d.splitlines(keepends=True)
        i = rng.randrange(len(lines))
        s = lines[i].strip()
        if len(s) < 6 or s.startswith("#") or len(lines[i]) > 100:
            continue
        out.append(("".join(lines[:i]), lines[i], "".join(lines[i + 1 :])))
    return out


CONFIGS = {
    "bucket16-block1": dict(bucket=16, steps=32, threshold=0.9, block=1),
    "bucket16-block4": dict(bucket=16, steps=32, threshold=0.9, block=4),
    "bucket32-block4": dict(bucket=32, steps=32, threshold=0.9, block=4),
    "bucket32-block8": dict(bucket=32, steps=32, threshold=0.9, block=8),
    "bucket32-free": dict(bucket=32, steps=32, threshold=0.9, block=None),
    "bucket16-free": dict(bucket=16, steps=32, threshold=0.9, block=None),
    "bucket32-thr0.9": dict(bucket=32, steps=32, threshold=0.9),
    "bucket16-thr0.9": dict(bucket=16, steps=32, threshold=0.9),
    "bucket32-1tok/step": dict(bucket=32, steps=32, threshold=1.01),
    "bucket32-thr0.7": dict(bucket=32, steps=32, threshold=0.7),
    "bucket32-8steps": dict(bucket=32, steps=8, threshold=1.01),
    "bucket32-remask0.3": dict(bucket=32, steps=48, threshold=0.9, remask=0.3),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus.jsonl"))
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    args = ap.parse_args()
    eng = Engine(backend_config("onnx", args.model))
    eng.warmup()
    items = heldout_lines(args.corpus, args.n)
    for name in args.configs.split(","):
        kw = CONFIGS[name]
        hits = loose = 0
        ms, sim = [], []
        t = time.perf_counter()
        for pre, ans, suf in items:
            d = eng.infill(pre, suf, one_line=True, **kw)
            hits += d.text == ans
            loose += d.text.split() == ans.split()
            sim.append(difflib.SequenceMatcher(None, d.text.strip(), ans.strip()).ratio())
            ms.append(d.ms)
        print(
            f"{name:22s} exact {100 * hits / len(items):5.1f}%  ws-insensitive {100 * loose / len(items):5.1f}%  "
            f"similarity {np.mean(sim):.3f}  p50 {np.percentile(ms, 50):6.1f} ms  ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
