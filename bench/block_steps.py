"""Quality and latency against block size and steps per block, side by side in one run.

    python bench/block_steps.py                                   # the shipped model, every third single-line task
    python bench/block_steps.py --model runs/adapt-export --configs 1x1,4x4,4x2,8x4 --limit 100

Each configuration ``BxK`` decodes the hole in blocks of B slots with K model calls per block
(1x1 is the base's own left-to-right decoding; Bx1 commits a whole block per call). Every task
runs every configuration, in a shuffled order per task, in one process, so latency ratios are
measured under the same load. Reported per configuration: HumanEval single-line pass@1 (tests
executed), exact match, p50/p95 latency, model calls and tokens per call, and the p50 speed-up
over 1x1. Prints the CPU flags that matter for the runtime (AVX2, AVX-512 VNNI/BF16, AMX).

It knows the engine's public API and the task format; nothing of LSP.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from cpuinfo import cpu_flags  # bench/ is on sys.path when a bench script runs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    ap.add_argument("--configs", default="1x1,2x2,2x1,4x4,4x2,8x8,8x4", help="BxK list")
    ap.add_argument("--limit", type=int, default=0, help="tasks (0: every third single-line task)")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    from unmask.engine.evaluate import default_data_dir, load_tasks, run_test
    from unmask.engine.infill import Engine
    from unmask.engine.runtime import backend_config

    eng = Engine(backend_config("onnx", args.model, args.threads))
    eng.warmup()
    tasks = load_tasks(default_data_dir(), "single")
    tasks = tasks[::3] if not args.limit else tasks[:: max(1, len(tasks) // args.limit)][: args.limit]
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    rng = random.Random(args.seed)
    rows: dict[tuple[int, int], list[dict]] = {c: [] for c in configs}
    t0 = time.perf_counter()
    for n, t in enumerate(tasks):
        order = list(configs)
        rng.shuffle(order)
        for b, k in order:
            d = eng.infill(t["prompt"], t["suffix"], one_line=True, block=b, block_steps=k, threshold=args.threshold)
            text = d.text if d.text.endswith("\n") or not d.text else d.text + "\n"
            toks = max(1, len(eng.tok.encode(d.text)))
            rows[(b, k)].append({"task": t, "text": text, "ms": d.ms, "calls": d.step, "tokens": toks})
        if (n + 1) % 25 == 0:
            print(f"{n + 1}/{len(tasks)} tasks, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    report = []
    base_p50 = None
    with ThreadPoolExecutor(2) as ex:
        for c in configs:
            rs = rows[c]
            passed = list(ex.map(lambda r: run_test(r["task"], r["text"]), rs))
            ms = np.array([r["ms"] for r in rs])
            p50 = float(np.percentile(ms, 50))
            base_p50 = base_p50 or p50
            report.append(
                {
                    "config": f"{c[0]}x{c[1]}",
                    "block": c[0],
                    "steps_per_block": c[1],
                    "n": len(rs),
                    "pass@1": round(100 * sum(passed) / len(rs), 2),
                    "exact": round(
                        100 * sum(r["text"].strip() == r["task"]["canonical_solution"].strip() for r in rs) / len(rs), 2
                    ),
                    "p50_ms": round(p50, 1),
                    "p95_ms": round(float(np.percentile(ms, 95)), 1),
                    "calls_mean": round(float(np.mean([r["calls"] for r in rs])), 2),
                    "tokens_per_call": round(sum(r["tokens"] for r in rs) / max(1, sum(r["calls"] for r in rs)), 2),
                    "speedup_p50_vs_first": round(base_p50 / p50, 2),
                }
            )
    print(f"model: {eng.info.path} ({eng.meta.get('name')}); CPU flags: {cpu_flags()}; threads {args.threads}")
    print("| config | tasks | pass@1 % | exact % | p50 ms | p95 ms | model calls | tokens/call | p50 speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in report:
        print(
            f"| {r['config']} | {r['n']} | {r['pass@1']} | {r['exact']} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{r['calls_mean']} | {r['tokens_per_call']} | {r['speedup_p50_vs_first']}x |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"model": str(eng.info.path), "cpu": cpu_flags(), "rows": report}, indent=1)
        )


if __name__ == "__main__":
    main()
