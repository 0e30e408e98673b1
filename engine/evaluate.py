"""HumanEval infilling evaluation (Bavarian et al. 2022), for measurement only.

Reads the task sets from ``shared/eval/humaneval-infilling``; never used for training.
For each task the engine fills ``prompt <hole> suffix``; the completion passes when
``prompt + completion + suffix + test + check(entry_point)`` runs without error in a
fresh Python subprocess (timeout per task). Reports pass@1 (greedy) and exact match,
with the span length predicted by the model (end-of-span) or given (oracle: the
canonical solution's token count), plus a quality-vs-steps table and latency.

Single-line tasks are decoded in *line mode*: the completion ends at its first newline,
as an editor's single-line suggestion does. Where the hole is whole lines (single- and
multi-line sets), a completion that stops without a final newline gets one, as the editor
does when it accepts a whole-line suggestion before the next line.

It knows the engine's API and the task format; nothing about LSP.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .infill import BLOCK_BUCKET, LINE_BUCKET, Engine

SETS = {
    "single": "HumanEval-SingleLineInfilling.jsonl.gz",
    "multi": "HumanEval-MultiLineInfilling.jsonl.gz",
    "random": "HumanEval-RandomSpanInfillingLight.jsonl.gz",
}


def default_data_dir() -> Path:
    for p in (
        Path("../shared/eval/humaneval-infilling"),
        Path(__file__).resolve().parents[2] / "shared/eval/humaneval-infilling",
    ):
        if p.is_dir():
            return p
    return Path("../shared/eval/humaneval-infilling")


def load_tasks(data_dir: Path, which: str, limit: int = 0) -> list[dict]:
    with gzip.open(data_dir / SETS[which], "rt", encoding="utf-8") as fh:
        tasks = [json.loads(line) for line in fh]
    if limit and limit < len(tasks):  # an even spread over problems, deterministic
        idx = np.linspace(0, len(tasks) - 1, limit).round().astype(int)
        tasks = [tasks[i] for i in sorted(set(idx))]
    return tasks


def run_test(task: dict, completion: str, timeout: float = 10.0) -> bool:
    program = (
        task["prompt"] + completion + task["suffix"] + "\n" + task["test"] + "\n" + f"check({task['entry_point']})\n"
    )
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "t.py"
        f.write_text(program)
        try:
            r = subprocess.run(
                [sys.executable, "-I", str(f)],
                cwd=d,
                capture_output=True,
                timeout=timeout,
                env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"},
            )
        except subprocess.TimeoutExpired:
            return False
    return r.returncode == 0


@dataclass
class Result:
    task_id: str
    completion: str
    passed: bool
    exact: bool
    ms: float
    steps: int


def complete(
    eng: Engine, task: dict, which: str, oracle: bool, steps: int, threshold: float, budget_ms: float | None
) -> tuple[str, float, int]:
    if oracle:
        n = max(1, len(eng.tok.encode(task["canonical_solution"])))
        d = eng.infill(
            task["prompt"], task["suffix"], oracle_length=n, steps=steps, threshold=threshold, budget_ms=budget_ms
        )
    else:
        bucket = LINE_BUCKET if which == "single" else getattr(eng, "long_bucket", BLOCK_BUCKET)
        d = eng.infill(
            task["prompt"],
            task["suffix"],
            bucket=bucket,
            steps=steps,
            threshold=threshold,
            budget_ms=budget_ms,
            one_line=which == "single",
        )
    text = d.text
    if which != "random" and text and not text.endswith("\n") and task["prompt"].endswith("\n"):
        text += "\n"  # the hole is whole lines: a line the model ended without its newline still ends
    return text, d.ms, d.step


def evaluate(
    eng: Engine,
    tasks: list[dict],
    which: str,
    *,
    oracle: bool = False,
    steps: int = 64,
    threshold: float = 0.9,
    budget_ms: float | None = None,
    workers: int = 2,
) -> list[Result]:
    outs = [complete(eng, t, which, oracle, steps, threshold, budget_ms) for t in tasks]
    with ThreadPoolExecutor(workers) as ex:
        passed = list(ex.map(lambda a: run_test(a[0], a[1][0]), zip(tasks, outs)))
    return [
        Result(t["task_id"], o[0], p, o[0].strip() == t["canonical_solution"].strip(), o[1], o[2])
        for t, o, p in zip(tasks, outs, passed)
    ]


def summarize(rs: list[Result]) -> dict:
    ms = np.array([r.ms for r in rs]) if rs else np.zeros(1)
    return {
        "n": len(rs),
        "pass@1": round(100 * sum(r.passed for r in rs) / max(1, len(rs)), 2),
        "exact": round(100 * sum(r.exact for r in rs) / max(1, len(rs)), 2),
        "ms_p50": round(float(np.percentile(ms, 50)), 1),
        "ms_p95": round(float(np.percentile(ms, 95)), 1),
        "steps_mean": round(float(np.mean([r.steps for r in rs])) if rs else 0.0, 2),
    }
