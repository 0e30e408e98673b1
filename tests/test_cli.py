"""The `unmask` CLI end to end on the shipped model (real ONNX Runtime, real weights)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

UNMASK = [sys.executable, "-m", "unmask.lsp.cli"]


def run(*args, **kw):
    return subprocess.run([*UNMASK, *args], capture_output=True, text=True, timeout=300, **kw)


def test_infill_jsonl_batch(tmp_path):
    src = tmp_path / "in.jsonl"
    recs = [
        {"id": "a", "prefix": "def add(a, b):\n    return ", "suffix": "\n"},
        {"id": 7, "prefix": "import os\n\nfor name in os.listdir('.'):\n", "suffix": "\nprint('done')\n"},
        {"id": "big", "prefix": "x = 1\n" * 5000, "suffix": "y = 2\n" * 5000},  # whole files: truncated to window
    ]
    src.write_text("\n".join(json.dumps(r) for r in recs) + "\n{not json\n")
    out = tmp_path / "out.jsonl"
    r = run("infill", "--jsonl", str(src), "--out", str(out), "--steps", "8")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows[:3]] == ["a", 7, "big"]
    for row in rows[:3]:
        assert isinstance(row["completion"], str) and 1 <= row["steps"] <= 8 and row["ms"] > 0
    assert rows[3]["error"] and rows[3]["line"] == 4  # bad line reported, batch not lost
    assert "p95" in r.stderr and "bad lines" in r.stderr


def test_complete_prints_completion_and_timings(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def square(x):\n    return \n")
    r = run("complete", str(f), "--line", "1", "--col", "11", "--steps", "4")
    assert r.returncode == 0, r.stderr
    assert "ms" in r.stderr and "encode" in r.stderr and "steps" in r.stderr


def test_complete_rejects_line_outside_file(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("x = 1\n")
    r = run("complete", str(f), "--line", "40", "--col", "0")
    assert r.returncode != 0 and "outside" in r.stderr


def test_demo_shows_drafts():
    r = run("demo", "--delay", "0", "--steps", "6")
    assert r.returncode == 0, r.stderr
    assert "step  1" in r.stdout and "done" in r.stdout


def test_missing_model_is_one_clear_message(tmp_path):
    r = run("complete", __file__, "--line", "0", "--col", "0", "--model", str(tmp_path / "nope"))
    assert r.returncode != 0
    assert "model metadata not found" in r.stderr and str(tmp_path / "nope") in r.stderr
    assert "Traceback" not in r.stderr


def test_corrupt_model_file_is_named(tmp_path):
    """The denoiser's model files (the default model keeps only model.json in the package)."""
    import shutil

    from unmask.engine.runtime import model_dir

    d = tmp_path / "m"
    shutil.copytree(model_dir("denoiser"), d)
    (d / "step.onnx").write_bytes(b"not an onnx file")
    r = run("complete", __file__, "--line", "0", "--col", "0", "--model", str(d))
    assert r.returncode != 0 and "step.onnx" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture()
def tiny_eval_set(tmp_path):
    """Three HumanEval-format tasks written here (not HumanEval) to exercise the harness."""
    tasks = [
        {
            "task_id": "T/0",
            "entry_point": "inc",
            "prompt": "def inc(x):\n",
            "canonical_solution": "    return x + 1\n",
            "suffix": "",
            "test": "def check(f):\n    assert f(1) == 2\n",
        },
        {
            "task_id": "T/1",
            "entry_point": "neg",
            "prompt": "def neg(x):\n",
            "canonical_solution": "    return -x\n",
            "suffix": "",
            "test": "def check(f):\n    assert f(2) == -2\n",
        },
        {
            "task_id": "T/2",
            "entry_point": "loop",
            "prompt": "def loop():\n",
            "canonical_solution": "    return 0\n",
            "suffix": "",
            "test": "def check(f):\n    while True:\n        pass\n",
        },
    ]
    for name in ("HumanEval-SingleLineInfilling.jsonl.gz", "HumanEval-RandomSpanInfillingLight.jsonl.gz"):
        with gzip.open(tmp_path / name, "wt") as fh:
            for t in tasks:
                fh.write(json.dumps(t) + "\n")
    return tmp_path, tasks


def test_eval_harness_executes_tests(tiny_eval_set):
    from unmask.engine import evaluate as ev

    d, tasks = tiny_eval_set
    assert ev.run_test(tasks[0], tasks[0]["canonical_solution"])
    assert not ev.run_test(tasks[0], "    return x - 1\n")
    assert not ev.run_test(tasks[2], tasks[2]["canonical_solution"], timeout=2)  # hangs -> timeout -> fail


def test_eval_cli_reports_both_length_modes(tiny_eval_set, tmp_path):
    d, _ = tiny_eval_set
    report = tmp_path / "r.json"
    r = run("eval", "--data", str(d), "--sets", "single,random", "--steps", "4", "--json", str(report))
    assert r.returncode == 0, r.stderr
    sets = json.loads(report.read_text())["sets"]
    assert set(sets) == {"single/predicted", "single/oracle", "random/predicted", "random/oracle"}
    assert all(s["n"] == 3 and 0 <= s["pass@1"] <= 100 for s in sets.values())
