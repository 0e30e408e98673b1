"""The AR baseline's ONNX graphs (engine/ar.py) compute what the torch model computes.

A tiny random causal model (2 layers, d 32) is exported in a few seconds: the prefill
logits match torch, KV-cached decoding gives the same logits as an uncached forward over
the whole sequence (torch and ONNX prefill alike), and greedy infilling picks the tokens a
plain uncached torch loop picks.
"""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from unmask.engine.ar import ArEngine, export  # noqa: E402
from unmask.engine.model import Denoiser, ModelConfig  # noqa: E402
from unmask.engine.runtime import ModelError, ModelInfo, model_dir  # noqa: E402

TOKENIZER = ModelInfo.load(model_dir("denoiser")).file("tokenizer.json")


def _run_dir(path, causal: bool = True):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=8192, d_model=32, n_layers=2, n_heads=2, ffn_hidden=64, causal=causal)
    m = Denoiser(cfg)
    with torch.no_grad():  # peaked logits, so greedy choices are not near-ties
        m.embed.weight.normal_(0, 1.0)
    path.mkdir()
    torch.save({"config": cfg.to_dict(), "model": m.state_dict(), "counters": {"step": 1}}, path / "weights.pt")
    (path / "tokenizer.json").write_bytes(TOKENIZER.read_bytes())
    return m.eval()


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    d = tmp_path_factory.mktemp("ar")
    model = _run_dir(d / "run")
    export(d / "run", d / "fp32", quantize=False)
    return model, ArEngine(d / "fp32", threads=1)


def torch_logits(model, seq) -> np.ndarray:
    """Uncached: the full causal forward over ``seq``; logits (T, V)."""
    ids = torch.tensor([seq])
    T = len(seq)
    with torch.no_grad():
        h = model(ids, torch.arange(T)[None], torch.zeros(1, T, dtype=torch.bool), torch.ones(1, T, dtype=torch.bool))
        return model.logits(h)[0].numpy()


def test_prefill_matches_torch(fp32):
    model, eng = fp32
    seq = eng.layout("def add(a, b):\n    ", "\n\nprint(add(1, 2))\n", 16)
    logits, past = eng.prefill(np.array(seq), np.arange(len(seq)))
    np.testing.assert_allclose(logits, torch_logits(model, seq)[-1], atol=2e-3, rtol=1e-3)
    assert len(past) == 4 and past[0].numpy().shape == (1, 2, len(seq), 16)


def test_kv_cached_decoding_equals_uncached_forward(fp32):
    model, eng = fp32
    seq = eng.layout("x = [1, 2, 3]\nfor v in x:\n", "\nprint('done')\n", 16)
    forced = [eng.tok.encode("    print")[0], 17, 423, 5000, 8]
    _, past = eng.prefill(np.array(seq), np.arange(len(seq)))
    for tok in forced:
        logits, past = eng.decode(tok, len(seq), past)
        seq = [*seq, tok]
        np.testing.assert_allclose(logits, torch_logits(model, seq)[-1], atol=2e-3, rtol=1e-3)
        uncached, _ = eng.prefill(np.array(seq), np.arange(len(seq)))
        np.testing.assert_allclose(logits, uncached, atol=1e-4, rtol=1e-4)
    assert past[0].numpy().shape[2] == len(seq)


def test_greedy_infill_matches_uncached_torch_loop(fp32):
    model, eng = fp32
    r = eng.infill("def f(x):\n    return ", "\n", max_new=12)
    seq = eng.layout("def f(x):\n    return ", "\n", 12)
    want = []
    for _ in range(12):
        lg = torch_logits(model, seq)[-1]
        lg[eng._banned] = -np.inf
        t = int(lg.argmax())
        if t == eng.tok.specials.eos:
            break
        want.append(t)
        seq.append(t)
    assert r.ids == want
    assert r.text == eng.tok.decode(want)
    assert r.forward_passes == len(want) + (1 if r.stop == "eos" else 0)
    assert r.ms >= r.prefill_ms + r.decode_ms > 0


def test_layout_fits_window_and_keeps_fim_markers(fp32):
    _, eng = fp32
    seq = eng.layout("a = 1\n" * 400, "b = 2\n" * 400, 64)
    assert len(seq) <= eng.window - 65
    p, s, m = eng.fim
    assert seq[0] == p and seq[-1] == m and seq.count(s) == 1
    assert seq.index(s) - 1 >= 2 * (len(seq) - seq.index(s) - 2)  # the prefix keeps at least two thirds


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ar8")
    _run_dir(d / "run")
    export(d / "run", d / "int8")
    return d / "int8"


def test_int8_export_runs_and_one_line_stops_at_newline(int8_dir):
    eng = ArEngine(int8_dir, threads=1)
    assert eng.meta["quantized"] == "int8-dynamic"
    r = eng.infill("def f(x):\n", "\n", max_new=20, one_line=True)
    assert len(r.ids) <= 20 and r.forward_passes >= 1
    assert "\n" not in r.text[:-1]


def test_export_refuses_a_diffusion_run(tmp_path):
    _run_dir(tmp_path / "run", causal=False)
    with pytest.raises(ValueError, match="causal"):
        export(tmp_path / "run", tmp_path / "out")
    with pytest.raises(ModelError):
        ArEngine(ModelInfo.load(model_dir("denoiser")).path)


def test_unmask_bench_runs_both_models_side_by_side(int8_dir, tmp_path):
    """`unmask bench` end to end on two made-up tasks (not HumanEval): records, tests run, summary, plots."""
    from unmask.lsp.cli import main

    tasks = [
        {"task_id": "T/0", "entry_point": "inc", "prompt": "def inc(x):\n", "canonical_solution": "    return x + 1\n",
         "suffix": "", "test": "def check(f):\n    assert f(1) == 2\n"},
        {"task_id": "T/1", "entry_point": "neg", "prompt": "def neg(x):\n", "canonical_solution": "    return -x\n",
         "suffix": "\n", "test": "def check(f):\n    assert f(2) == -2\n"},
    ]  # fmt: skip
    with gzip.open(tmp_path / "HumanEval-SingleLineInfilling.jsonl.gz", "wt") as fh:
        fh.writelines(json.dumps(t) + "\n" for t in tasks)
    out = tmp_path / "bench.json"
    plots = tmp_path / "plots"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        plots = ""
    # a second diffusion model (here: the shipped one under another training-token count)
    shipped = ModelInfo.load(model_dir("denoiser")).path
    extra = tmp_path / "extra"
    shutil.copytree(shipped, extra)
    meta = json.loads((extra / "model.json").read_text())
    meta["training"]["tokens"] = 99_000_000
    (extra / "model.json").write_text(json.dumps(meta))
    configs = "diffusion 1 steps,diffusion thr 0.9,diffusion@99.0M 2 steps,AR greedy"
    args = ["--data", str(tmp_path), "--threads", "1", "--configs", configs, "--json", str(out), "--plots", str(plots)]
    main(["bench", "--ar-model", str(int8_dir), "--extra-model", str(extra), *args])
    res = json.loads(out.read_text())
    assert [r["config"] for r in res["rows"]] == configs.split(",")
    assert len(res["records"]) == 8 and all(isinstance(r["passed"], bool) for r in res["records"])
    one = next(r for r in res["rows"] if r["config"] == "diffusion 1 steps")
    assert one["passes_mean"] == 2.0  # one encode + one denoising step
    two = next(r for r in res["rows"] if r["config"] == "diffusion@99.0M 2 steps")
    assert two["kind"] == "diffusion-extra" and two["passes_mean"] <= 3.0
    assert set(res["compare"]) == {"diffusion 1 steps", "diffusion thr 0.9", "diffusion@99.0M 2 steps"}
    if plots:
        assert {p.name for p in plots.iterdir()} >= {"quality_vs_latency.png", "latency_distribution.png"}
    # the GPU form of the comparison (both models' weights in PyTorch), here on the CPU
    args = ["--data", str(tmp_path), "--threads", "1", "--configs", "diffusion 2 steps,AR greedy", "--json", str(out)]
    main(["bench", "--ar-model", str(int8_dir), "--backend", "torch", "--device", "cpu", *args, "--plots", ""])
    res = json.loads(out.read_text())
    assert (res["backend"], res["device"], len(res["records"])) == ("torch", "cpu", 4)
    assert next(r for r in res["rows"] if r["config"] == "diffusion 2 steps")["passes_mean"] <= 3.0


def test_torch_ar_engine_infills_like_the_onnx_graphs(fp32, tmp_path):
    """TorchArEngine (the GPU benchmark's AR side) on the exported float16 weights: the same greedy tokens."""
    from unmask.engine.ar import TorchArEngine

    _, onnx_eng = fp32
    eng = TorchArEngine(onnx_eng.info.path, threads=1, device="cpu")
    for prefix, suffix in [("def add(a, b):\n    ", "\n"), ("import os\n\nx = ", "\nprint(x)\n")]:
        a, b = onnx_eng.infill(prefix, suffix, max_new=12), eng.infill(prefix, suffix, max_new=12)
        assert a.ids == b.ids and a.forward_passes == b.forward_passes
    with pytest.raises(ModelError, match="weights.npz"):
        (tmp_path / "no_weights").mkdir()
        for f in ("model.json", "tokenizer.json"):
            (tmp_path / "no_weights" / f).write_bytes((onnx_eng.info.path / f).read_bytes())
        TorchArEngine(tmp_path / "no_weights", device="cpu")
