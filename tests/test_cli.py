"""The `unmask` CLI end to end on the shipped model (real ONNX Runtime, real weights)."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

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
    assert re.search(r"^step +\d+ ", r.stdout, re.M) and "done" in r.stdout


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


# -- issue 16: what a new user ran into ------------------------------------------------------------


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_infill_bad_rows_get_error_rows_and_the_batch_goes_on(tmp_path):
    src = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"id": "a", "prefix": "def add(a, b):\n    return ", "suffix": "\n"}).encode(),
        json.dumps({"id": 2, "prefix": "x = 1\ny = ", "suffix": "\n"}).encode(),
        json.dumps(["prefix", "x = "]).encode(),  # a list, not an object
        b'{"id": "latin", "prefix": "caf\xe9 = 1\\n", "suffix": ""}',  # one Latin-1 byte: not UTF-8
        json.dumps({"id": "nopre", "suffix": "\n"}).encode(),
        json.dumps({"id": "notstr", "prefix": 3}).encode(),
        b"{not json",
        json.dumps({"id": "last", "prefix": "import os\nprint(os.", "suffix": ")\n"}).encode(),
    ]
    src.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    r = run("infill", "--jsonl", str(src), "--out", str(out), "--steps", "4")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    rows = _rows(out)
    assert [row["id"] for row in rows] == ["a", 2, None, "latin", "nopre", "notstr", None, "last"]
    good = [rows[i] for i in (0, 1, 7)]
    assert all(isinstance(row["completion"], str) and "error" not in row for row in good)
    bad = {row["line"]: row["error"] for row in rows if "error" in row}
    assert set(bad) == {3, 4, 5, 6, 7}
    assert "object" in bad[3] and "array" in bad[3]
    assert "UTF-8" in bad[4] and "0xe9" in bad[4]
    assert '"prefix"' in bad[5] and "missing" in bad[5] and "string" in bad[5]
    assert '"prefix"' in bad[6] and "string" in bad[6] and "number" in bad[6]
    assert "JSON" in bad[7]
    for n in bad:  # a line on stderr for each bad row
        assert f"line {n}:" in r.stderr


@pytest.mark.parametrize("bucket", ['"big"', "100000", "-3", "0", "true", "32.5", "[8]"])
def test_infill_rejects_a_bad_bucket_with_an_error_row(tmp_path, bucket):
    src = tmp_path / "in.jsonl"
    src.write_text(
        f'{{"id": "b", "prefix": "x = ", "suffix": "\\n", "bucket": {bucket}}}\n'
        + json.dumps({"id": "ok", "prefix": "x = ", "suffix": "\n", "bucket": 8})
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    r = run("infill", "--jsonl", str(src), "--out", str(out), "--steps", "4")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    rows = _rows(out)
    assert rows[0]["id"] == "b" and "completion" not in rows[0]
    assert '"bucket"' in rows[0]["error"] and "1 to 256" in rows[0]["error"]
    assert rows[1]["id"] == "ok" and isinstance(rows[1]["completion"], str)


def test_infill_help_and_readme_document_the_row_fields():
    r = run("infill", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for word in ("prefix", "suffix", "bucket", "1 to 256", '"error"'):
        assert word in text
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    line = next(x for x in readme.splitlines() if x.startswith("unmask infill"))
    assert "bucket" in line


def test_infill_streams_each_result_as_soon_as_it_is_computed():
    """Rows go in one at a time on stdin; each answer (or error row) comes out before the next row is sent."""
    p = subprocess.Popen([*UNMASK, "infill", "--jsonl", "-", "--out", "-", "--steps", "4"], **_pipes())
    try:
        for raw, want in [
            (json.dumps({"id": 1, "prefix": "def f(x):\n    return ", "suffix": "\n"}).encode(), "completion"),
            (b'{"id": 2, "prefix": "\xff"}', "error"),
            (json.dumps({"id": 3, "prefix": "y = ", "suffix": "\n"}).encode(), "completion"),
        ]:
            p.stdin.write(raw + b"\n")
            p.stdin.flush()
            row = json.loads(_readline(p.stdout, timeout=120))
            assert want in row, row
        p.stdin.close()
        assert p.wait(timeout=60) == 0
    finally:
        p.kill()
        p.wait()
        for f in (p.stdin, p.stdout):
            f.close()


def _pipes() -> dict:
    return {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}


def _readline(f, timeout: float) -> bytes:
    import select

    ready, _, _ = select.select([f], [], [], timeout)
    assert ready, f"no output row within {timeout} s"
    line = f.readline()
    assert line, "the process ended without writing the row"
    return line


def test_infill_missing_input_file_is_one_clear_message(tmp_path):
    r = run("infill", "--jsonl", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "nope.jsonl" in r.stderr and "Traceback" not in r.stderr


def test_complete_missing_file_is_one_clear_message(tmp_path):
    r = run("complete", str(tmp_path / "nope.py"), "--line", "0", "--col", "0")
    assert r.returncode == 2
    assert "no such file" in r.stderr and "nope.py" in r.stderr and "Traceback" not in r.stderr


def test_complete_latin1_file_is_read_with_a_reported_fallback(tmp_path):
    f = tmp_path / "latin.py"
    f.write_bytes(b"# caf\xe9\nname = \n")
    r = run("complete", str(f), "--line", "1", "--col", "7", "--steps", "4")
    assert r.returncode == 0, r.stderr
    assert "not UTF-8" in r.stderr and "Latin-1" in r.stderr and "Traceback" not in r.stderr


def test_complete_help_says_positions_are_0_based_utf16():
    text = " ".join(run("complete", "--help").stdout.split())
    assert "0-based" in text and "UTF-16 code units" in text


@pytest.mark.parametrize(
    "line,col,words",
    [("0", "99", ("--col 99", "outside", "6 UTF-16")), ("0", "-1", ("--col -1", "outside")), ("-1", "0", ("--line",))],
)
def test_complete_rejects_a_position_outside_the_file(tmp_path, line, col, words):
    f = tmp_path / "m.py"
    f.write_text("x = 1 \ny = 2\n")
    r = run("complete", str(f), "--line", line, "--col", col)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr


def test_complete_col_counts_utf16_code_units_like_the_context_layer():
    from unmask.context.document import ParsedDocument
    from unmask.lsp.cli import PositionError, cursor_offset

    text = 'a = 1\ns = "\U0001f600é" + t\n'
    doc = ParsedDocument(text, "python")
    line = text.split("\n")[1]
    for col in range(len(line.encode("utf-16-le")) // 2 + 1):
        want = len(doc.src[: doc.offset_at(1, col, "utf-16")].decode("utf-8"))
        if col == 6:  # the middle of the emoji's surrogate pair
            with pytest.raises(PositionError, match="inside"):
                cursor_offset(text, 1, col)
            continue
        assert cursor_offset(text, 1, col) == want, col
    assert text[cursor_offset(text, 1, 8) :].startswith('" + t')


def test_demo_model_time_and_budget_exclude_the_display_pauses(tmp_path):
    """A one-line completion (a few drafts), replayed with 1.5 s pauses: the model time leaves them out,
    and a 1 s budget (shorter than one pause) still gets the whole completion."""
    f = tmp_path / "m.py"
    f.write_text("def add(a, b):\n    return \n\n\nprint(add(1, 2))\n")
    env = {**os.environ, "COLUMNS": "200"}
    pat = re.compile(r"done in ([\d.]+) ms of model time over (\d+) steps")
    where = (str(f), "--line", "1", "--col", "11", "--delay", "1.5")
    r = run("demo", *where, env=env)
    assert r.returncode == 0, r.stderr
    ms, steps = pat.search(r.stdout).groups()
    assert int(steps) >= 2 and float(ms) < 1500, r.stdout  # each pause between drafts was counted before
    r = run("demo", *where, "--budget-ms", "1000", env=env)
    assert r.returncode == 0, r.stderr
    ms_b, steps_b = pat.search(r.stdout).groups()
    assert steps_b == steps and float(ms_b) <= 1000 + 200, r.stdout  # the first pause used to eat the budget
