"""Diffusion vs an autoregressive baseline on HumanEval single-line infilling, side by side in one run (issue 7).

    python bench/ar_vs_diffusion.py --ar-model runs/ar-onnx [--limit N] [--threads N]
    unmask bench --ar-model runs/ar-onnx ...          (the same script)

The AR model is exported first with ``python -m unmask.engine.ar --run runs/ar --out runs/ar-onnx``
(same backbone, tokenizer, data and number of training tokens as the shipped denoiser; causal
attention, fill-in-the-middle; int8 ONNX with a KV cache, see :mod:`unmask.engine.ar`).

One process, one machine: every task is completed by every configuration, in a shuffled
order per task, so machine noise hits all of them alike. Configurations: the denoiser at
fixed step caps (1, 2, 4, 8, 16, 32; a fixed schedule commits ~bucket/steps slots per step),
with the product's confidence threshold (0.9, cap 32, no deadline) and with the product's
250 ms deadline on top; the AR model greedy. ``--backend torch --device cuda`` runs both
models' float32 weights in PyTorch on a GPU (the same comparison there; the AR model's
``weights.npz`` comes with its export). ``--extra-model DIR`` adds a second denoiser
(named by its training tokens, e.g. ``diffusion@31.7M``) at 2 and 8 steps and the product
threshold, so that the equal-token comparison (``--model``: the denoiser at the AR model's
token count) and the shipped model can be read from one run. Both decode in line mode (the completion ends
at its first newline, as an editor's single-line suggestion) with at most 32 tokens (the
diffusion line bucket), both get a fresh context encode per completion (no cache reuse).

Per configuration: pass@1 (the task's tests run on ``prompt + completion + suffix``, after
all timing is done, see :mod:`unmask.engine.evaluate`), exact match, character similarity to
the canonical line (difflib; a signal while exact match is near zero), whether the filled-in
program is valid Python, latency p50/p95 per completion (wall clock around the engine call:
tokenize, encode/prefill, steps/decode, detokenize), generated tokens/s, forward passes per
span (encode + steps; prefill + decodes) and where the time goes (encode/prefill,
per-step/decode calls, the rest).

Writes the per-completion records and summary as JSON (``--json``), the plots
(``--plots``: quality_vs_latency.png, quality_vs_steps.png, latency_distribution.png,
time_breakdown.png) and prints a markdown report. ``--replot JSON`` redraws from a JSON.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import random
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from unmask.engine import evaluate as ev
from unmask.engine.ar import ArEngine, TorchArEngine
from unmask.engine.infill import LINE_BUCKET, Engine
from unmask.engine.runtime import ModelError, backend_config

FIXED_STEPS = (1, 2, 4, 8, 16, 32)
PRODUCT_BUDGET_MS = 250.0  # lsp/config.py DEFAULT_BUDGET_MS


EXTRA_STEPS = (2, 8)  # the second diffusion model's fixed step caps (plus the product threshold)


def configs(names: str | None, extra: str | None = None) -> list[dict]:
    """The configurations of one run; ``extra``: the label of a second diffusion model (``--extra-model``)."""
    out = [dict(name=f"diffusion {k} steps", kind="diffusion", steps=k, threshold=1.01) for k in FIXED_STEPS]
    out.append(dict(name="diffusion thr 0.9", kind="diffusion", steps=32, threshold=0.9))
    out.append(dict(name="diffusion thr 0.9 250ms", kind="diffusion", steps=32, threshold=0.9, budget_ms=250.0))
    if extra:
        kw = dict(kind="diffusion-extra", model="extra")
        out += [dict(name=f"{extra} {k} steps", steps=k, threshold=1.01, **kw) for k in EXTRA_STEPS]
        out.append(dict(name=f"{extra} thr 0.9", steps=32, threshold=0.9, **kw))
    out.append(dict(name="AR greedy", kind="ar"))
    if names:
        want = [n.strip() for n in names.split(",")]
        out = [c for c in out if c["name"] in want]
        if len(out) != len(want):
            raise SystemExit(f"unknown configuration in {want}")
    return out


def tokens_label(meta: dict) -> str:
    """``diffusion@31.7M``: a diffusion model named by its training tokens."""
    return f"diffusion@{meta.get('training', {}).get('tokens', 0) / 1e6:.1f}M"


class Timed:
    """A backend proxy that adds up the time of encode and step calls."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.reset()

    def reset(self) -> None:
        self.encode_s = self.step_s = 0.0
        self.n_step = 0

    def encode(self, ids, pos):
        t = time.perf_counter()
        kv = self.inner.encode(ids, pos)
        self.encode_s += time.perf_counter() - t
        return kv

    def step(self, ids, pos, kv):
        t = time.perf_counter()
        out = self.inner.step(ids, pos, kv)
        self.step_s += time.perf_counter() - t
        self.n_step += 1
        return out


def finish(task: dict, text: str) -> str:
    """As unmask eval: a whole-line hole's completion ends with its newline."""
    if text and not text.endswith("\n") and task["prompt"].endswith("\n"):
        text += "\n"
    return text


def parses(program: str) -> bool:
    """The filled-in function is valid Python (a coarser quality signal than the tests)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. SyntaxWarning: invalid decimal literal
        try:
            compile(program, "<task>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            return False
    return True


def is_code(completion: str) -> bool:
    """Not a blank or comment-only line: such lines pass whenever the masked line was redundant."""
    t = completion.strip()
    return bool(t) and not t.startswith("#")


def run_one(c: dict, task: dict, engines: dict[str, tuple[Engine, Timed]], ar: ArEngine | None) -> dict:
    if c["kind"] != "ar":
        eng, timed = engines[c.get("model", "main")]
        timed.reset()
        t0 = time.perf_counter()
        d = eng.infill(
            task["prompt"],
            task["suffix"],
            bucket=LINE_BUCKET,
            steps=c["steps"],
            threshold=c["threshold"],
            budget_ms=c.get("budget_ms"),
            one_line=True,
        )
        ms = (time.perf_counter() - t0) * 1000
        text, tokens, passes = d.text, len(d.token_confidence[0]), 1 + timed.n_step
        enc_ms, call_ms, n_calls = timed.encode_s * 1000, timed.step_s * 1000, timed.n_step
    else:
        assert ar is not None
        t0 = time.perf_counter()
        r = ar.infill(task["prompt"], task["suffix"], max_new=LINE_BUCKET, one_line=True)
        ms = (time.perf_counter() - t0) * 1000
        text, tokens, passes = r.text, len(r.ids), r.forward_passes
        enc_ms, call_ms, n_calls = r.prefill_ms, r.decode_ms, r.forward_passes - 1
    text = finish(task, text)
    canon = task["canonical_solution"]
    return {
        "config": c["name"],
        "task_id": task["task_id"],
        "completion": text,
        "exact": text.strip() == canon.strip(),
        "similarity": difflib.SequenceMatcher(None, text.strip(), canon.strip()).ratio(),
        "parses": parses(task["prompt"] + text + task["suffix"]),
        "ms": ms,
        "tokens": tokens,
        "passes": passes,
        "encode_ms": enc_ms,  # context encode (diffusion) / prompt prefill (AR)
        "calls_ms": call_ms,  # denoising steps (diffusion) / decode calls (AR)
        "n_calls": n_calls,
    }


def boot_ci(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% paired-bootstrap interval of mean(a) - mean(b), percentage points (a, b per task)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), (n, len(a)))
    diff = (a[idx].mean(1) - b[idx].mean(1)) * 100
    return float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))


def summarize(records: list[dict], cfgs: list[dict]) -> list[dict]:
    rows = []
    for c in cfgs:
        rs = [r for r in records if r["config"] == c["name"]]
        ms = np.array([r["ms"] for r in rs])
        n_calls = sum(r["n_calls"] for r in rs)
        rows.append(
            {
                "config": c["name"],
                "kind": c["kind"],
                "steps": c.get("steps"),
                "threshold": c.get("threshold") if c.get("threshold", 2) <= 1 else None,
                "budget_ms": c.get("budget_ms"),
                "n": len(rs),
                "pass@1": 100 * np.mean([r["passed"] for r in rs]),
                "exact": 100 * np.mean([r["exact"] for r in rs]),
                "similarity": float(np.mean([r["similarity"] for r in rs])),
                "code_pass@1": 100 * np.mean([r["passed"] and is_code(r["completion"]) for r in rs]),
                "parses": 100 * np.mean([r["parses"] for r in rs]),
                "code_parses": 100 * np.mean([r["parses"] and is_code(r["completion"]) for r in rs]),
                "comment_lines": 100 * np.mean([not is_code(r["completion"]) for r in rs]),
                "empty": 100 * np.mean([not r["completion"].strip() for r in rs]),
                "ms_p50": float(np.percentile(ms, 50)),
                "ms_p95": float(np.percentile(ms, 95)),
                "ms_mean": float(ms.mean()),
                "tokens_mean": float(np.mean([r["tokens"] for r in rs])),
                "tokens_per_s": sum(r["tokens"] for r in rs) / (ms.sum() / 1000),
                "passes_mean": float(np.mean([r["passes"] for r in rs])),
                "encode_ms_mean": float(np.mean([r["encode_ms"] for r in rs])),
                "calls_ms_mean": float(np.mean([r["calls_ms"] for r in rs])),
                "ms_per_call": sum(r["calls_ms"] for r in rs) / max(1, n_calls),
                "other_ms_mean": float(np.mean([r["ms"] - r["encode_ms"] - r["calls_ms"] for r in rs])),
            }
        )
    return rows


def compare(records: list[dict], rows: list[dict]) -> dict:
    """Latency ratios and paired quality differences of each diffusion configuration vs AR."""
    by = {}
    for r in records:
        by.setdefault(r["config"], {})[r["task_id"]] = r
    ar_row = next((x for x in rows if x["kind"] == "ar"), None)
    if ar_row is None:
        return {}
    ar = by[ar_row["config"]]
    ids = sorted(ar)
    out = {}
    for row in rows:
        if not row["kind"].startswith("diffusion"):
            continue
        d = by[row["config"]]
        a = np.array([d[i]["passed"] for i in ids], float)
        b = np.array([ar[i]["passed"] for i in ids], float)
        ca = np.array([d[i]["passed"] and is_code(d[i]["completion"]) for i in ids], float)
        cb = np.array([ar[i]["passed"] and is_code(ar[i]["completion"]) for i in ids], float)
        sa = np.array([d[i]["similarity"] for i in ids])
        sb = np.array([ar[i]["similarity"] for i in ids])
        out[row["config"]] = {
            "speedup_p50": ar_row["ms_p50"] / row["ms_p50"],  # > 1: diffusion is faster
            "speedup_p95": ar_row["ms_p95"] / row["ms_p95"],
            "pass_diff": float((a - b).mean() * 100),
            "pass_diff_ci": boot_ci(a, b),
            "similarity_diff": float((sa - sb).mean()),
            "only_diffusion_passes": int(((a == 1) & (b == 0)).sum()),
            "only_ar_passes": int(((a == 0) & (b == 1)).sum()),
            "code_pass_diff": float((ca - cb).mean() * 100),
            "code_pass_diff_ci": boot_ci(ca, cb),
        }
    return out


def saturation(records: list[dict], rows: list[dict]) -> dict:
    """Per metric, the smallest fixed step cap whose score is within bootstrap noise of the best cap."""
    fixed = [x for x in rows if x["kind"] == "diffusion" and x["threshold"] is None and x["budget_ms"] is None]
    if not fixed:
        return {}
    by = {}
    for r in records:
        by.setdefault(r["config"], {})[r["task_id"]] = r
    metrics = {
        "pass@1": lambda r: r["passed"],
        "code_pass@1": lambda r: r["passed"] and is_code(r["completion"]),
        "exact": lambda r: r["exact"],
        "similarity": lambda r: r["similarity"],
    }
    out = {}
    for key, f in metrics.items():
        best = max(fixed, key=lambda x: x[key])
        ids = sorted(by[best["config"]])
        top = np.array([f(by[best["config"]][i]) for i in ids], float)
        for x in sorted(fixed, key=lambda x: x["steps"]):
            mine = np.array([f(by[x["config"]][i]) for i in ids], float)
            lo, hi = boot_ci(top, mine)
            if lo <= 0:  # the best cap is not significantly better
                out[key] = {"steps": x["steps"], "best_steps": best["steps"]}
                break
    return out


# -- report -------------------------------------------------------------------------------------
def markdown(res: dict) -> str:
    rows, cmp_ = res["rows"], res["compare"]
    ar = next((x for x in rows if x["kind"] == "ar"), None)
    lines = [
        "Quality (pass@1 code lines: passes whose completion is not a comment or blank line; valid Python: the "
        "filled-in program compiles and the completion is code):",
        "",
        "| config | pass@1 % | pass@1 code lines % | exact % | similarity | valid Python, code lines % | "
        "comment/blank lines % |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        lines.append(
            f"| {x['config']} | {x['pass@1']:.2f} | {x['code_pass@1']:.2f} | {x['exact']:.2f} | "
            f"{x['similarity']:.3f} | {x['code_parses']:.1f} | {x['comment_lines']:.1f} |"
        )
    lines += [
        "",
        "Latency per completion and where it goes (means per completion unless p50/p95):",
        "",
        "| config | p50 ms | p95 ms | speed-up vs AR p50 / p95 | tokens/s | tokens | forward passes | "
        "encode/prefill ms | steps/decode ms | ms per step/decode | other ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        c = cmp_.get(x["config"])
        sp = f"{c['speedup_p50']:.2f}x / {c['speedup_p95']:.2f}x" if c else "1 (baseline)"
        lines.append(
            f"| {x['config']} | {x['ms_p50']:.1f} | {x['ms_p95']:.1f} | {sp} | {x['tokens_per_s']:.0f} | "
            f"{x['tokens_mean']:.1f} | {x['passes_mean']:.1f} | {x['encode_ms_mean']:.1f} | "
            f"{x['calls_ms_mean']:.1f} | {x['ms_per_call']:.2f} | {x['other_ms_mean']:.1f} |"
        )
    lines += ["", "Paired against AR on the same tasks (difference in percentage points, 95% bootstrap interval):", ""]
    lines += [
        "| config | pass@1 diff | interval | only diffusion passes | only AR passes | code pass@1 diff | interval |"
    ]
    lines += ["|---|---|---|---|---|---|---|"]
    for name, c in cmp_.items():
        lo, hi = c["pass_diff_ci"]
        clo, chi = c["code_pass_diff_ci"]
        lines.append(
            f"| {name} | {c['pass_diff']:+.2f} | [{lo:+.2f}, {hi:+.2f}] | {c['only_diffusion_passes']} | "
            f"{c['only_ar_passes']} | {c['code_pass_diff']:+.2f} | [{clo:+.2f}, {chi:+.2f}] |"
        )
    sat = res.get("saturation", {})
    if sat:
        lines += [
            "",
            "Saturation (smallest fixed step cap not significantly worse than the best cap, paired bootstrap): "
            + "; ".join(f"{k} at {v['steps']} steps (best: {v['best_steps']})" for k, v in sat.items()),
        ]
    if ar:
        lines += [
            "",
            f"Machine: {res['machine']}; {res.get('backend', 'onnx')} on {res.get('device', 'cpu')}, "
            f"threads {res['threads'] or 'runtime default'}; {res['n_tasks']} tasks; "
            f"load average (1/5/15 min) {res.get('loadavg_start')} at the start, {res.get('loadavg_end_of_timing')} "
            f"at the end of timing; {res.get('seconds_completions', 0):.0f} s of completions, "
            f"{res.get('seconds_tests', 0):.0f} s of tests",
        ]
    return "\n".join(lines)


def plot(res: dict, records: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    out.mkdir(parents=True, exist_ok=True)
    rows = res["rows"]
    diff = [x for x in rows if x["kind"] == "diffusion"]
    fixed = [x for x in diff if x["threshold"] is None]
    thr = [x for x in diff if x["threshold"] is not None]
    extra = [x for x in rows if x["kind"] == "diffusion-extra"]
    ar = [x for x in rows if x["kind"] == "ar"]
    sub = f"HumanEval single-line infilling, {res['n_tasks']} tasks, 6.9M-param models, {res['machine_short']}"
    files = [out / "ar_vs_diffusion.json"]  # the summary (no per-completion records), small enough to commit
    files[0].write_text(json.dumps({k: v for k, v in res.items() if k != "records"}, indent=1, default=float) + "\n")
    top = max(r["ms"] for r in records)
    ticks = [t for t in (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if t <= top]

    def ms_axis(ax):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())

    def save(fig, name):
        fig.tight_layout()
        p = out / name
        fig.savefig(p, dpi=90)
        plt.close(fig)
        files.append(p)

    # quality vs latency (Pareto)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, label in (
        (axes[0], "pass@1", "pass@1 %"),
        (axes[1], "code_pass@1", "pass@1 %, code lines only (no comment lines)"),
        (axes[2], "exact", "exact match %"),
    ):
        ax.plot([x["ms_p50"] for x in fixed], [x[key] for x in fixed], "o-", color="C0", label="diffusion, fixed steps")
        for x in fixed:
            ax.annotate(str(x["steps"]), (x["ms_p50"], x[key]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        for j, x in enumerate(thr):
            lab = "thr 0.9" + (" 250ms" if x["budget_ms"] else "")
            ax.plot(
                x["ms_p50"], x[key], "s", color="C2", label="diffusion, threshold 0.9 (product)" if j == 0 else None
            )
            ax.annotate(lab, (x["ms_p50"], x[key]), textcoords="offset points", xytext=(-30, -12 - 9 * j), fontsize=7)
        for j, x in enumerate(extra):
            ax.plot(x["ms_p50"], x[key], "D", color="C4", label=x["config"].rsplit(" ", 2)[0] if j == 0 else None)
            ax.annotate(x["config"].split(" ", 1)[1], (x["ms_p50"], x[key]), textcoords="offset points",
                        xytext=(4, -10), fontsize=7, color="C4")  # fmt: skip
        for x in ar:
            ax.plot(x["ms_p50"], x[key], "*", color="C3", markersize=14, label="AR greedy (KV cache)")
        for x in diff + extra + ar:  # p50..p95 whiskers
            ax.plot([x["ms_p50"], x["ms_p95"]], [x[key]] * 2, "-", color="grey", alpha=0.4, lw=1)
        front, best = [], -1.0  # Pareto front over both models: no other point is faster and better
        for x in sorted(diff + extra + ar, key=lambda x: (x["ms_p50"], -x[key])):
            if x[key] > best:
                front.append(x)
                best = x[key]
        ax.step([x["ms_p50"] for x in front], [x[key] for x in front], "k:", where="post", lw=1, label="Pareto front")
        ms_axis(ax)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("latency per completion, ms (p50; grey: to p95)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("Quality vs latency — " + sub, fontsize=9)
    save(fig, "quality_vs_latency.png")

    # quality vs steps
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    for ax, key, label in (
        (axes[0], "pass@1", "pass@1 %"),
        (axes[1], "code_pass@1", "pass@1 %, code lines only"),
        (axes[2], "exact", "exact match %"),
        (axes[3], "similarity", "similarity to the canonical line"),
    ):
        ax.plot([x["steps"] for x in fixed], [x[key] for x in fixed], "o-", color="C0", label="diffusion, fixed")
        for x in thr:
            ax.plot(x["passes_mean"] - 1, x[key], "s", color="C2", label=x["config"].replace("diffusion ", "diff "))
        for x in ar:
            ax.axhline(x[key], color="C3", ls="--", label=f"AR greedy ({x['passes_mean']:.1f} passes)")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(FIXED_STEPS))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_ylim(bottom=0)
        ax.set_xlabel("denoising steps (cap; squares: mean steps taken)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("Quality vs denoising steps — " + sub, fontsize=9)
    save(fig, "quality_vs_steps.png")

    # latency distribution (ECDF)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for i, x in enumerate(rows):
        ms = np.sort([r["ms"] for r in records if r["config"] == x["config"]])
        style = "--" if x["kind"] == "ar" else "-" if x["kind"] == "diffusion" else ":"
        color = "C3" if x["kind"] == "ar" else plt.cm.viridis(i / max(1, len(diff)))
        lw = 2 if x["kind"] == "ar" else 1.3
        ax.plot(ms, np.arange(1, len(ms) + 1) / len(ms), style, color=color, lw=lw, label=x["config"])
    ax.legend(fontsize=7, loc="lower right")
    ms_axis(ax)
    ax.set_xlabel("latency per completion, ms")
    ax.set_ylabel("fraction of completions")
    ax.axhline(0.95, color="grey", lw=0.6, ls=":")
    ax.grid(alpha=0.3)
    ax.set_title("Latency distribution — " + sub, fontsize=8)
    save(fig, "latency_distribution.png")

    # where the time goes
    fig, ax = plt.subplots(figsize=(8, 3.8))
    names = [x["config"].replace("diffusion ", "diff ") for x in rows]
    enc = np.array([x["encode_ms_mean"] for x in rows])
    calls = np.array([x["calls_ms_mean"] for x in rows])
    other = np.array([x["other_ms_mean"] for x in rows])
    y = np.arange(len(rows))
    ax.barh(y, enc, color="C1", label="encode (diffusion) / prefill (AR)")
    ax.barh(y, calls, left=enc, color="C0", label="denoising steps / decode calls")
    ax.barh(y, other, left=enc + calls, color="C7", label="tokenize, sampler, detokenize")
    for i, x in enumerate(rows):
        ax.annotate(f"{x['passes_mean']:.1f} passes", (enc[i] + calls[i] + other[i], i), xytext=(3, -3),
                    textcoords="offset points", fontsize=7)  # fmt: skip
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("mean ms per completion")
    ax.set_xlim(0, 1.2 * max(enc + calls + other))
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    ax.set_title("Where the time goes — " + sub, fontsize=8)
    save(fig, "time_breakdown.png")
    return files


def gpu_name(args) -> str:
    """ ", <GPU name>" when the models run on CUDA, else ""."""
    if args.backend != "torch" or args.device == "cpu":
        return ""
    import torch

    return f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""


def run_tests(records: list[dict], tasks: dict[str, dict], workers: int) -> None:
    """pass@1 for every record; each distinct (task, completion) runs once."""
    todo = sorted({(r["task_id"], r["completion"]) for r in records})
    with ThreadPoolExecutor(workers) as ex:
        got = dict(zip(todo, ex.map(lambda k: ev.run_test(tasks[k[0]], k[1]), todo)))
    for r in records:
        r["passed"] = got[(r["task_id"], r["completion"])]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="ar_vs_diffusion.py", description="diffusion vs autoregressive baseline, HumanEval single-line infilling"
    )
    ap.add_argument("--model", help="diffusion model directory (default: engine/models/denoiser)")
    ap.add_argument(
        "--extra-model",
        help="a second diffusion model (e.g. the shipped one, trained longer than --model): "
        f"{len(EXTRA_STEPS) + 1} more configurations, compared with AR too",
    )
    ap.add_argument("--ar-model", default="runs/ar-onnx", help="AR model directory (python -m unmask.engine.ar)")
    ap.add_argument("--data", help="humaneval-infilling directory (default: ../shared/eval/humaneval-infilling)")
    ap.add_argument("--limit", type=int, default=0, help="an even spread of N tasks (0: all 1033)")
    ap.add_argument("--configs", help="comma-separated subset of configuration names")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads, both models (0: the runtime's default)")
    ap.add_argument(
        "--backend",
        choices=("onnx", "torch"),
        default="onnx",
        help="onnx: the int8 ONNX graphs (the product's runtime); torch: the float32 weights in PyTorch (GPU runs)",
    )
    ap.add_argument("--device", default="cpu", help="with --backend torch: cpu, cuda or auto")
    ap.add_argument("--test-workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="order of configurations per task")
    ap.add_argument("--json", default="runs/bench/ar_vs_diffusion.json", help="records + summary")
    ap.add_argument("--plots", default="bench/plots", help="directory for the PNGs ('' for none)")
    ap.add_argument("--replot", help="redraw plots and report from a JSON written earlier; run nothing")
    args = ap.parse_args(argv)
    if not args.model:  # the from-scratch denoiser (the shipped model is the pretrained base now)
        from unmask.engine.runtime import model_dir

        args.model = str(model_dir("denoiser"))

    if args.replot:
        res = json.loads(Path(args.replot).read_text())
        cfgs = [{"name": x["config"], "kind": x["kind"], "steps": x["steps"]} for x in res["rows"]]
        for c, x in zip(cfgs, res["rows"]):
            c.update(threshold=x["threshold"] if x["threshold"] is not None else 1.01, budget_ms=x["budget_ms"])
        res["rows"] = summarize(res["records"], cfgs)  # metrics added since the run apply too
        res["compare"] = compare(res["records"], res["rows"])
        res["saturation"] = saturation(res["records"], res["rows"])
        if args.plots:
            for p in plot(res, res["records"], Path(args.plots)):
                print(f"wrote {p}")
        print(markdown(res))
        return

    data = Path(args.data) if args.data else ev.default_data_dir()
    if not data.is_dir():
        sys.exit(f"evaluation data not found at {data} (pass --data)")
    tasks = ev.load_tasks(data, "single", args.limit)
    engines: dict[str, tuple[Engine, Timed]] = {}
    for key, path in (("main", args.model), ("extra", args.extra_model)):
        if key == "extra" and not path:
            continue
        opts = {"device": args.device} if args.backend == "torch" else {}
        backend = backend_config(args.backend, path, args.threads, **opts)
        e = Engine(backend, cache_size=0)  # every completion encodes its context, as AR prefills its prompt
        e.backend = Timed(e.backend)
        engines[key] = (e, e.backend)
    eng = engines["main"][0]
    extra = engines.get("extra", (None,))[0]
    if extra is not None and tokens_label(extra.meta) == tokens_label(eng.meta):
        sys.exit("--extra-model has as many training tokens as --model: nothing to compare")
    cfgs = configs(args.configs, tokens_label(extra.meta) if extra is not None else None)
    ar = None
    if any(c["kind"] == "ar" for c in cfgs):
        try:
            if args.backend == "torch":
                ar = TorchArEngine(args.ar_model, threads=args.threads, device=args.device)
            else:
                ar = ArEngine(args.ar_model, threads=args.threads)
        except ModelError as e:
            sys.exit(
                f"{e}\nExport the AR baseline first: python -m unmask.engine.ar --run runs/ar --out {args.ar_model}"
            )
    for _ in range(3):
        for e, _t in engines.values():
            e.warmup()
        if ar:
            ar.warmup()

    rng = random.Random(args.seed)
    records: list[dict] = []
    load_start = [round(x, 2) for x in os.getloadavg()]
    t_start = time.perf_counter()
    for i, task in enumerate(tasks):
        order = cfgs[:]
        rng.shuffle(order)
        for c in order:
            records.append(run_one(c, task, engines, ar))
        if (i + 1) % 50 == 0 or i + 1 == len(tasks):
            el = time.perf_counter() - t_start
            print(
                f"{i + 1}/{len(tasks)} tasks, {el:.0f} s, eta {el / (i + 1) * (len(tasks) - i - 1):.0f} s", flush=True
            )
    t_complete = time.perf_counter() - t_start
    load_end = [round(x, 2) for x in os.getloadavg()]
    by_id = {t["task_id"]: t for t in tasks}
    t0 = time.perf_counter()
    run_tests(records, by_id, args.test_workers)
    rows = summarize(records, cfgs)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    res = {
        "command": "python bench/ar_vs_diffusion.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}" + gpu_name(args),
        "machine_short": f"{os.cpu_count()}-core CPU" if not gpu_name(args) else gpu_name(args).lstrip(", "),
        "loadavg_start": load_start,  # other jobs on the machine (1/5/15-minute load averages)
        "loadavg_end_of_timing": load_end,
        "threads": args.threads,
        "backend": args.backend,
        "device": getattr(engines["main"][0].backend.inner, "device", "cpu"),
        "n_tasks": len(tasks),
        "diffusion_model": {k: eng.meta.get(k) for k in ("name", "n_params", "quantized", "training")},
        "extra_diffusion_model": {k: extra.meta.get(k) for k in ("name", "n_params", "quantized", "training")}
        if extra is not None
        else None,
        "ar_model": {k: ar.meta.get(k) for k in ("source", "n_params", "quantized", "training")} if ar else None,
        "seconds_completions": t_complete,
        "seconds_tests": time.perf_counter() - t0,
        "rows": rows,
        "compare": compare(records, rows),
        "saturation": saturation(records, rows),
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({**res, "records": records}, indent=1, default=float) + "\n")
        print(f"wrote {args.json}")
    if args.plots:
        for p in plot(res, records, Path(args.plots)):
            print(f"wrote {p}")
    print(markdown(res))


if __name__ == "__main__":
    main()
