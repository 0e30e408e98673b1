"""Render a model directory's MODEL.md from its model.json (training record and eval numbers).

Called by ``unmask eval --write`` after it stores fresh numbers, so the card always shows
what the last evaluation measured. The prose about data and recipe is fixed here; every
number comes from model.json.
"""

from __future__ import annotations

import json
from pathlib import Path


def _table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    out = ["| " + " | ".join(h for h, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join("" if r.get(k) is None else str(r.get(k)) for _, k in cols) + " |")
    return "\n".join(out)


def render(model_dir: Path) -> str:
    meta = json.loads((model_dir / "model.json").read_text())
    c = meta["config"]
    tr = meta.get("training", {})
    args = meta.get("training_args", {})
    data = meta.get("data", {})
    ev = meta.get("eval", {})
    hours = tr.get("seconds", 0) / 3600
    lines = [
        f"# Model card: `{meta.get('name', model_dir.name)}`",
        "",
        "A small bidirectional transformer trained as a masked-diffusion span infiller for code "
        '(see README, "How it works"). Shipped as int8 ONNX graphs (`encode.onnx`, `step.onnx`), '
        "float16 weights for the PyTorch backend (`weights.npz`), the tokenizer and `model.json`.",
        "",
        "## Architecture",
        "",
        f"- {meta.get('n_params', 0) / 1e6:.2f}M parameters: d_model {c['d_model']}, {c['n_layers']} layers, "
        f"{c['n_heads']} heads, SwiGLU {c['ffn_hidden']}, RoPE, RMSNorm, tied embeddings",
        f"- byte-level BPE, {meta.get('vocab_size')} tokens (trained on the corpus below); special ids "
        f"`{json.dumps(meta.get('specials'))}`",
        f"- window {meta.get('window')} tokens (context + slots), span buckets {meta.get('buckets')}",
        f"- runtime quantization: {meta.get('quantized')}",
        "",
        "## Data",
        "",
        "Python sources on the training machine: the standard library and every installed package "
        "(`python -m unmask.engine.corpus`). Filters: 200 B to 400 kB, no line over 400 characters, "
        "no generated-file banners, must parse as Python 3; exact duplicates removed after whitespace "
        "normalisation.",
        "",
        "Decontamination: files of `requests`, `flask` and `click` and any vendored copy of them "
        "(e.g. `pip/_vendor/requests`) are excluded by path component; every file sharing a 4-line "
        "shingle of non-trivial lines with anything under `shared/eval/` (HumanEval infilling "
        "prompts and solutions, and the before/current/target files of the next-edit set) is dropped. "
        "No HumanEval task or evaluation file is ever read for training.",
        "",
    ]
    if data:
        lines += ["Corpus build: " + ", ".join(f"{k} {v:,}" for k, v in data.items()) + ".", ""]
    lines += [
        "## Recipe",
        "",
        "Masked diffusion (MDLM / LLaDA): t ~ U(0,1) per example (stratified over the batch), each "
        "span slot masked with probability t, cross-entropy on masked slots weighted 1/t. Up to "
        f"{args.get('max_spans', '?')} spans per window (line, lines, block body, rest of line, random), "
        "padded to a bucket with end-of-span tokens (a larger bucket half the time); "
        f"{float(args.get('p_whole', 0)):.0%} of windows are masked whole. Context tokens are never noised "
        "and never see the span (asymmetric attention), matching cached inference.",
        "",
        f"Next-edit: {float(args.get('p_edit', 0) or 0):.0%} of the examples of the latest run are "
        "synthetic edit propagations (`engine/edits.py`): the edit as a diff in front of the file "
        "(`<|edit|>` ... `<|file|>`), file excerpts with holes; a renamed word's other uses, or the "
        "call sites of a changed signature, must follow the edit, holes over other text must keep it.",
        "",
        f"- sequence length {args.get('seq_len')}, batch {args.get('batch')}, AdamW lr {args.get('lr')} "
        f"(warm-up {args.get('warmup')}, then constant), weight decay 0.1, EMA {args.get('ema')} "
        "(the EMA weights are shipped)",
        f"- bf16 autocast: {args.get('bf16')}; device: {args.get('device')}",
        "",
        "## Training record",
        "",
        f"- steps {tr.get('step', 0):,}; tokens through the model {tr.get('tokens', 0) / 1e6:.1f}M; "
        f"supervised tokens (carrying loss) {tr.get('supervised', 0) / 1e6:.1f}M "
        f"({tr.get('supervised', 0) / max(1, tr.get('tokens', 1)):.0%})",
        f"- training time {hours:.2f} h on {meta.get('hardware', 'a 2-core CPU (no GPU lent)')}",
        '- reproduce: see README ("Reproduce the shipped model")',
        "",
    ]
    hist = meta.get("history") or []
    if hist:
        lines += [
            "Training history, one row per run (each run starts from the previous run's weights; "
            "validation loss: the training objective on fixed held-out corpus windows, nats per slot, "
            "EMA weights; runs before the corpus grew may have used slightly different held-out files):",
            "",
            _table(
                [
                    {
                        "steps": f"{h['start_step']:,}-{h['end_step']:,}",
                        "tokens": f"{h['tokens'] / 1e6:.1f}M",
                        "sup": f"{h['supervised'] / 1e6:.1f}M",
                        "hours": h["hours"],
                        "device": h.get("device"),
                        "recipe": ", ".join(f"{k} {v}" for k, v in h.get("recipe", {}).items()),
                        "curve": "; ".join(f"{c['step']}: {c['val_loss']}" for c in h.get("val_curve", [])),
                    }
                    for h in hist
                ],
                [
                    ("steps", "steps"),
                    ("tokens", "tokens"),
                    ("supervised", "sup"),
                    ("hours", "hours"),
                    ("device", "device"),
                    ("recipe", "recipe"),
                    ("validation loss by step", "curve"),
                ],
            ),
            "",
        ]
    lines += [
        "## Evaluation",
        "",
    ]
    if ev:
        rows = [{"set": k, **v} for k, v in ev.get("sets", {}).items()]
        lines += [
            f"HumanEval infilling (Bavarian et al. 2022), greedy, backend `{ev.get('backend')}`, "
            f"step cap {ev.get('steps')}, threshold {ev.get('threshold')}, deadline {ev.get('budget_ms')}. "
            "*predicted*: the model chooses the span length (bucket 32 for single-line, cut at the "
            "first newline; 64 otherwise); *oracle*: exactly the canonical solution's token count.",
            "",
            _table(
                rows,
                [
                    ("set", "set"),
                    ("tasks", "n"),
                    ("pass@1 %", "pass@1"),
                    ("exact %", "exact"),
                    ("p50 ms", "ms_p50"),
                    ("p95 ms", "ms_p95"),
                    ("steps", "steps_mean"),
                ],
            ),
            "",
        ]
        if ev.get("steps_table"):
            lines += [
                "Quality vs steps (single-line, predicted length; threshold none = fixed schedule):",
                "",
                _table(
                    ev["steps_table"],
                    [
                        ("step cap", "steps_cap"),
                        ("threshold", "threshold"),
                        ("pass@1 %", "pass@1"),
                        ("exact %", "exact"),
                        ("p50 ms", "ms_p50"),
                        ("p95 ms", "ms_p95"),
                        ("steps", "steps_mean"),
                    ],
                ),
                "",
            ]
        lines += [f"Command: `{ev.get('command', 'unmask eval --write')}`", ""]
    else:
        lines += ["Not evaluated yet: run `unmask eval --write`.", ""]
    nes = meta.get("eval_nes")
    if nes:
        lines += [
            "Next-edit prediction on `shared/eval/nes` (real multi-hunk commits of flask, click, requests; "
            "predicted edits applied to `current` and compared with `target`) and the no-op set built from "
            "it (the commit's last hunk as the edit: the right answer is silence):",
            "",
            _table(
                [nes],
                [
                    ("rename rule", "rename_rule"),
                    ("replay rule", "replay_rule"),
                    ("signature rule", "signature_rule"),
                    ("examples", "examples"),
                    ("exact file %", "exact_match"),
                    ("hunk recall %", "hunk_recall"),
                    ("hunk precision %", "hunk_precision"),
                    ("answered %", "predicted_rate"),
                    ("silent on no-op %", "noop_silent_rate"),
                    ("p50 ms", "p50_ms"),
                    ("p95 ms", "p95_ms"),
                ],
            ),
            "",
            f"Command: `{nes.get('command', 'python bench/nes_eval.py --write')}`",
            "",
        ]
    if meta.get("notes"):
        lines += ["## Notes", "", meta["notes"], ""]
    return "\n".join(lines)


def write(model_dir: Path) -> Path:
    out = model_dir / "MODEL.md"
    out.write_text(render(model_dir))
    return out
