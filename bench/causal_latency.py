"""Per-call latency of the shipped model's runtime graph, side by side in one run.

    python bench/causal_latency.py                 # the shipped model, 2 threads
    python bench/causal_latency.py --quant q8,int8,fp32 --repeat 20

For each runtime quantization (``engine/llama_onnx.py``; each builds its own graph from the base
once, into the cache): a prefill of C context tokens, one decoded token over a cache of P
tokens, and one block of B slots over the same cache (the block-diffusion step), plus the block
step's cost in decoded tokens (block ms / token ms: a block of B slots pays off when it commits
more than that many tokens per call). Medians of ``--repeat`` calls, interleaved over the
configurations so that load affects them alike. Prints the CPU flags that matter.

It knows the runtime graph's inputs; nothing of prompts or decoding.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quant", default="q8", help="comma list of q8, q4, int8, fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--contexts", default="64,256,512")
    ap.add_argument("--blocks", default="2,4,8,16")
    args = ap.parse_args(argv)

    from cpuinfo import cpu_flags

    from unmask.engine.causal import OnnxDecoder, causal_bias, prepare_runtime
    from unmask.engine.runtime import ModelInfo

    info = ModelInfo.load(None)
    decoders = {}
    for q in args.quant.split(","):
        rt = prepare_runtime(ModelInfo(info.path, dict(info.meta, quant=q)), quiet=True)
        decoders[q] = OnnxDecoder.load(rt, threads=args.threads)
    rng = np.random.default_rng(0)
    ctxs = [int(x) for x in args.contexts.split(",")]
    blocks = [int(x) for x in args.blocks.split(",")]
    times: dict[tuple, list[float]] = {}

    def timed(key, fn, *a):
        t = time.perf_counter()
        fn(*a)
        times.setdefault(key, []).append((time.perf_counter() - t) * 1000)

    caches = {}
    for q, dec in decoders.items():
        for c in ctxs:
            ids = rng.integers(100, 40000, c).tolist()
            caches[(q, c)] = dec.forward(ids, range(c), causal_bias(0, c), None, c - 1)[1]
    for _ in range(args.repeat):
        for q, dec in decoders.items():
            for c in ctxs:
                ids = rng.integers(100, 40000, c).tolist()
                past = caches[(q, c)]
                timed((q, "prefill", c), dec.forward, ids, range(c), causal_bias(0, c), None, c - 1)
                timed((q, "token", c), dec.forward, [500], [c], causal_bias(c, 1), past, 0)
                for b in blocks:
                    zero = np.zeros((b, c + b), np.float32)
                    timed((q, f"block{b}", c), dec.forward, [16] * b, range(c, c + b), zero, past, 0)
    print(f"CPU flags: {cpu_flags()}; threads {args.threads}; median of {args.repeat} calls, ms")
    head = "| call | " + " | ".join(f"{q} C/P={c}" for q in decoders for c in ctxs) + " |"
    print(head)
    print("|---" * (1 + len(decoders) * len(ctxs)) + "|")
    kinds = ["prefill", "token"] + [f"block{b}" for b in blocks]
    for k in kinds:
        cells = [f"{np.median(times[(q, k, c)]):.1f}" for q in decoders for c in ctxs]
        print(f"| {k} | " + " | ".join(cells) + " |")
    for b in blocks:
        cells = [
            f"{np.median(times[(q, f'block{b}', c)]) / np.median(times[(q, 'token', c)]):.2f}"
            for q in decoders
            for c in ctxs
        ]
        print(f"| block{b} / token | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
