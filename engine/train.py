"""Train the denoiser: one flat script, resumable, CPU or CUDA.

    python -m unmask.engine.train --out runs/base --minutes 120

Builds the corpus (:mod:`unmask.engine.corpus`) and tokenizer on first use, then trains
with the masked-diffusion span-infilling objective of :mod:`unmask.engine.data`. Every
``--ckpt-minutes`` it writes ``ckpt.pt`` (weights, EMA weights, optimizer, counters) and
``weights.pt`` (EMA weights only, what export reads) and appends to ``log.jsonl``. Run the
same command again and it resumes from ``ckpt.pt``.

Schedule: linear warm-up, then a constant learning rate; the exported model is an
exponential moving average of the weights, which gives most of the benefit of a decay
phase while keeping training open-ended across sessions.

Counts both tokens through the model and *supervised* tokens (positions carrying loss).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import corpus as corpus_mod
from . import data as data_mod
from .model import Denoiser, ModelConfig
from .tokenizer import Tokenizer
from .tokenizer import train as train_tokenizer


def ensure_corpus_and_tokenizer(corpus: Path, tok_path: Path, eval_dir: Path, vocab: int) -> list[str]:
    if not corpus.exists():
        print(f"building corpus -> {corpus}")
        print(corpus_mod.build(corpus, eval_dir, corpus_mod.default_roots()))
    docs = [d["text"] for d in corpus_mod.load(corpus)]
    if not tok_path.exists():
        print(f"training tokenizer -> {tok_path}")
        rng = random.Random(0)
        train_tokenizer(iter([d for d in docs if rng.random() < 0.25]), vocab, tok_path)
    return docs


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX); True where we cannot tell.

    Without it oneDNN emulates bf16 and CPU autocast is far slower than float32: on a 2-core AVX2
    AMD EPYC a training step of the default model took ~80 s under bf16 autocast against ~3 s in
    float32.
    """
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return True
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def split_validation(docs: list[str]) -> tuple[list[str], list[str]]:
    """(held-out, training) documents: the first 1% of the corpus (at least 20) is never trained on."""
    n_val = max(20, len(docs) // 100)
    return docs[:n_val], docs[n_val:]


def validation_batches(
    val_docs: list[str], tok: Tokenizer, args: argparse.Namespace, causal: bool, device: str, n: int = 4
) -> list[dict[str, torch.Tensor]]:
    """The fixed validation batches of a run with this recipe (seed 1234, t on a grid over each batch)."""
    vrng = random.Random(1234)
    vs = data_mod.WindowSampler(val_docs, chars=int(args.seq_len * 3.6), seed=1234)
    out = []
    for _ in range(n):
        exs = [
            data_mod.make_fim_example(vs.sample(), tok, vrng, args.seq_len)
            if causal
            else data_mod.make_example(
                vs.sample(), tok, vrng, args.seq_len, args.max_spans, args.p_whole, t=(i + 0.5) / args.batch
            )
            for i in range(args.batch)
        ]
        out.append(to_torch(data_mod.batch(exs), device))
    return out


def to_torch(b: dict[str, np.ndarray], device: str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.asarray(v)).to(device) for k, v in b.items()}


def loss_fn(model: Denoiser, b: dict[str, torch.Tensor], amp_dtype) -> tuple[torch.Tensor, int]:
    """1/t-weighted cross-entropy over the masked slots, normalised by the batch's slot count.

    Only supervised positions go through the output head; their count is padded up to a
    multiple of 256 so the head sees few distinct shapes (every new shape costs oneDNN
    cached memory under CPU autocast, which grew without bound before this padding).
    """
    with torch.autocast(device_type=b["ids"].device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        h = model(b["ids"], b["pos"], b["is_ctx"], b["valid"])
        flat_t = b["target"].reshape(-1)
        idx = (flat_t >= 0).nonzero().squeeze(1)
        n = int(idx.numel())
        idx = F.pad(idx, (0, -(-n // 256) * 256 - n))
        logits = model.logits(h.reshape(-1, h.shape[-1])[idx]).float()
    tgt = flat_t[idx].clone()
    tgt[n:] = -100
    w = b["weight"].reshape(-1)[idx].clone()
    w[n:] = 0.0
    ce = F.cross_entropy(logits, tgt, reduction="none", ignore_index=-100)
    loss = (ce * w).sum() / b["n_slots"].clamp(min=1)
    return loss, n


class _Batches(torch.utils.data.IterableDataset):
    """Batches built in DataLoader worker processes (``--workers``), each with its own seed."""

    def __init__(self, docs: list[str], tok: Tokenizer, args: argparse.Namespace, seed: int):
        self.docs, self.tok, self.args, self.seed = docs, tok, args, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        a = self.args
        yield from data_mod.batches(
            self.docs,
            self.tok,
            a.seq_len,
            a.batch,
            a.max_spans,
            a.p_whole,
            seed=self.seed + 7 * (info.id if info else 0),
            p_edit=a.p_edit,
            objective="fim" if a.causal else "mdlm",
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="train the unmask denoiser")
    ap.add_argument("--out", type=Path, default=Path("runs/base"))
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus.jsonl"))
    ap.add_argument("--tokenizer", type=Path, default=None, help="default: <out>/tokenizer.json")
    ap.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"), help="only read to exclude it")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--ffn", type=int, default=704)
    ap.add_argument("--causal", action="store_true", help="autoregressive baseline (benchmarks)")
    ap.add_argument("--seq-len", type=int, default=384)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--max-spans", type=int, default=4)
    ap.add_argument("--p-whole", type=float, default=0.15)
    ap.add_argument("--p-edit", type=float, default=0.0, help="share of edit-propagation examples (next-edit)")
    ap.add_argument(
        "--decay-steps", type=int, default=0, help="with --max-steps: lr falls linearly to 10%% over the last N steps"
    )
    ap.add_argument("--minutes", type=float, default=60.0, help="stop after this much training time this run")
    ap.add_argument("--max-steps", type=int, default=0, help="stop at this total step (0: no limit)")
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes building batches (GPU runs)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start a new run from a shipped model directory (weights.npz + model.json), e.g. to go on "
        "training the committed default model on a machine without the old ckpt.pt",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    if args.bf16 and args.device == "cpu" and not cpu_has_native_bf16():
        print("--bf16 ignored: this CPU has no native bf16 (no avx512_bf16/amx_bf16), emulated bf16 is ~25x slower")
        args.bf16 = False
    if args.threads:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    tok_path = args.tokenizer or out / "tokenizer.json"
    ckpt_path = out / "ckpt.pt"
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False) if ckpt_path.exists() else None
    init, init_meta = None, {}
    if state is None and args.init_from:
        from .export import load_npz

        init, _ = load_npz(args.init_from / "weights.npz")
        init_meta = json.loads((args.init_from / "model.json").read_text())
        if not tok_path.exists():
            shutil.copy(args.init_from / "tokenizer.json", tok_path)
    docs = ensure_corpus_and_tokenizer(args.corpus, tok_path, args.eval_dir, args.vocab)
    tok = Tokenizer.from_file(tok_path)
    if not (out / "tokenizer.json").exists():  # the run directory carries its tokenizer (export reads it)
        shutil.copy(tok_path, out / "tokenizer.json")
    val_docs, train_docs = split_validation(docs)

    if state:
        cfg = ModelConfig(**state["config"])
    elif init is not None:
        cfg = init.c
    else:
        cfg = ModelConfig(
            vocab_size=tok.vocab_size,
            d_model=args.d_model,
            n_layers=args.layers,
            n_heads=args.heads,
            ffn_hidden=args.ffn,
            causal=args.causal,
        )
    args.causal = cfg.causal  # a resumed run keeps its objective
    torch.manual_seed(args.seed)
    model = Denoiser(cfg).to(args.device)
    ema = Denoiser(cfg).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    counters = {"step": 0, "tokens": 0, "supervised": 0, "seconds": 0.0, "examples": 0}
    if state:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        counters = state["counters"]
        print(f"resumed from {ckpt_path} at step {counters['step']}")
    else:
        if init is not None:
            model.load_state_dict(init.state_dict())
            counters.update({k: v for k, v in init_meta.get("training", {}).items() if k in counters})
            print(f"initialised from {args.init_from} (step {counters['step']}); optimizer state starts fresh")
        ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    meta = {"config": cfg.to_dict(), "args": {k: str(v) for k, v in vars(args).items()}, "n_params": model.n_params()}
    (out / "train_meta.json").write_text(json.dumps(meta, indent=1))
    print(f"model: {model.n_params() / 1e6:.2f}M params, {cfg}")

    step_fn = torch.compile(model) if args.compile else model
    amp_dtype = torch.bfloat16 if args.bf16 else None
    seed = args.seed * 100_003 + counters["step"]  # a resumed run draws fresh windows
    loader = iter(
        torch.utils.data.DataLoader(
            _Batches(train_docs, tok, args, seed),
            batch_size=None,
            num_workers=args.workers,
            pin_memory=args.device.startswith("cuda"),
            prefetch_factor=4 if args.workers else None,
            persistent_workers=bool(args.workers),
        )
    )

    val_batches = validation_batches(val_docs, tok, args, cfg.causal, args.device)

    def validate() -> float:
        ema.eval()
        with torch.no_grad():
            ls = [loss_fn(ema, b, amp_dtype)[0].item() for b in val_batches]
        return sum(ls) / len(ls)

    def save() -> None:
        tmp = out / "ckpt.pt.tmp"
        torch.save(
            {
                "config": cfg.to_dict(),
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "opt": opt.state_dict(),
                "counters": counters,
            },
            tmp,
        )
        tmp.replace(ckpt_path)
        torch.save({"config": cfg.to_dict(), "model": ema.state_dict(), "counters": counters}, out / "weights.pt")

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    t_end = time.time() + args.minutes * 60
    last_ckpt = time.time()
    log = open(out / "log.jsonl", "a")
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), disable=args.no_progress)
    task = progress.add_task("train", total=args.minutes * 60)
    t_start = time.time()
    win_loss, win_n, win_t0, win_tok, win_sup = 0.0, 0, time.time(), 0, 0
    with progress:
        while time.time() < t_end and not (args.max_steps and counters["step"] >= args.max_steps):
            t0 = time.time()
            b = {k: torch.as_tensor(v).to(args.device, non_blocking=True) for k, v in next(loader).items()}
            lr = args.lr * min(1.0, (counters["step"] + 1) / args.warmup)
            if args.decay_steps and args.max_steps:  # linear cool-down to 10% over the last decay_steps
                lr *= max(0.1, min(1.0, (args.max_steps - counters["step"]) / args.decay_steps))
            for g in opt.param_groups:
                g["lr"] = lr
            model.train()
            loss, n_sup = loss_fn(step_fn, b, amp_dtype)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                d = min(args.ema, (1 + counters["step"]) / (10 + counters["step"]))
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - d)
            n_tok = int(b["valid"].sum())
            counters["step"] += 1
            counters["tokens"] += n_tok
            counters["supervised"] += n_sup
            counters["examples"] += args.batch
            counters["seconds"] += time.time() - t0
            win_loss += loss.item()
            win_n += 1
            win_tok += n_tok
            win_sup += n_sup
            progress.update(
                task, completed=time.time() - t_start, description=f"step {counters['step']} loss {loss.item():.3f}"
            )
            if counters["step"] % 50 == 0:
                dt = time.time() - win_t0
                rec = {
                    "step": counters["step"],
                    "loss": win_loss / win_n,
                    "lr": lr,
                    "tok_s": win_tok / dt,
                    "sup_tok_s": win_sup / dt,
                    "sup_frac": win_sup / max(1, win_tok),
                    **counters,
                }
                if counters["step"] % 500 == 0:
                    rec["val_loss"] = validate()
                log.write(json.dumps(rec) + "\n")
                log.flush()
                if args.no_progress:
                    print(json.dumps(rec), flush=True)
                win_loss, win_n, win_t0, win_tok, win_sup = 0.0, 0, time.time(), 0, 0
            if time.time() - last_ckpt > args.ckpt_minutes * 60:
                save()
                last_ckpt = time.time()
    save()
    v = validate()
    log.write(json.dumps({"step": counters["step"], "final_val_loss": v, **counters}) + "\n")
    log.close()
    print(
        f"done: step {counters['step']}, val loss {v:.4f}, {counters['tokens'] / 1e6:.1f}M tokens, "
        f"{counters['supervised'] / 1e6:.1f}M supervised, {counters['seconds'] / 3600:.2f} h"
    )
    if math.isnan(v):
        raise SystemExit("validation loss is NaN")


if __name__ == "__main__":
    main()
