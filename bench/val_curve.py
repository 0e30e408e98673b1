"""Validation loss of several weight files on one fixed set of held-out batches (issue 8's learning curve).

    python bench/val_curve.py engine/models/denoiser/weights.npz old.npz ...   [--max-spans 8 --p-whole 0.25]

Each training run validates on batches drawn with its own ``--max-spans``/``--p-whole``, so
the numbers of runs with different recipes are not comparable. This scores every given
``weights.npz`` (or run ``weights.pt``) on the batches ``unmask train`` would build with the
given recipe (seed 1234, the first 1% of ``data/corpus.jsonl``, never trained on), so a curve
across runs and sessions is measured on the same windows. An old shipped model can be
recovered from git: ``git show REV:engine/models/denoiser/weights.npz > /tmp/w.npz``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from unmask.engine import corpus as corpus_mod
from unmask.engine.export import load_npz, load_pt
from unmask.engine.tokenizer import Tokenizer
from unmask.engine.train import loss_fn, split_validation, validation_batches


def load(path: Path):
    model = load_npz(path)[0] if path.suffix == ".npz" else load_pt(path)[0]
    return model.float().eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights", nargs="+", type=Path)
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus.jsonl"))
    ap.add_argument("--tokenizer", type=Path, default=Path("engine/models/denoiser/tokenizer.json"))
    ap.add_argument("--max-spans", type=int, default=8)
    ap.add_argument("--p-whole", type=float, default=0.25)
    ap.add_argument("--seq-len", type=int, default=384)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tok = Tokenizer.from_file(args.tokenizer)
    docs = [d["text"] for d in corpus_mod.load(args.corpus)]
    batches = validation_batches(split_validation(docs)[0], tok, args, causal=False, device="cpu", n=args.batches)
    for w in args.weights:
        model = load(w)
        with torch.no_grad():
            v = sum(loss_fn(model, b, None)[0].item() for b in batches) / len(batches)
        print(f"{w}\t{v:.4f}", flush=True)


if __name__ == "__main__":
    main()
