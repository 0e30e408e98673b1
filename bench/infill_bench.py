"""Latency of `unmask infill` on 100 spans of real code, model load included (amortized).

    python bench/infill_bench.py [--n 100] [--budget-ms 250] [--steps 32] [--threads 0]

Cuts N holes (a rest-of-line or a whole line, 50/50) at a fixed seed out of standard-library
files, runs the real CLI as a subprocess (so start-up and model load are counted), and
prints p50/p95/max per span and the mean including load. Exact match is printed too, but
the standard library is in the training corpus, so it is not a quality measure (HumanEval
is: `unmask eval`).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np


def make_spans(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if 2_000 < p.stat().st_size < 200_000)
    out = []
    while len(out) < n:
        f = rng.choice(files)
        lines = f.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        i = rng.randrange(len(lines))
        line = lines[i]
        if len(line.strip()) < 8:
            continue
        start = sum(len(x) for x in lines[:i])
        if rng.random() < 0.5:  # rest of line from a random column
            ind = len(line) - len(line.lstrip())
            col = rng.randint(ind, len(line.rstrip("\n")) - 1)
        else:
            col = 0
        text = "".join(lines)
        end = start + len(line.rstrip("\n")) if col else start + len(line)
        out.append(
            {
                "id": f"{f.name}:{i}:{col}",
                "prefix": text[: start + col],
                "suffix": text[end:],
                "answer": text[start + col : end],
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--budget-ms", type=float, default=250)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    spans = make_spans(args.n)
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in.jsonl", Path(d) / "out.jsonl"
        src.write_text("".join(json.dumps({k: s[k] for k in ("id", "prefix", "suffix")}) + "\n" for s in spans))
        cmd = [
            sys.executable,
            "-m",
            "unmask.lsp.cli",
            "infill",
            "--jsonl",
            str(src),
            "--out",
            str(dst),
            "--budget-ms",
            str(args.budget_ms),
            "--steps",
            str(args.steps),
            "--threads",
            str(args.threads),
        ]
        if args.model:
            cmd += ["--model", args.model]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        rows = [json.loads(line) for line in dst.read_text().splitlines()]
    ms = np.array([r_["ms"] for r_ in rows])
    exact = np.mean([row["completion"] == s["answer"] for row, s in zip(rows, spans)])
    print(r.stderr.strip())
    print(
        f"spans {len(rows)}  p50 {np.percentile(ms, 50):.1f} ms  p95 {np.percentile(ms, 95):.1f} ms  "
        f"max {ms.max():.1f} ms  whole process {wall:.1f} s = {wall * 1000 / len(rows):.1f} ms/span incl. "
        f"start-up and load  steps mean {np.mean([r_['steps'] for r_ in rows]):.1f}  exact {exact:.0%}"
    )


if __name__ == "__main__":
    main()
