"""Block-diffusion adaptation (engine/adapt.py, engine/llama.py) on a tiny random Llama.

The layout's mask and token shift, equality with what the runtime will compute from a KV
cache, that training lowers the loss, exact resume, an export the runtime merges, and a new
run initialised from an export (``--init-from``).
The last test checks the torch model against the runtime graph on the real 135M base (slow).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from unmask.engine import adapt
from unmask.engine.adapt import CLEAN, CTX, NOISY, Hole, Layout, add_example, finish_row
from unmask.engine.base import LlamaConfig
from unmask.engine.causal import NEG, OnnxDecoder, _apply_delta, causal_bias
from unmask.engine.llama import Llama, LoRALinear, add_lora
from unmask.engine.runtime import ModelInfo
from unmask.engine.tokenizer import train as train_tokenizer

TINY = LlamaConfig(n_layer=2, d_model=32, n_head=4, n_kv_head=2, d_ff=64, vocab=300, rope_theta=1e4, max_pos=512)
MASK = 1


def tiny_weights(cfg: LlamaConfig = TINY, seed: int = 0) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)
    hd = cfg.head_dim

    def m(o, i):
        return (r.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)

    w = {
        "embed_tokens": r.standard_normal((cfg.vocab, cfg.d_model)).astype(np.float32),
        "norm": np.ones(cfg.d_model, np.float32),
    }
    for i in range(cfg.n_layer):
        p = f"layers.{i}."
        w[p + "input_layernorm"] = (1 + 0.1 * r.standard_normal(cfg.d_model)).astype(np.float32)
        w[p + "post_attention_layernorm"] = (1 + 0.1 * r.standard_normal(cfg.d_model)).astype(np.float32)
        w[p + "self_attn.q_proj"] = m(cfg.n_head * hd, cfg.d_model)
        w[p + "self_attn.k_proj"] = m(cfg.n_kv_head * hd, cfg.d_model)
        w[p + "self_attn.v_proj"] = m(cfg.n_kv_head * hd, cfg.d_model)
        w[p + "self_attn.o_proj"] = m(cfg.d_model, cfg.n_head * hd)
        w[p + "mlp.gate_proj"] = m(cfg.d_ff, cfg.d_model)
        w[p + "mlp.up_proj"] = m(cfg.d_ff, cfg.d_model)
        w[p + "mlp.down_proj"] = m(cfg.d_model, cfg.d_ff)
    return w


def layout(ctx, mid, B, complementary=False, ts=(1.0,), seed=0) -> tuple[Layout, dict]:
    lay = Layout()
    add_example(lay, Hole(list(ctx), list(mid)), [B], random.Random(seed), MASK, 0.05, complementary, ts=list(ts))
    return lay, finish_row(lay, len(lay), 0)


def test_mask_and_token_shift_on_a_tiny_example():
    # context c0 c1 c2 (0-2); middle m0..m4 in blocks of 2: clean blocks 0, 1 (3-6); noisy blocks 0, 1 (7-10);
    # block 2 has one slot: predicted at clean position 6, no noisy copy
    lay, row = layout([10, 11, 12], [20, 21, 22, 23, 24], 2)
    assert lay.kind == [CTX] * 3 + [CLEAN] * 4 + [NOISY] * 4
    assert lay.ids == [10, 11, 12, 20, 21, 22, 23, MASK, MASK, MASK, MASK]  # t = 1: every slot masked
    assert lay.pos == [0, 1, 2, 3, 4, 5, 6, 3, 4, 5, 6]  # clean and noisy copies share positions
    m = row["mask"]

    def sees(q):
        return set(np.flatnonzero(m[q]).tolist())

    assert sees(0) == {0} and sees(2) == {0, 1, 2}  # context: causal
    assert sees(3) == {0, 1, 2, 3, 4}  # clean block 0: context + its block, both ways
    assert sees(5) == {0, 1, 2, 3, 4, 5, 6}  # clean block 1: + earlier clean block
    assert sees(7) == {0, 1, 2, 7, 8}  # noisy block 0: context + its noisy block
    assert sees(10) == {0, 1, 2, 3, 4, 9, 10}  # noisy block 1: + clean block 0, not its own clean copy
    # who predicts what: slot 0 from the clean position before the block, slot i from noisy i - 1
    sup = dict(zip(lay.sup, zip(lay.tgt, lay.w)))
    assert sup == {2: (20, 1.0), 7: (21, 1.0), 4: (22, 1.0), 9: (23, 1.0), 6: (24, 1.0)}


def test_block_size_one_is_plain_autoregression():
    lay, row = layout([10, 11], [20, 21, 22], 1)
    assert lay.kind == [CTX, CTX, CLEAN, CLEAN]
    assert np.array_equal(row["mask"], np.tril(np.ones((4, 4), bool)))
    assert list(zip(lay.sup, lay.tgt)) == [(1, 20), (2, 21), (3, 22)]


def test_complementary_copies_supervise_every_slot_once():
    lay, row = layout(range(3), range(20, 28), 8, complementary=True, ts=(0.4,), seed=3)
    a, b = np.array(lay.ids[3:11]), np.array(lay.ids[11:19])
    assert ((a == MASK) ^ (b == MASK)).all()  # slot 0 carries loss from the context position, whatever its mask
    assert sorted(lay.tgt) == list(range(20, 28))
    w = dict(zip(lay.tgt, lay.w))
    assert w[20] == 1.0 and {round(x, 4) for t, x in w.items() if t != 20} <= {1.25, 0.8333}
    m = row["mask"]
    assert not m[3:11, 11:19].any() and not m[11:19, 3:11].any()  # the copies never see each other


def onnx_decoder(cfg, w, tmp_path: Path) -> OnnxDecoder:
    from unmask.engine.llama_onnx import build

    (tmp_path / "m.onnx").write_bytes(build(cfg, w, "fp32").SerializeToString())
    return OnnxDecoder(tmp_path / "m.onnx", cfg.n_layer, cfg.n_kv_head, cfg.head_dim, threads=1)


def test_layout_logits_are_what_the_runtime_computes_from_its_cache(tmp_path):
    """Context prefill, a noisy block over the cache, the committed block fed back, the next noisy block."""
    w = tiny_weights()
    model = Llama.from_weights(TINY, w).eval()
    ctx, mid = [5, 6, 7, 8, 9], [20, 21, 22, 23, 24, 25, 26, 27]
    lay, row = layout(ctx, mid, 4, ts=(0.5,), seed=1)
    with torch.no_grad():
        lt = model(
            torch.tensor(row["ids"])[None], torch.tensor(row["pos"])[None], torch.tensor(row["mask"])[None, None]
        )[0]
    lt = lt.numpy()
    dec = onnx_decoder(TINY, w, tmp_path)
    C, B = len(ctx), 4
    noisy0, noisy1 = lay.ids[C + 4 : C + 8], lay.ids[C + 8 : C + 12]

    def block_bias(n_past):  # the cache, and the block both ways
        return np.zeros((B, n_past + B), np.float32)

    lg, past = dec.forward(ctx, range(C), causal_bias(0, C), None, 0)
    assert np.abs(lg[-1] - lt[C - 1]).max() < 1e-4  # x_0 of block 0
    lg, _ = dec.forward(noisy0, range(C, C + B), block_bias(C), past, 0)
    assert np.abs(lg[:3] - lt[C + 4 : C + 7]).max() < 1e-4  # x_1..x_3 of block 0
    lg, past = dec.forward(mid[:4], range(C, C + B), block_bias(C), past, 0)  # commit block 0
    assert np.abs(lg[-1] - lt[C + 3]).max() < 1e-4  # x_0 of block 1
    lg, _ = dec.forward(noisy1, range(C + B, C + 2 * B), block_bias(C + B), past, 0)
    assert np.abs(lg[:3] - lt[C + 8 : C + 11]).max() < 1e-4
    assert NEG < -1e8


def batch_of(holes, sizes, seed=0, row_len=256):
    rng = random.Random(seed)
    lay = Layout()
    for h, B in zip(holes, sizes):
        add_example(lay, h, [B], rng, MASK, 0.05, True)
    return adapt.to_torch([finish_row(lay, row_len, 0)], "cpu")


def test_a_few_lora_steps_lower_the_loss():
    torch.manual_seed(0)
    model = Llama.from_weights(TINY, tiny_weights())
    names = add_lora(model, 4, 8)
    assert len(names) == 14 and model.n_params(trainable=True) == sum(
        m.lora_a.numel() + m.lora_b.numel() for m in model.modules() if isinstance(m, LoRALinear)
    )
    r = random.Random(0)
    holes = [
        Hole([r.randrange(20, 300) for _ in range(12)], [r.randrange(20, 300) for _ in range(9)] + [2])
        for _ in range(4)
    ]
    b = batch_of(holes, [1, 4, 8, 16])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    first = None
    for _ in range(30):
        loss, per_b = adapt.loss_fn(model, b, None)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first, (first, loss.item())
    assert per_b[adapt.BLOCK_SIZES.index(2)] == 0 and (per_b[[0, 2, 3, 4]] > 0).all()


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """A small BPE tokenizer and corpus of synthetic Python, and a tiny Llama of its vocabulary."""
    rng = random.Random(0)
    docs = []
    for d in range(40):
        lines = [
            f"def f{d}_{i}(x, y):\n    if x > {i}:\n        return x + y * {i}\n    return y\n\n" for i in range(8)
        ]
        docs.append("import os\n\n" + "".join(rng.sample(lines, len(lines))))
    tok = train_tokenizer(iter(docs), 300, tmp_path_factory.mktemp("tok") / "tokenizer.json")
    from dataclasses import replace

    cfg = replace(TINY, vocab=tok.vocab_size)
    return cfg, tiny_weights(cfg), tok, docs


def run_args(out: Path, *extra: str):
    return adapt.parse_train(
        [
            "--out",
            str(out),
            "--row-len",
            "256",
            "--max-ctx",
            "96",
            "--max-mid",
            "24",
            "--accum",
            "2",
            "--val-holes",
            "4",
        ]
        + ["--val-every", "2", "--lr", "1e-2", "--warmup", "1", "--precision", "fp32", "--minutes", "5", *extra]
    )


def test_training_resumes_exactly_and_exports_what_the_runtime_merges(tiny_setup, tmp_path):
    cfg, w, tok, docs = tiny_setup
    straight, split = tmp_path / "straight", tmp_path / "split"
    adapt.train(run_args(straight, "--max-steps", "4"), (cfg, w), tok, docs)
    adapt.train(run_args(split, "--max-steps", "2"), (cfg, w), tok, docs)
    adapt.train(run_args(split, "--max-steps", "4", "--resume"), (cfg, w), tok, docs)

    def records(run):
        return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]

    a, b = records(straight), records(split)
    assert "val" in a[0] and set(a[0]["val"]) == {"1", "2", "4", "8", "16"}  # the base, before training
    assert [r["loss"] for r in a if "loss" in r] == [r["loss"] for r in b if "loss" in r]
    assert [r["val"] for r in a if "val" in r] == [r["val"] for r in b if "val" in r]
    assert a[-1]["step"] == 4 and a[-2]["supervised"] > 0 and a[-2]["tok_s"] > 0

    meta = adapt.export(straight, tmp_path / "model", base=w)
    info = ModelInfo.load(tmp_path / "model")
    assert info.meta["delta_files"] == ["delta.npz"] and info.meta["training"]["steps"] == 4
    assert info.meta["name"] != adapt.default_meta()["name"] and meta["kind"] == adapt.default_meta()["kind"]
    merged = {k: v.copy() for k, v in w.items()}
    _apply_delta(info, merged)
    ck = torch.load(straight / "ckpt.pt", weights_only=False)["trainable"]
    model = Llama.from_weights(cfg, w)
    add_lora(model, 16, 32)
    model.load_state_dict(ck, strict=False)
    mod = model.layers[1].mlp.down_proj
    eff = (mod.weight + mod.lora_b @ mod.lora_a * mod.scale).detach().numpy()
    assert np.abs(merged["layers.1.mlp.down_proj"] - eff).max() < 1e-3
    assert not np.array_equal(merged["layers.1.mlp.down_proj"], w["layers.1.mlp.down_proj"])


def test_top_k_export_writes_full_deltas_split_under_the_limit(tiny_setup, tmp_path):
    cfg, w, tok, docs = tiny_setup
    run = tmp_path / "run"
    adapt.train(run_args(run, "--max-steps", "1", "--top-k", "1", "--val-every", "0"), (cfg, w), tok, docs)
    arrays = {}
    tr = torch.load(run / "ckpt.pt", weights_only=False)["trainable"]
    assert all(k.startswith(("layers.1.", "norm")) for k in tr)
    files = adapt.write_deltas(
        {k.removesuffix(".weight"): v.numpy() - w[k.removesuffix(".weight")] for k, v in tr.items()},
        tmp_path / "m",
        limit=6000,
    )
    assert len(files) > 1 and all((tmp_path / "m" / f).stat().st_size <= 6000 for f in files)
    for f in files:
        with np.load(tmp_path / "m" / f) as z:
            arrays.update({k: z[k] for k in z.files})
    assert set(arrays) == {k.removesuffix(".weight") for k in tr}
    adapt.export(run, tmp_path / "model", base=w)
    merged = {k: v.copy() for k, v in w.items()}
    _apply_delta(ModelInfo.load(tmp_path / "model"), merged)
    assert np.abs(merged["layers.1.mlp.up_proj"] - tr["layers.1.mlp.up_proj.weight"].numpy()).max() < 1e-2
    model, _ = adapt.build_model(cfg, w, run_args(tmp_path / "x", "--top-k", "1"))
    adapt.init_from_export(model, tmp_path / "model", run_args(tmp_path / "x", "--top-k", "1"))
    got = model.layers[1].mlp.up_proj.weight.detach()
    assert (
        (got - tr["layers.1.mlp.up_proj.weight"]).abs().max()
        < 1e-3
        < (got - torch.from_numpy(w["layers.1.mlp.up_proj"])).abs().max()
    )


def test_init_from_an_export_continues_from_it_and_sums_the_training_record(tiny_setup, tmp_path):
    """--init-from: the exported LoRA factors come back (fp16), the new run's first validation is the
    exported one's last, the next export counts both runs; a different LoRA rank is refused."""
    cfg, w, tok, docs = tiny_setup
    first, second = tmp_path / "first", tmp_path / "second"
    adapt.train(run_args(first, "--max-steps", "4"), (cfg, w), tok, docs)
    m1 = tmp_path / "m1"
    adapt.export(first, m1, base=w)

    model, _ = adapt.build_model(cfg, w, run_args(tmp_path / "x"))
    got = adapt.init_from_export(model, m1, run_args(tmp_path / "x"))
    ck = torch.load(first / "ckpt.pt", weights_only=False)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p, ck["trainable"][n], rtol=2e-3, atol=1e-5), n
    assert got["steps"] == 4 and got["tokens"] == ck["counters"]["tokens"] > 0

    # a fresh run (its rows built in a DataLoader worker) starts where the export stopped
    adapt.train(run_args(second, "--max-steps", "2", "--init-from", str(m1), "--workers", "1"), (cfg, w), tok, docs)

    def records(run):
        return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]

    last_val = [r["val"] for r in records(first) if "val" in r][-1]
    start_val = records(second)[0]["val"]
    base_val = records(first)[0]["val"]
    for B in last_val:
        assert abs(start_val[B] - last_val[B]) <= 1e-3 * last_val[B] + 2e-4, (B, start_val, last_val)
    assert any(abs(base_val[B] - last_val[B]) > 1e-2 for B in last_val)  # training had moved it
    assert records(second)[-1]["step"] == 2

    meta = adapt.export(second, tmp_path / "m2", base=w)
    t2 = torch.load(second / "ckpt.pt", weights_only=False)["counters"]
    tr = meta["training"]
    assert tr["steps"] == 6 and tr["tokens"] == ck["counters"]["tokens"] + t2["tokens"]
    assert tr["supervised_tokens"] == ck["counters"]["supervised"] + t2["supervised"]
    assert tr["init_from"]["path"] == str(m1) and tr["init_from"]["steps"] == 4
    assert [r["steps"] for r in tr["runs"]] == [4, 2] and meta["name"].endswith("-6")
    info = ModelInfo.load(tmp_path / "m2")
    assert info.meta["training"]["runs"][1]["hardware"]["device"] == "cpu"
    # the record keeps accumulating: a run from m2 starts at 6 steps and knows both earlier runs
    got = adapt.init_from_export(
        adapt.build_model(cfg, w, run_args(tmp_path / "y"))[0], tmp_path / "m2", run_args(tmp_path / "y")
    )
    assert got["steps"] == 6 and len(got["runs"]) == 2

    with pytest.raises(SystemExit, match="lora_r=16 there, 8 here"):
        adapt.train(run_args(tmp_path / "third", "--init-from", str(m1), "--lora-r", "8"), (cfg, w), tok, docs)
    with pytest.raises(SystemExit, match="top_k"):
        adapt.train(run_args(tmp_path / "fourth", "--init-from", str(m1), "--top-k", "1"), (cfg, w), tok, docs)


@pytest.mark.slow
def test_torch_llama_matches_the_runtime_graph_on_the_base(tmp_path):
    from unmask.engine.base import fetch_base, read_gguf, tokenizer_json

    gguf = fetch_base()
    cfg, w = read_gguf(gguf)
    from tokenizers import Tokenizer

    ids = (
        Tokenizer.from_str(tokenizer_json(gguf))
        .encode("def fibonacci(n):\n    if n < 2:\n        return n\n    return fib")
        .ids
    )
    assert 15 <= len(ids) <= 25
    with torch.no_grad():
        lt = Llama.from_weights(cfg, w).eval()(torch.tensor([ids]), torch.arange(len(ids))[None])[0].numpy()
    lo, _ = onnx_decoder(cfg, w, tmp_path).forward(ids, range(len(ids)), causal_bias(0, len(ids)), None, 0)
    assert np.abs(lo - lt).max() < 1e-2


def test_release_edits_as_holes(tiny_setup, tmp_path):
    """--edit-data: release-edit examples become holes laid out as the runtime's next-edit request."""
    from unmask.engine import release_edits

    cfg, w, tok, docs = tiny_setup
    before = docs[0]
    after = before.replace("import os\n", "import os\nimport sys\n", 1).replace("return y\n", "return y - 1\n")
    ex = release_edits.cut("m.py", before, after, 1)
    assert ex["n_remaining"] >= 2
    rng = random.Random(0)
    for _ in range(6):
        state = rng.getstate()
        hole = adapt.make_edit_hole(ex, tok, rng, 200, 24)
        rng.setstate(state)
        r = rng.randrange(ex["n_remaining"])
        prompt, new = release_edits.edit_prompt(ex, r)
        assert prompt.startswith("# Recent edit:\n# +import sys\n")
        heal = tok.decode(hole.mid[:-1])[: -len(new) or None]
        assert tok.decode(hole.ctx) + heal == prompt and tok.decode(hole.mid[:-1]) == heal + new
        assert hole.mid[-1] == tok.specials.eos
    assert adapt.make_edit_hole(ex, tok, rng, 10, 24) is None  # a context that does not fit whole: no hole

    # no-op holes: a line the change leaves alone, to be kept as it is
    lines = ex["current"].splitlines(keepends=True)
    changed = {ex["cursor"]["line"]} | {r["start_line"] for r in ex["remaining"]}
    kept = set()
    for _ in range(20):
        hole = adapt.make_edit_hole(ex, tok, rng, 400, 24, noop_share=1.0)
        if hole is None:
            continue
        mid = tok.decode(hole.mid[:-1])
        ctx = tok.decode(hole.ctx)
        assert ctx.startswith("# Recent edit:\n# +import sys\n")
        line = next(i for i, ln in enumerate(lines) if i not in changed and (ctx + mid).endswith(ln) and ln.strip())
        kept.add(line)
    assert kept and not kept & changed

    d = tmp_path / "edits"
    d.mkdir()
    (d / "train-00000.jsonl").write_text(json.dumps(ex) + "\n")
    (d / "heldout-00000.jsonl").write_text("not read\n")
    a = run_args(tmp_path / "run", "--max-steps", "1", "--edit-data", str(d), "--edit-share", "1.0")
    stream = adapt.RowStream(docs, tok, a, 0, [ex])
    row = stream.row()
    assert int(row["n_sup"]) > 0
    assert row["n_mid"][0] > 0 and not row["n_mid"][1:].any()  # edit holes train the runtime's path: B=1 only
    assert "# Recent edit:" in tok.decode([int(t) for t in row["ids"][: int(row["n_tok"])]])
    counters = adapt.train(a, (cfg, w), tok, docs)
    assert counters["step"] == 1
    assert json.loads((tmp_path / "run" / "adapt_meta.json").read_text())["n_edit_examples"] == 1
