"""ONNX Runtime and PyTorch run the same shipped weights to the same outputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from unmask.engine.export import export_onnx, load_npz  # noqa: E402
from unmask.engine.runtime import ModelInfo, OnnxBackend, TorchBackend, model_dir  # noqa: E402
from unmask.engine.tokenizer import Tokenizer  # noqa: E402

INFO = ModelInfo.load(model_dir("denoiser"))
TOK = Tokenizer.from_file(INFO.file("tokenizer.json"))
PREFIX = "def mean(values):\n    total = 0\n    for v in values:\n        total += v\n"
SUFFIX = "\n\n\ndef median(values):\n    s = sorted(values)\n    return s[len(s) // 2]\n"


def inputs():
    sp = TOK.specials
    pre, suf = TOK.encode(PREFIX), TOK.encode(SUFFIX)
    S = 16
    ids = np.array([sp.file] + pre + suf)
    pos = np.array([0] + list(range(1, 1 + len(pre))) + list(range(1 + len(pre) + S, 1 + len(pre) + S + len(suf))))
    slots = np.full((2, S), sp.mask)
    ret = TOK.encode("    return")
    slots[1, : len(ret)] = ret
    spos = np.arange(1 + len(pre), 1 + len(pre) + S)
    return ids, pos, slots, spos


@pytest.fixture(scope="module")
def fp32_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fp32")
    model, _ = load_npz(INFO.file("weights.npz"))
    export_onnx(model, d, quantize=False)
    return d


def test_onnx_fp32_matches_torch(fp32_dir):
    ids, pos, slots, spos = inputs()
    tb = TorchBackend(INFO)
    ob = OnnxBackend(ModelInfo(fp32_dir, INFO.meta))
    lt = tb.step(slots, spos, tb.encode(ids, pos))
    lo = ob.step(slots, spos, ob.encode(ids, pos))
    assert lt.shape == lo.shape == (2, 16, INFO.meta["vocab_size"])
    np.testing.assert_allclose(lo, lt, atol=2e-3, rtol=1e-3)


def test_shipped_int8_agrees_with_torch_on_top_tokens():
    ids, pos, slots, spos = inputs()
    tb = TorchBackend(INFO)
    ob = OnnxBackend(INFO)
    lt = tb.step(slots, spos, tb.encode(ids, pos))
    lo = ob.step(slots, spos, ob.encode(ids, pos))
    agree = (lt.argmax(-1) == lo.argmax(-1)).mean()
    assert agree >= 0.9, f"int8 graph picks a different top token on {1 - agree:.0%} of slots"


def test_cached_step_equals_full_forward():
    """encode-once + step-only must equal the training-time full forward (asymmetric mask)."""
    ids, pos, slots, spos = inputs()
    model, _ = load_npz(INFO.file("weights.npz"))
    C, S = len(ids), slots.shape[1]
    full_ids = torch.tensor(np.concatenate([ids, slots[1]]))[None]
    full_pos = torch.tensor(np.concatenate([pos, spos]))[None]
    is_ctx = (torch.arange(C + S) < C)[None]
    with torch.no_grad():
        h = model(full_ids, full_pos, is_ctx, torch.ones_like(is_ctx))
        full = model.logits(h)[0, C:]
        kv = model.encode(torch.tensor(ids)[None], torch.tensor(pos)[None])
        cached = model.step(torch.tensor(slots[1:2]), torch.tensor(spos)[None], kv)[0]
    torch.testing.assert_close(cached, full, atol=1e-4, rtol=1e-4)
