"""Model backends behind one small interface, chosen by a tagged config through a registry.

A backend does two things, on token ids only:

* ``encode(ctx_ids, ctx_pos) -> kv``: run the context once, return the per-layer cache;
* ``step(span_ids, span_pos, kv) -> logits``: one denoising call over the span slots.

``onnx`` (default) runs the exported graphs with ONNX Runtime (CUDA provider when
``onnxruntime-gpu`` is installed and ``device`` allows it); ``torch`` runs the same weights
(``weights.npz``) in PyTorch. Both read a model directory (see :mod:`unmask.engine.export`).

A missing or corrupt model file raises :class:`ModelError` naming the file and the fix.
It knows nothing about text, spans or LSP.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class ModelError(RuntimeError):
    """The model directory is missing, incomplete or unreadable."""


def default_model_dir() -> Path:
    return model_dir("default")


def model_dir(name: str) -> Path:
    """A model shipped in the package: ``default`` (the product's), ``denoiser`` (the from-scratch one)."""
    return Path(str(resources.files("unmask.engine") / "models" / name))


@dataclass
class ModelInfo:
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None) -> ModelInfo:
        p = Path(path) if path else default_model_dir()
        meta_file = p / "model.json"
        if not meta_file.is_file():
            raise ModelError(
                f"model metadata not found: {meta_file}. Point modelPath/--model at a directory made by "
                "`python -m unmask.engine.export`, or reinstall unmask to restore the default model."
            )
        try:
            meta = json.loads(meta_file.read_text())
            meta["specials"], meta["config"]  # noqa: B018 - required keys
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ModelError(f"model metadata is corrupt: {meta_file} ({e}). Re-export the model.") from e
        return cls(p, meta)

    def file(self, name: str) -> Path:
        f = self.path / name
        if not f.is_file():
            raise ModelError(f"model file missing: {f}. Re-export the model or reinstall unmask.")
        return f


class Backend(Protocol):
    name: str

    def encode(self, ctx_ids: np.ndarray, ctx_pos: np.ndarray) -> Any: ...

    def step(self, span_ids: np.ndarray, span_pos: np.ndarray, kv: Any) -> np.ndarray: ...


def ort_options(device: str = "auto", threads: int = 0):
    """ONNX Runtime session options and providers for every graph unmask runs (CUDA first when allowed)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return so, providers


class OnnxBackend:
    name = "onnx"

    def __init__(self, info: ModelInfo, device: str = "auto", threads: int = 0):
        import onnxruntime as ort

        so, providers = ort_options(device, threads)
        self.providers = providers

        def session(name: str):
            f = info.file(name)
            try:
                return ort.InferenceSession(str(f), so, providers=providers)
            except Exception as e:  # onnxruntime raises its own exception types
                raise ModelError(f"cannot load {f}: {e}. The file is corrupt; re-export or reinstall.") from e

        self._enc = session("encode.onnx")
        self._step = session("step.onnx")

    def encode(self, ctx_ids: np.ndarray, ctx_pos: np.ndarray) -> np.ndarray:
        return self._enc.run(
            None, {"ctx_ids": ctx_ids[None].astype(np.int64), "ctx_pos": ctx_pos[None].astype(np.int64)}
        )[0]

    def step(self, span_ids: np.ndarray, span_pos: np.ndarray, kv: np.ndarray) -> np.ndarray:
        ids = np.atleast_2d(span_ids).astype(np.int64)
        pos = np.broadcast_to(np.atleast_2d(span_pos), ids.shape).astype(np.int64)
        return self._step.run(None, {"span_ids": ids, "span_pos": pos, "kv": kv})[0]


class TorchBackend:
    name = "torch"

    def __init__(self, info: ModelInfo, device: str = "auto", threads: int = 0):
        try:
            import torch
        except ImportError as e:
            raise ModelError("the torch backend needs PyTorch: pip install 'unmask[train]'") from e
        from .export import load_npz

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
        f = info.file("weights.npz")
        try:
            self.model, _ = load_npz(f)
        except Exception as e:
            raise ModelError(f"cannot load {f}: {e}. Re-export or reinstall.") from e
        self.model.to(self.device)

    def encode(self, ctx_ids: np.ndarray, ctx_pos: np.ndarray):
        t = self.torch
        return self.model.encode(
            t.from_numpy(ctx_ids[None].astype(np.int64)).to(self.device),
            t.from_numpy(ctx_pos[None].astype(np.int64)).to(self.device),
        )

    def step(self, span_ids: np.ndarray, span_pos: np.ndarray, kv) -> np.ndarray:
        t = self.torch
        ids = np.atleast_2d(span_ids).astype(np.int64)
        pos = np.ascontiguousarray(np.broadcast_to(np.atleast_2d(span_pos), ids.shape)).astype(np.int64)
        out = self.model.step(t.from_numpy(ids).to(self.device), t.from_numpy(pos).to(self.device), kv)
        return out.float().cpu().numpy()


BACKENDS: dict[str, Callable[..., Backend]] = {"onnx": OnnxBackend, "torch": TorchBackend}


def backend_config(kind: str = "onnx", path: str | None = None, threads: int = 0, **extra) -> dict:
    """The tagged config :func:`load_backend` takes, from command-line style options (unset ones left out)."""
    cfg: dict = {"type": kind, **extra}
    if path:
        cfg["path"] = path
    if threads:
        cfg["threads"] = threads
    return cfg


def load_backend(config: dict | None = None) -> tuple[Backend, ModelInfo]:
    """Build a backend from a tagged config: ``{"type": "onnx"|"torch", "path": ..., "device": ..., "threads": N}``."""
    config = dict(config or {})
    kind = config.pop("type", os.environ.get("UNMASK_BACKEND", "onnx"))
    if kind not in BACKENDS:
        raise ModelError(f"unknown backend {kind!r}; choose one of {sorted(BACKENDS)}")
    info = ModelInfo.load(config.pop("path", None))
    return BACKENDS[kind](info, **config), info
