"""Package a trained checkpoint as a shippable model directory.

    python -m unmask.engine.export --run runs/base --out engine/models/denoiser

Writes, each file at most 16 MB:

* ``weights.npz``: the EMA weights in float16 (the PyTorch backend and re-exports read it);
* ``encode.onnx`` / ``step.onnx``: the two inference graphs (context -> per-layer keys and
  values; span slots + cache -> logits), weights int8 (dynamic quantization) unless
  ``--fp32``;
* ``tokenizer.json`` and ``model.json`` (config, special ids, tokenizer hash, window,
  training counters); eval numbers are added to ``model.json`` by ``unmask eval --write``.

Needs torch and onnx (the ``train`` extra); the runtime needs neither.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .model import Denoiser, ModelConfig
from .tokenizer import Tokenizer, file_sha256

MAX_FILE = 16 * 1024 * 1024


class _Encode(nn.Module):
    def __init__(self, m: Denoiser):
        super().__init__()
        self.m = m

    def forward(self, ctx_ids, ctx_pos):
        return self.m.encode(ctx_ids, ctx_pos)


class _Step(nn.Module):
    def __init__(self, m: Denoiser):
        super().__init__()
        self.m = m

    def forward(self, span_ids, span_pos, kv):
        return self.m.step(span_ids, span_pos, kv)


def load_npz(path: Path) -> tuple[Denoiser, ModelConfig]:
    z = np.load(path)
    cfg = ModelConfig(**json.loads(str(z["__config__"])))
    m = Denoiser(cfg)
    m.load_state_dict({k: torch.from_numpy(z[k].astype(np.float32)) for k in z.files if k != "__config__"})
    return m.eval(), cfg


def save_npz(model: Denoiser, path: Path) -> None:
    arrays = {k: v.detach().cpu().numpy().astype(np.float16) for k, v in model.state_dict().items()}
    np.savez(path, __config__=np.array(json.dumps(model.c.to_dict())), **arrays)


def export_onnx(model: Denoiser, out_dir: Path, quantize: bool) -> None:
    model = model.eval().float()
    c = model.c
    ids = torch.randint(10, c.vocab_size, (1, 20))
    pos = torch.arange(20)[None]
    kv = model.encode(ids, pos)
    span = torch.randint(10, c.vocab_size, (2, 8))
    spos = torch.arange(20, 28)[None].expand(2, -1)
    tmp = out_dir / "tmp_export"
    tmp.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        _Encode(model),
        (ids, pos),
        tmp / "encode.onnx",
        input_names=["ctx_ids", "ctx_pos"],
        output_names=["kv"],
        dynamic_axes={"ctx_ids": {0: "one", 1: "C"}, "ctx_pos": {0: "one", 1: "C"}, "kv": {2: "one", 4: "C"}},
        opset_version=17,
        dynamo=False,
    )
    torch.onnx.export(
        _Step(model),
        (span, spos, kv),
        tmp / "step.onnx",
        input_names=["span_ids", "span_pos", "kv"],
        output_names=["logits"],
        dynamic_axes={
            "span_ids": {0: "B", 1: "S"},
            "span_pos": {0: "B", 1: "S"},
            "kv": {2: "one", 4: "C"},
            "logits": {0: "B", 1: "S"},
        },
        opset_version=17,
        dynamo=False,
    )
    write_graphs(tmp, out_dir, ("encode.onnx", "step.onnx"), quantize)


def write_graphs(tmp: Path, out_dir: Path, names: tuple[str, ...], quantize: bool) -> None:
    """Move graphs from ``tmp`` to ``out_dir``, int8-quantized (MatMul, Gather) when ``quantize``; remove ``tmp``."""
    for name in names:
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(
                tmp / name, out_dir / name, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gather"]
            )
        else:
            shutil.copy(tmp / name, out_dir / name)
    shutil.rmtree(tmp)


def export(run: Path, out: Path, quantize: bool = True, window: int = 384, max_file: int | None = MAX_FILE) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    if (run / "weights.pt").exists():
        model, state = load_pt(run / "weights.pt")
        save_npz(model, out / "weights.npz")
    else:  # a run packed on another machine (pack_run): fp16 weights + counters
        state = {"counters": json.loads((run / "counters.json").read_text())}
        if (run / "weights.npz").resolve() != (out / "weights.npz").resolve():
            shutil.copy(run / "weights.npz", out / "weights.npz")
    model, cfg = load_npz(out / "weights.npz")  # export exactly what ships (fp16-rounded)
    export_onnx(model, out, quantize)
    shutil.copy(run / "tokenizer.json", out / "tokenizer.json")
    tok = Tokenizer.from_file(out / "tokenizer.json")
    old = json.loads((out / "model.json").read_text()) if (out / "model.json").exists() else {}
    meta = {
        "name": out.name,
        "format": 1,
        "config": cfg.to_dict(),
        "n_params": model.n_params(),
        "specials": tok.specials.as_dict(),
        "vocab_size": tok.vocab_size,
        "tokenizer_sha256": file_sha256(out / "tokenizer.json"),
        "window": window,
        "buckets": [8, 16, 32, 64],
        "quantized": "int8-dynamic" if quantize else "none",
        "training": state.get("counters", {}),
        "eval": old.get("eval", {}),
    }
    train_meta = run / "train_meta.json"
    if train_meta.exists():
        meta["training_args"] = json.loads(train_meta.read_text()).get("args", {})
        stats = Path(meta["training_args"].get("corpus", "data/corpus.jsonl")).parent / "corpus_stats.json"
        if stats.exists():
            meta["data"] = json.loads(stats.read_text())
    meta["hardware"] = old.get("hardware", "a 2-core x86-64 CPU (AVX-512, bf16 autocast), no GPU")
    meta["history"] = training_history(old.get("history", []), run / "log.jsonl", meta.get("training_args", {}))
    for k in ("eval_nes", "notes"):  # kept until the next `unmask eval --write` / `nes_eval --write`
        if old.get(k):
            meta[k] = old[k]
    (out / "model.json").write_text(json.dumps(meta, indent=1) + "\n")
    for f in out.iterdir():
        if max_file and f.is_file() and f.stat().st_size > max_file:
            raise SystemExit(f"{f} is {f.stat().st_size / 2**20:.1f} MB, over the 16 MB limit")
    return meta


def training_history(history: list[dict], log: Path, args: dict) -> list[dict]:
    """The model's training sessions, oldest first: the shipped history plus this run's, from its log.

    One entry per run (a run resumed from its own ckpt.pt is one entry): the step range, tokens,
    supervised tokens, hours, the recipe switches that vary between runs, and the validation-loss
    curve (step, tokens, val_loss). Re-exporting the same run replaces its entry.
    """
    if not log.exists():
        return list(history)
    recs = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    if not recs:
        return list(history)
    first, last = recs[0], recs[-1]
    prev = [h for h in history if h.get("end_step", 0) < first["step"]]
    start = prev[-1]["end_step"] if prev else 0
    base = prev[-1] if prev else {"end_tokens": 0, "end_supervised": 0, "end_seconds": 0.0}
    curve = [
        {"step": r["step"], "tokens": r["tokens"], "val_loss": round(r.get("val_loss", r.get("final_val_loss")), 4)}
        for r in recs
        if "val_loss" in r or "final_val_loss" in r
    ]
    entry = {
        "start_step": start,
        "end_step": last["step"],
        "tokens": last["tokens"] - base["end_tokens"],
        "supervised": last["supervised"] - base["end_supervised"],
        "hours": round((last["seconds"] - base["end_seconds"]) / 3600, 2),
        "end_tokens": last["tokens"],
        "end_supervised": last["supervised"],
        "end_seconds": last["seconds"],
        "device": args.get("device", "?"),
        "recipe": {k: args.get(k) for k in ("lr", "max_spans", "p_whole", "p_edit", "decay_steps") if k in args},
        "val_curve": curve,
    }
    return [*prev, entry]


def load_pt(path: Path) -> tuple[Denoiser, dict]:
    """A run's ``weights.pt`` (EMA weights, config, counters) as a model, and the raw state."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = Denoiser(ModelConfig(**state["config"]))
    model.load_state_dict(state["model"])
    return model, state


def pack_run(run: Path, dest: Path) -> None:
    """Copy what a run needs to be exported elsewhere, each file small enough to travel (<= 16 MB):
    fp16 EMA weights, counters, training args, log and tokenizer."""
    dest.mkdir(parents=True, exist_ok=True)
    model, state = load_pt(run / "weights.pt")
    save_npz(model, dest / "weights.npz")
    (dest / "counters.json").write_text(json.dumps(state.get("counters", {})))
    for name in ("train_meta.json", "log.jsonl", "tokenizer.json"):
        if (run / name).exists():
            shutil.copy(run / name, dest / name)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="export a run to a model directory (ONNX + metadata)")
    ap.add_argument("--run", type=Path, default=Path("runs/base"))
    ap.add_argument("--out", type=Path, default=Path("engine/models/denoiser"))
    ap.add_argument("--fp32", action="store_true", help="do not quantize the ONNX graphs")
    ap.add_argument("--window", type=int, default=384)
    args = ap.parse_args(argv)
    meta = export(args.run, args.out, quantize=not args.fp32, window=args.window)
    for f in sorted(args.out.iterdir()):
        print(f"{f}  {f.stat().st_size / 2**20:.2f} MB")
    print(json.dumps({k: meta[k] for k in ("n_params", "quantized", "training")}, indent=1))


if __name__ == "__main__":
    main()
