"""The autoregressive (AR) baseline: export a causal run to ONNX with a KV cache, and infill with it.

A benchmark baseline, not a product path (issue 7): the same backbone as the denoiser
(:class:`unmask.engine.model.Denoiser` with ``causal=True``), trained by the same
``unmask train --causal`` on fill-in-the-middle examples (PSM:
``<fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle <eos>``, see
:func:`unmask.engine.data.make_fim_example`). Decoding is greedy, one token per model call.

Export (needs torch and onnx, the ``train`` extra)::

    python -m unmask.engine.ar --run runs/ar --out runs/ar-onnx

writes two graphs, weights int8 (dynamic quantization, as :mod:`unmask.engine.export`) unless
``--fp32``:

* ``prefill.onnx``: ``ids, pos (1, T)`` -> ``logits (1, V)`` of the last position and
  ``present_k{i}, present_v{i} (1, H, T, D)`` for every layer;
* ``decode.onnx``: one token ``ids, pos (1, 1)`` + ``past_k{i}, past_v{i} (1, H, P, D)`` ->
  ``logits (1, V)`` and ``present_k{i}, present_v{i} (1, H, P + 1, D)``;

plus ``weights.npz`` (float16), ``tokenizer.json`` and ``model.json`` (config, special and
FIM ids, window, counters). :class:`ArEngine` runs the graphs with ONNX Runtime (no torch
needed) and reports forward passes and timings per completion; :class:`TorchArEngine` does
the same with the weights in PyTorch (for GPUs).

It knows tokens, the FIM layout and the model window; it knows nothing about LSP, editors
or the diffusion sampler.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import FIM_TOKENS, fim_ids
from .runtime import ModelError, ModelInfo, ort_options
from .tokenizer import Tokenizer, file_sha256

MAX_NEW = 64  # the middle is capped at 64 tokens in training (make_fim_example)


# -- export (torch) ---------------------------------------------------------------------------
def _wrappers(model):
    """The two inference modules around a causal Denoiser (torch imported lazily)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Prefill(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, pos):
            x = self.m.embed(ids)
            presents = []
            last = len(self.m.blocks) - 1
            for i, b in enumerate(self.m.blocks):
                q, k, v = b._qkv(x, pos)
                presents += [k, v]
                if i == last:  # only the last position's logits are needed: one query, one FFN row
                    x = b._rest(x[:, -1:], F.scaled_dot_product_attention(q[:, :, -1:], k, v))
                else:
                    x = b._rest(x, F.scaled_dot_product_attention(q, k, v, is_causal=True))
            return (self.m.logits(x[:, -1]), *presents)

    class Decode(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, pos, *past):
            x = self.m.embed(ids)
            presents = []
            for i, b in enumerate(self.m.blocks):
                q, k, v = b._qkv(x, pos)
                k = torch.cat([past[2 * i], k], dim=2)
                v = torch.cat([past[2 * i + 1], v], dim=2)
                x = b._rest(x, F.scaled_dot_product_attention(q, k, v))  # one query: sees every key
                presents += [k, v]
            return (self.m.logits(x[:, -1]), *presents)

    return Prefill(model), Decode(model)


def kv_names(n_layers: int, kind: str) -> list[str]:
    return [f"{kind}_{kv}{i}" for i in range(n_layers) for kv in ("k", "v")]


def export_onnx(model, out_dir: Path, quantize: bool = True) -> None:
    """Write prefill.onnx and decode.onnx for a causal Denoiser into ``out_dir``."""
    import torch

    model = model.eval().float()
    c = model.c
    if not c.causal:
        raise ValueError("the AR export needs a causal model (trained with --causal)")
    prefill, decode = _wrappers(model)
    L = c.n_layers
    ids = torch.randint(10, c.vocab_size, (1, 12))
    pos = torch.arange(12)[None]
    with torch.no_grad():
        past = prefill(ids, pos)[1:]
    tmp = out_dir / "tmp_export"
    tmp.mkdir(parents=True, exist_ok=True)
    present = kv_names(L, "present")
    torch.onnx.export(
        prefill,
        (ids, pos),
        tmp / "prefill.onnx",
        input_names=["ids", "pos"],
        output_names=["logits", *present],
        dynamic_axes={"ids": {1: "T"}, "pos": {1: "T"}, **{n: {2: "T"} for n in present}},
        opset_version=17,
        dynamo=False,
    )
    pasts = kv_names(L, "past")
    torch.onnx.export(
        decode,
        (ids[:, :1], pos[:, :1] + 12, *past),
        tmp / "decode.onnx",
        input_names=["ids", "pos", *pasts],
        output_names=["logits", *present],
        dynamic_axes={**{n: {2: "P"} for n in pasts}, **{n: {2: "P1"} for n in present}},
        opset_version=17,
        dynamo=False,
    )
    from .export import write_graphs

    write_graphs(tmp, out_dir, ("prefill.onnx", "decode.onnx"), quantize)


def load_run(run: Path):
    """A causal Denoiser from a run directory or its ``weights.pt`` (EMA weights), and the state dict."""
    import torch

    from .model import Denoiser, ModelConfig

    f = run / "weights.pt" if run.is_dir() else run
    state = torch.load(f, map_location="cpu", weights_only=False)
    model = Denoiser(ModelConfig(**state["config"]))
    model.load_state_dict(state["model"])
    return model.eval(), state


def export(run: Path, out: Path, quantize: bool = True, window: int = 384) -> dict:
    """Export a causal run (directory or weights.pt) into the model directory ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    run_dir = run if run.is_dir() else run.parent
    model, state = load_run(run)
    export_onnx(model, out, quantize)
    from .export import save_npz

    save_npz(model, out / "weights.npz")  # float16, for TorchArEngine (GPU benchmarks)
    shutil.copy(run_dir / "tokenizer.json", out / "tokenizer.json")
    tok = Tokenizer.from_file(out / "tokenizer.json")
    meta = {
        "name": out.name,
        "format": 1,
        "kind": "ar-fim",
        "config": model.c.to_dict(),
        "n_params": model.n_params(),
        "specials": tok.specials.as_dict(),
        "fim": dict(zip(("prefix", "suffix", "middle"), fim_ids(tok))),
        "fim_tokens": list(FIM_TOKENS),
        "vocab_size": tok.vocab_size,
        "tokenizer_sha256": file_sha256(out / "tokenizer.json"),
        "window": window,
        "max_new": MAX_NEW,
        "quantized": "int8-dynamic" if quantize else "none",
        "training": state.get("counters", {}),
        "source": str(run),
    }
    (out / "model.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


# -- runtime (onnxruntime only) ---------------------------------------------------------------
@dataclass
class ArResult:
    text: str
    ids: list[int]  # generated tokens, eos excluded
    forward_passes: int  # prefill + decode calls
    ms: float  # whole completion: tokenize, prefill, decode loop, detokenize
    tokenize_ms: float
    prefill_ms: float
    decode_ms: float  # sum over decode calls
    context_tokens: int
    stop: str  # "eos", "newline" or "max_new"


class ArEngine:
    """Greedy FIM infilling with the exported AR graphs; one request at a time."""

    def __init__(self, path: str | Path, threads: int = 0, device: str = "cpu"):
        import onnxruntime as ort

        self._load_meta(path)
        so, providers = ort_options(device, threads)

        def session(name: str):
            f = self.info.file(name)
            try:
                return ort.InferenceSession(str(f), so, providers=providers)
            except Exception as e:  # onnxruntime raises its own exception types
                raise ModelError(f"cannot load {f}: {e}. Re-export the AR model.") from e

        self._prefill = session("prefill.onnx")
        self._decode = session("decode.onnx")
        self._past = kv_names(self.n_layers, "past")
        self._present = kv_names(self.n_layers, "present")

    def _load_meta(self, path: str | Path) -> None:
        """model.json, the tokenizer and the FIM ids of an AR model directory."""
        self.info = ModelInfo.load(path)
        self.meta = self.info.meta
        if self.meta.get("kind") != "ar-fim":
            raise ModelError(f"{self.info.path} is not an AR model directory (export it with unmask.engine.ar)")
        self.tok = Tokenizer.from_file(self.info.file("tokenizer.json"))
        if self.tok.specials.as_dict() != self.meta["specials"]:
            raise ModelError(f"tokenizer special ids differ from {self.info.path / 'model.json'}")
        self.fim = fim_ids(self.tok)
        self.window = int(self.meta.get("window", 384))
        self.n_layers = int(self.meta["config"]["n_layers"])
        sp = self.tok.specials
        self._banned = [sp.pad, sp.mask, sp.file, sp.sep, sp.edit, *self.fim]

    # -- model calls (also used by the tests) ------------------------------------------------
    def prefill(self, ids: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        """ids, pos (T,) -> logits (V,) of the last position, per-layer K/V (OrtValues)."""
        from onnxruntime import OrtValue

        feeds = {
            "ids": OrtValue.ortvalue_from_numpy(np.asarray(ids, np.int64)[None]),
            "pos": OrtValue.ortvalue_from_numpy(np.asarray(pos, np.int64)[None]),
        }
        out = self._prefill.run_with_ort_values(["logits", *self._present], feeds)
        return out[0].numpy()[0], list(out[1:])

    def decode(self, token: int, pos: int, past: list[Any]) -> tuple[np.ndarray, list[Any]]:
        """One token at position ``pos`` + per-layer K/V -> logits (V,), K/V one longer."""
        from onnxruntime import OrtValue

        feeds = {
            "ids": OrtValue.ortvalue_from_numpy(np.array([[token]], np.int64)),
            "pos": OrtValue.ortvalue_from_numpy(np.array([[pos]], np.int64)),
            **dict(zip(self._past, past)),
        }
        out = self._decode.run_with_ort_values(["logits", *self._present], feeds)
        return out[0].numpy()[0], list(out[1:])

    # -- infilling ---------------------------------------------------------------------------
    def layout(self, prefix: str, suffix: str, max_new: int) -> list[int]:
        """The PSM prompt, prefix cut on the left and suffix on the right to fit the window
        (the same split rule as training: the suffix keeps at least a third of the room)."""
        room = self.window - 3 - (max_new + 1)
        cap = room * 8  # only tokenize what can fit
        pre_text = prefix[-cap:] if len(prefix) > cap else prefix
        pre, suf = self.tok.encode_batch([pre_text, suffix[:cap]])
        if len(prefix) > cap and pre:
            pre = pre[1:]  # the first token may be cut mid-way
        keep_suf = min(len(suf), room // 3 if len(pre) > room - room // 3 else room - len(pre))
        suf = suf[:keep_suf]
        pre = pre[max(0, len(pre) - (room - len(suf))) :]
        p, s, m = self.fim
        return [p, *pre, s, *suf, m]

    def infill(self, prefix: str, suffix: str, max_new: int = MAX_NEW, one_line: bool = False) -> ArResult:
        """Greedy middle until ``eos`` (or ``max_new`` tokens; with ``one_line``, the first newline)."""
        t0 = time.perf_counter()
        seq = self.layout(prefix, suffix, max_new)
        t_tok = time.perf_counter()
        logits, past = self.prefill(np.array(seq), np.arange(len(seq)))
        t_pre = time.perf_counter()
        eos = self.tok.specials.eos
        gen: list[int] = []
        passes, decode_s, stop = 1, 0.0, "max_new"
        while True:
            logits[self._banned] = -np.inf
            t = int(logits.argmax())
            if t == eos:
                stop = "eos"
                break
            gen.append(t)
            if one_line and "\n" in self.tok.decode(gen[-1:]):
                stop = "newline"
                break
            if len(gen) >= max_new:
                break
            td = time.perf_counter()
            logits, past = self.decode(t, len(seq) + len(gen) - 1, past)
            decode_s += time.perf_counter() - td
            passes += 1
        text = self.tok.decode(gen)
        if one_line and "\n" in text:
            text = text[: text.index("\n") + 1]
        ms = (time.perf_counter() - t0) * 1000
        return ArResult(
            text,
            gen,
            passes,
            ms,
            (t_tok - t0) * 1000,
            (t_pre - t_tok) * 1000,
            decode_s * 1000,
            len(seq),
            stop,
        )

    def warmup(self) -> None:
        self.infill("def f(x):\n    return", "\n", max_new=4)


class TorchArEngine(ArEngine):
    """The same greedy infilling with the AR weights (``weights.npz``) in PyTorch, e.g. on a GPU.

    For the GPU side of the benchmark (``bench/ar_vs_diffusion.py --backend torch --device
    cuda``): the modules of :func:`_wrappers` in float32, as the diffusion model's torch
    backend runs (no int8 on either side). Each call ends with the logits copied to the host,
    which waits for the GPU, so the timings are real.
    """

    def __init__(self, path: str | Path, threads: int = 0, device: str = "auto"):
        try:
            import torch
        except ImportError as e:
            raise ModelError("the torch AR engine needs PyTorch: pip install 'unmask[train]'") from e
        from .export import load_npz

        self._load_meta(path)
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
        f = self.info.file("weights.npz")
        try:
            model, _ = load_npz(f)
        except Exception as e:
            raise ModelError(f"cannot load {f}: {e}. Re-export the AR model.") from e
        self._prefill_m, self._decode_m = _wrappers(model.to(self.device).eval())

    def _tensor(self, a) -> Any:
        return self.torch.as_tensor(np.asarray(a, np.int64)).to(self.device)

    def prefill(self, ids: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        with self.torch.inference_mode():
            out = self._prefill_m(self._tensor(ids)[None], self._tensor(pos)[None])
        return out[0][0].float().cpu().numpy(), list(out[1:])

    def decode(self, token: int, pos: int, past: list[Any]) -> tuple[np.ndarray, list[Any]]:
        with self.torch.inference_mode():
            out = self._decode_m(self._tensor([[token]]), self._tensor([[pos]]), *past)
        return out[0][0].float().cpu().numpy(), list(out[1:])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="export a causal (AR baseline) run to ONNX with a KV cache")
    ap.add_argument("--run", type=Path, default=Path("runs/ar"), help="run directory or its weights.pt")
    ap.add_argument("--out", type=Path, default=Path("runs/ar-onnx"))
    ap.add_argument("--fp32", action="store_true", help="do not quantize the ONNX graphs")
    ap.add_argument("--window", type=int, default=384)
    args = ap.parse_args(argv)
    meta = export(args.run, args.out, quantize=not args.fp32, window=args.window)
    for f in sorted(args.out.iterdir()):
        print(f"{f}  {f.stat().st_size / 2**20:.2f} MB")
    print(json.dumps({k: meta[k] for k in ("n_params", "quantized", "training")}, indent=1))


if __name__ == "__main__":
    main()
