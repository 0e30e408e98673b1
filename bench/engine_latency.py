"""Per-call model latency side by side: encode (context) and step (span slots), per backend.

    python bench/engine_latency.py [--model DIR] [--repeat 20]

Backends in one run: ONNX Runtime with the shipped int8 graphs, ONNX Runtime fp32 (exported
here into a temporary directory from the shipped weights; needs torch), and PyTorch. Prints
median ms per call and the int8/fp32 ratio, for the context sizes and bucket sizes the
engine uses.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from unmask.engine.runtime import ModelInfo, OnnxBackend, TorchBackend


def timeit(fn, repeat: int) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    from unmask.engine.runtime import model_dir

    info = ModelInfo.load(args.model or model_dir("denoiser"))  # the from-scratch denoiser's encode/step graphs
    backends = {"onnx-int8": OnnxBackend(info, threads=args.threads)}
    try:
        from unmask.engine.export import export_onnx, load_npz

        tmp = Path(tempfile.mkdtemp())
        export_onnx(load_npz(info.file("weights.npz"))[0], tmp, quantize=False)
        backends["onnx-fp32"] = OnnxBackend(ModelInfo(tmp, info.meta), threads=args.threads)
        backends["torch"] = TorchBackend(info, threads=args.threads)
    except ImportError:
        print("(torch not installed: int8 only)")
    rng = np.random.default_rng(0)
    V = info.meta["vocab_size"]
    rows = []
    for C in (128, 256, 352):
        ids, pos = rng.integers(10, V, C), np.arange(C)
        r = {"what": f"encode C={C}"}
        for name, b in backends.items():
            r[name] = timeit(lambda b=b, ids=ids, pos=pos: b.encode(ids, pos), args.repeat)
        rows.append(r)
    C = 320
    for S in (8, 16, 32, 64):
        r = {"what": f"step S={S} (C={C})"}
        for name, b in backends.items():
            kv = b.encode(rng.integers(10, V, C), np.arange(C))
            span, spos = rng.integers(10, V, (1, S)), np.arange(C, C + S)[None]
            r[name] = timeit(lambda b=b, kv=kv, span=span, spos=spos: b.step(span, spos, kv), args.repeat)
        rows.append(r)
    names = list(backends)
    print("| call | " + " | ".join(f"{n} ms" for n in names) + (" | int8/fp32 |" if "onnx-fp32" in names else " |"))
    print("|---" * (len(names) + 1 + ("onnx-fp32" in names)) + "|")
    for r in rows:
        cells = " | ".join(f"{r[n]:.2f}" for n in names)
        ratio = f" | {r['onnx-int8'] / r['onnx-fp32']:.2f} |" if "onnx-fp32" in names else " |"
        print(f"| {r['what']} | {cells}{ratio}")


if __name__ == "__main__":
    main()
