"""A few training steps on a tiny corpus reduce the loss; training resumes from its checkpoint."""

from __future__ import annotations

import json
import math
import shutil

import pytest

pytest.importorskip("torch")

from unmask.engine import train  # noqa: E402
from unmask.engine.runtime import ModelInfo, model_dir  # noqa: E402

SNIPPET = '''def add(a, b):
    """Return the sum of a and b."""
    return a + b


def scale(values, factor):
    out = []
    for v in values:
        out.append(v * factor)
    return out
'''


def _corpus(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    with open(corpus, "w") as fh:
        for i in range(40):
            fh.write(json.dumps({"path": f"f{i}.py", "text": SNIPPET.replace("add", f"add{i % 5}")}) + "\n")
    return corpus


def test_training_reduces_loss_and_resumes(tmp_path):
    """Span infilling with edit-propagation examples mixed in (--p-edit)."""
    corpus = _corpus(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(ModelInfo.load(model_dir("denoiser")).file("tokenizer.json"), out / "tokenizer.json")
    args = [
        "--out",
        str(out),
        "--corpus",
        str(corpus),
        "--d-model",
        "64",
        "--layers",
        "2",
        "--heads",
        "2",
        "--ffn",
        "128",
        "--seq-len",
        "96",
        "--batch",
        "8",
        "--lr",
        "3e-3",
        "--warmup",
        "5",
        "--no-progress",
        "--ema",
        "0.9",
        "--threads",
        "1",
        "--p-edit",
        "0.3",
        "--max-steps",
        "100",
        "--minutes",
        "5",
        "--p-whole",
        "0.3",
    ]
    train.main(args)
    log = [json.loads(line) for line in open(out / "log.jsonl")]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < 0.6 * losses[0], losses
    assert (out / "weights.pt").exists() and (out / "ckpt.pt").exists()
    train.main(args[:-6] + ["--max-steps", "110", "--minutes", "5", "--p-whole", "0.3"])
    final = [json.loads(line) for line in open(out / "log.jsonl")][-1]
    assert final["step"] == 110  # continued from 100, not restarted


def test_causal_fim_baseline_trains(tmp_path):
    """The autoregressive baseline (--causal): FIM examples, next-token loss on every position."""
    corpus = _corpus(tmp_path)
    out = tmp_path / "ar"
    out.mkdir()
    shutil.copy(ModelInfo.load(model_dir("denoiser")).file("tokenizer.json"), out / "tokenizer.json")
    train.main(
        ["--out", str(out), "--corpus", str(corpus), "--causal", "--d-model", "64", "--layers", "2", "--heads", "2"]
        + ["--ffn", "128", "--seq-len", "96", "--batch", "8", "--lr", "3e-3", "--warmup", "5", "--no-progress"]
        + ["--ema", "0.9", "--threads", "1", "--max-steps", "60", "--minutes", "5"]
    )
    log = [json.loads(line) for line in open(out / "log.jsonl")]
    start = math.log(8192)  # a fresh model's loss: uniform over the vocabulary
    assert log[0]["loss"] < 0.6 * start and log[-1]["final_val_loss"] < 0.3 * start, log
    assert log[0]["sup_frac"] > 0.9  # every position carries loss
    assert json.loads((out / "train_meta.json").read_text())["config"]["causal"] is True


def test_export_keeps_the_training_history_across_runs(tmp_path):
    """Each run's steps, tokens and validation curve are appended; re-exporting a run replaces its row."""
    from unmask.engine.export import training_history

    shipped = [{"start_step": 0, "end_step": 100, "end_tokens": 1000, "end_supervised": 200, "end_seconds": 36.0}]
    log = tmp_path / "log.jsonl"
    recs = [
        {"step": 150, "tokens": 1500, "supervised": 300, "seconds": 54.0},
        {"step": 200, "tokens": 2000, "supervised": 400, "seconds": 72.0, "val_loss": 4.5},
        {"step": 200, "final_val_loss": 4.25, "tokens": 2000, "supervised": 400, "seconds": 72.0},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    hist = training_history(shipped, log, {"device": "cpu", "p_edit": "0.1"})
    assert [h["end_step"] for h in hist] == [100, 200]
    new = hist[-1]
    assert (new["start_step"], new["tokens"], new["supervised"], new["hours"]) == (100, 1000, 200, 0.01)
    assert [c["val_loss"] for c in new["val_curve"]] == [4.5, 4.25] and new["recipe"] == {"p_edit": "0.1"}
    assert training_history(hist, log, {})[:-1] == shipped  # the same run again: its row is replaced
    assert len(training_history(hist, log, {})) == 2
