"""Next-edit prediction: candidate regions, the edit layout the model is trained on, the batch CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from conftest import proposing_model_dir

from unmask.context.nes import candidates, summarize
from unmask.engine.edits import Gap, Hole, assemble, history_text, synthesize
from unmask.lsp.nes import apply_edits, history_diff, offset_of, position_of, segments_for

SRC = """import os


def load(path, mode):
    with open(path, mode) as fh:
        return fh.read()


def main():
    data = load("a.txt", "r")
    more = load("b.txt", "r")
    print(len(data), len(more))
"""

RENAME_DIFF = """--- a/x.py
+++ b/x.py
@@ -9,3 +9,3 @@
 def main():
-    data = load("a.txt", "r")
+    text = load("a.txt", "r")
     more = load("b.txt", "r")
"""


def test_summarize_finds_the_renamed_word_and_changed_signature():
    ed = summarize(RENAME_DIFF)
    assert ed.renames == [("data", "text", "local")]
    sig = summarize("@@ -1 +1 @@\n-def load(path, mode):\n+def load(path, mode, encoding):\n")
    assert sig.changed_defs == ["load"]


def test_rename_candidates_are_the_other_uses_not_the_edited_line():
    cur = SRC.replace('    data = load("a.txt"', '    text = load("a.txt"')
    line = cur.splitlines().index('    text = load("a.txt", "r")')
    off = offset_of(cur, line, len('    text = load("a.txt", "r")'))
    cs = candidates(cur, off, RENAME_DIFF)
    ren = [c for c in cs if c.kind == "rename"]
    assert [cur[c.start : c.end] for c in ren] == ["data"]
    assert cur.count("\n", 0, ren[0].start) == line + 2  # the print line
    assert ren[0].hint == "text"


def test_call_sites_of_a_changed_signature_come_from_the_syntax_tree():
    cur = SRC.replace("def load(path, mode):", "def load(path, mode, encoding):")
    diff = "@@ -4 +4 @@\n-def load(path, mode):\n+def load(path, mode, encoding):\n"
    off = offset_of(cur, 3, 30)
    calls = [cur[c.start : c.end] for c in candidates(cur, off, diff) if c.kind == "call"]
    assert calls == ['"a.txt", "r"', '"b.txt", "r"']  # not open(path, mode): another function


def test_positions_are_utf16_and_edits_apply():
    text = 'x = "😀"\ny = x\n'
    off = text.index("y")
    pos = position_of(text, text.index("x", 5))
    assert pos == {"line": 1, "character": 4}
    assert offset_of(text, 0, 7) == text.index('"', 5)  # the emoji is two UTF-16 units
    edits = [{"range": {"start": position_of(text, off), "end": position_of(text, off + 1)}, "text": "z"}]
    assert apply_edits(text, edits) == 'x = "😀"\nz = x\n'


def test_history_text_keeps_only_changed_lines():
    assert history_text(RENAME_DIFF) == '-    data = load("a.txt", "r")\n+    text = load("a.txt", "r")\n'


def test_synthesized_rename_examples_propagate_the_new_name():
    rng = random.Random(3)
    seen_rename = 0
    for _ in range(60):
        got = synthesize(SRC * 2, rng)
        if got is None:
            continue
        hist, segs = got
        assert hist.endswith("\n") and hist[0] in "+-"
        holes = [s for s in segs if isinstance(s, Hole)]
        assert holes
        if hist.startswith("-"):
            old_line, new_line = hist.splitlines()
            changed = set(summarize(f"{old_line}\n{new_line}\n").renames)
            if changed:
                seen_rename += 1
                old, new, _ = next(iter(changed))
                assert any(h.target == new for h in holes)  # at least one use becomes the new name
    assert seen_rename >= 10


def test_edit_layout_starts_with_the_history_and_marks_gaps(tok):
    segs = ["a = 1\n", Hole("b"), " = 2\n", Gap(), "c = ", Hole("d"), "\n"]
    ctx, pos, slot_pos, tgt, span_of = assemble(tok, "-x\n+y\n", segs, 384, lambda n: 8)
    sp = tok.specials
    assert ctx[0] == sp.edit and sp.file in ctx and sp.sep in ctx
    assert sorted(pos + slot_pos) == list(range(len(pos) + len(slot_pos)))  # one running position
    assert span_of == [0] * 8 + [1] * 8
    assert tok.decode(tgt[:8]) == "b" and tgt[7] == sp.eos


def test_holes_that_do_not_fit_are_left_out(engine):
    segs: list = []
    for i in range(80):
        segs += [f"value_{i} = compute(", Hole("x", 32), ")\n"]
    prep = engine.prepare_edit("-a\n+b\n", segs)
    assert 0 < len(prep.buckets) < 80
    text_tokens = sum(len(engine.tok.encode(p)) for p in prep.parts if p)  # the shipped (causal) engine's layout
    assert text_tokens + sum(prep.buckets) <= engine.window
    drafts = list(engine.stream_prepared(prep, steps=2))
    assert len(drafts[-1].texts) == len(prep.buckets)


def test_segments_put_one_hole_per_candidate_in_file_order():
    cur = SRC
    cs = candidates(cur, offset_of(cur, 9, 10), RENAME_DIFF)
    segs = segments_for(cur, cs, 9, lambda s: max(1, len(s) // 3))
    holes = [s for s in segs if isinstance(s, Hole)]
    assert [h.target for h in holes] == [cur[c.start : c.end] for c in sorted(cs, key=lambda c: c.start)]


@pytest.fixture(scope="module")
def engine():
    from unmask.engine.infill import Engine

    return Engine({"type": "onnx", "threads": 1, "path": proposing_model_dir()})  # the model path switched on


@pytest.fixture(scope="module")
def tok(engine):
    return engine.tok


def test_nes_cli_answers_every_line_and_reports_bad_ones(tmp_path):
    cur = SRC.replace('    data = load("a.txt"', '    text = load("a.txt"')
    rec = {"id": "r1", "path": "x.py", "current": cur, "cursor": {"line": 9, "character": 29}, "history": RENAME_DIFF}
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(rec) + "\n{not json\n" + json.dumps({"id": "r2", "current": 3}) + "\n")
    out = tmp_path / "out.jsonl"
    p = subprocess.run(
        [sys.executable, "-m", "unmask.lsp.cli", "nes", "--jsonl", str(src), "--out", str(out), "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1  # bad lines make the exit status non-zero
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 3
    assert rows[0]["id"] == "r1" and isinstance(rows[0]["edits"], list) and rows[0]["ms"] > 0
    for e in rows[0]["edits"]:
        assert set(e) == {"range", "text"} and set(e["range"]) == {"start", "end"}
    assert rows[1]["error"] and rows[2]["error"]
    assert "line 2" in p.stderr and "line 3" in p.stderr


def test_history_diff_reads_a_burst_of_keystrokes_as_one_edit():
    from unmask.lsp.completer import Edit

    text = SRC
    records = []
    at = text.index("data = load")
    # the user deletes "data" and types "text" one key at a time, then waits, then edits elsewhere
    t = 100.0
    for i in range(4):
        records.append(Edit(1, (0, 0), (0, 0), at + 3 - i, text[at + 3 - i], "", time=t))
        text = text[: at + 3 - i] + text[at + 4 - i :]
        t += 0.2
    for i, ch in enumerate("text"):
        records.append(Edit(1, (0, 0), (0, 0), at + i, "", ch, time=t))
        text = text[: at + i] + ch + text[at + i :]
        t += 0.2
    diff = history_diff(text, records, "x.py")
    assert '-    data = load("a.txt", "r")\n+    text = load("a.txt", "r")\n' in diff
    assert summarize(diff).renames == [("data", "text", "local")]
    # a later, separate edit (after a pause) is the history on its own
    at2 = text.index("import os") + len("import os")
    records.append(Edit(1, (0, 0), (0, 0), at2, "", ", sys", time=t + 10))
    text = text[:at2] + ", sys" + text[at2:]
    diff2 = history_diff(text, records, "x.py")
    assert "+import os, sys" in diff2 and "data" not in diff2
    # typed and deleted again: no history
    records2 = [Edit(1, (0, 0), (0, 0), 0, "", "x", time=1.0), Edit(1, (0, 0), (0, 0), 0, "x", "", time=1.1)]
    assert history_diff(SRC, records2) == ""


def test_synthesized_signature_changes_update_every_call_site():
    from unmask.engine.edits import synthesize_signature

    src = "def area(w, h, unit):\n    return w * h\n\n\nx = area(2, 3, 'm')\ny = area(4, 5, 'cm')\n"
    seen = set()
    for seed in range(40):
        got = synthesize_signature(src, random.Random(seed))
        assert got is not None
        hist, segs = got
        targets = [s.target for s in segs if isinstance(s, Hole)]
        assert hist.startswith("-def area(w, h, unit):\n+def area(")
        new_params = hist.splitlines()[1][len("+def area(") : -2]
        if "=None" in new_params:  # added keyword, passed through by every caller
            kw = new_params.split(", ")[-1].split("=")[0]
            assert targets == [f"2, 3, 'm', {kw}={kw}", f"4, 5, 'cm', {kw}={kw}"]
            seen.add("add")
        else:  # removed parameter: the same argument disappears from every call
            k = ["w", "h", "unit"].index(next(p for p in ["w", "h", "unit"] if p not in new_params.split(", ")))
            assert targets == [
                ", ".join(a for i, a in enumerate(["2", "3", "'m'"]) if i != k),
                ", ".join(a for i, a in enumerate(["4", "5", "'cm'"]) if i != k),
            ]
            seen.add("remove")
    assert seen == {"add", "remove"}


def test_a_rename_is_propagated_to_the_other_uses_and_nothing_else(engine):
    from unmask.lsp.nes import predict

    cur = SRC.replace('    data = load("a.txt"', '    text = load("a.txt"')
    res = predict(engine, cur, (9, 29), RENAME_DIFF, budget_ms=None, min_confidence=1.01)  # model gate shut
    assert apply_edits(cur, res.edits) == SRC.replace("data", "text")
    off = predict(engine, cur, (9, 29), RENAME_DIFF, budget_ms=None, min_confidence=1.01, rename_rule=False)
    assert off.edits == [] and off.considered  # the model was asked, and the closed gate kept it silent
    assert predict(engine, cur, (9, 29), "", budget_ms=None).edits == []  # no edit, no proposal


def test_syntax_veto_drops_only_the_proposal_that_breaks_the_file():
    from unmask.context.syntax import syntax_errors
    from unmask.lsp.nes import syntax_veto

    src = "def summarize(values):\n    total = 0\n    for v in values:\n        total += v\n    return total\n"

    def edit(line: int, c0: int, c1: int, text: str) -> dict:
        return {
            "range": {"start": {"line": line, "character": c0}, "end": {"line": line, "character": c1}},
            "text": text,
        }

    fine = edit(4, 11, 16, "total * 2")
    breaks_block = edit(2, 4, 20, "_is")  # the loop header replaced: its body is now an unexpected indent
    assert syntax_errors(src, "python") == 0 and syntax_errors(apply_edits(src, [breaks_block]), "python") == 1
    assert syntax_veto(src, [fine, breaks_block], "python") == [1]
    assert syntax_veto(src, [fine], "python") == []
    broken = src.replace("return total", "return (total")  # already invalid: only a further error is vetoed
    assert syntax_veto(broken, [edit(0, 4, 13, "total")], "python") == []
    js = "function f(a) {\n  return a;\n}\n"
    assert syntax_veto(js, [edit(1, 9, 10, "a +")], "javascript") == [0]  # tree-sitter for other languages
    assert syntax_veto("any text\n", [edit(0, 0, 3, "((")], None) == []  # no grammar: no veto


def test_a_change_is_replayed_on_lines_of_the_same_shape_where_it_carries_over():
    from unmask.context.nes import replay

    # an argument added to one call: the same argument at the other calls of that shape
    assert replay(
        'p.add_argument("--host")', 'p.add_argument("--host", default=None)', '    p.add_argument("--port")'
    ) == ('    p.add_argument("--port", default=None)')
    # a call replaced by another: names of the line itself are kept, attributes after a dot too
    assert replay("print(a)", "log.debug(a)", "        print(b)") == "        log.debug(b)"
    assert replay("x = foo(a)", "x = foo(a, a.x)", "y = foo(b)") == "y = foo(b, b.x)"
    # a line's own value changed: it says nothing about a different value elsewhere
    assert replay("retry(x, 3)", "retry(x, 5)", "retry(x, 4)") is None
    assert replay("f(x)", "f(y)", "f(z)") is None
    # another shape, or a name that stands for two: no replay
    assert replay("print(a)", "log.debug(a)", "print(a, b)") is None
    assert replay("f(a, a)", "g(a, a)", "f(b, c)") is None


def test_replayed_lines_are_shape_candidates_with_the_new_line_as_hint():
    src = "def f(a, b):\n    print(a)\n    print(b)\n    x = 1\n    print(x)\n"
    cur = src.replace("    print(a)", "    log.debug(a)")
    diff = "--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@\n def f(a, b):\n-    print(a)\n+    log.debug(a)\n     print(b)\n"
    cands = candidates(cur, cur.index("(a)\n") + 3, diff)
    assert [(c.kind, cur[c.start : c.end], c.hint) for c in cands] == [
        ("shape", "print(b)", "log.debug(b)"),
        ("shape", "print(x)", "log.debug(x)"),
    ]  # not "rename print -> log": the replayed line says the whole change
    # a signature change stays with its function: other defs of that shape are not replayed
    sig = "def a(self):\n    pass\ndef b(self):\n    pass\n"
    cur = sig.replace("def a(self):", "def a(self, x):")
    diff = "--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n-def a(self):\n+def a(self, x):\n     pass\n"
    assert not any(c.hint for c in candidates(cur, len("def a(self, x):"), diff))


def test_replayed_changes_are_proposed_without_the_model(engine):
    from unmask.lsp.nes import predict

    src = "def opts(p):\n    p.add('--host')\n    p.add('--port')\n    p.add('--user')\n    return p\n"
    cur = src.replace("p.add('--host')", "p.add('--host', default=None)")
    diff = (
        "--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@\n def opts(p):\n"
        "-    p.add('--host')\n+    p.add('--host', default=None)\n     p.add('--port')\n"
    )
    res = predict(engine, cur, (1, len("    p.add('--host', default=None)")), diff, budget_ms=None, min_confidence=1.01)
    assert apply_edits(cur, res.edits) == src.replace("')", "', default=None)")
    assert {c["rule"] for c in res.considered} == {"replay"}
    off = predict(
        engine, cur, (1, 33), diff, budget_ms=None, min_confidence=1.01, replay_rule=False
    )  # the model decides them, behind a closed gate: silence
    assert off.edits == [] and off.considered and not any(c["rule"] for c in off.considered)


def test_candidates_never_overlap_when_a_renamed_word_is_inside_a_changed_call():
    src = "def f(data, n):\n    return data\n\n\ndef g(data):\n    return f(data, 1)\n"
    cur = src.replace("def f(data, n):", "def f(payload, n):")
    diff = "--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n-def f(data, n):\n+def f(payload, n):\n     return data\n"
    cands = candidates(cur, len("def f(payload, n):"), diff)
    assert cands and all(a.end <= b.start for a, b in zip(cands, cands[1:]))  # edits must apply one by one


LOADER = """def load(path, mode="r"):
    return open(path, mode)


def main(xs):
    a = load("a.txt")
    b = load("b.txt", "w")
    c = load(path="c.txt", mode="rb")
    d = load(*xs)
    e = other.load("e.txt", "w")
"""


@pytest.mark.parametrize(
    "header, calls",
    [
        ('def load(path, mode="r", encoding="utf-8"):', []),  # a new default: no call changes
        (
            'def load(path, encoding, mode="r"):',  # a new required parameter: named at every call
            [
                ('"a.txt"', '"a.txt", encoding'),
                ('"b.txt", "w"', '"b.txt", encoding, "w"'),
                ('path="c.txt", mode="rb"', 'path="c.txt", encoding=encoding, mode="rb"'),
            ],
        ),
        ("def load(path):", [('"b.txt", "w"', '"b.txt"'), ('path="c.txt", mode="rb"', 'path="c.txt"')]),
        ('def load(filename, mode="r"):', [('path="c.txt", mode="rb"', 'filename="c.txt", mode="rb"')]),
        ('def load(path, *, mode="r"):', [('"b.txt", "w"', '"b.txt", mode="w"')]),
    ],
)
def test_a_changed_signature_rewrites_the_arguments_of_its_calls(header, calls):
    from unmask.context.signature import call_site_edits, signature_change

    cur = LOADER.replace('def load(path, mode="r"):', header)
    change = signature_change('def load(path, mode="r"):', header)
    # *xs cannot be bound, other.load is another function: both left alone
    edits = call_site_edits(cur, change)
    assert [(cur[a:b], new) for a, b, new in edits] == calls
    for a, b, new in reversed(edits):
        cur = cur[:a] + new + cur[b:]
    assert call_site_edits(cur, change) == []  # once done, the same edit history asks for nothing more


def test_a_method_signature_changes_its_calls_through_self_only():
    from unmask.context.signature import call_site_edits, signature_change

    src = "class A:\n    def step(self, n):\n        pass\n\n    def run(self):\n"
    src += "        self.step(1)\n        x.step(2)\n"
    cur = src.replace("def step(self, n):", "def step(self, n, dt):")
    change = signature_change("    def step(self, n):", "    def step(self, n, dt):")
    assert [(cur[a:b], new) for a, b, new in call_site_edits(cur, change)] == [("1", "1, dt")]
    assert signature_change("def f(a):", "def g(a):") is None  # a renamed function is a rename
    typed = signature_change("    def step(self, n):", "    def step(self, n: int):")  # parameters unchanged
    assert call_site_edits(src.replace("n):", "n: int):"), typed) == []
    assert signature_change("def f(a):", "x = 1") is None


def test_call_sites_of_a_changed_signature_are_proposed_without_the_model(engine):
    from unmask.lsp.nes import predict

    header = 'def load(path, mode="r", *, strict):'
    cur = LOADER.replace('def load(path, mode="r"):', header)
    diff = (
        "--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n"
        f'-def load(path, mode="r"):\n+{header}\n     return open(path, mode)\n'
    )
    res = predict(engine, cur, (0, len(header)), diff, budget_ms=None, min_confidence=1.01)
    assert [c["rule"] for c in res.considered if c["kind"] == "call"] == ["signature"] * 3
    assert apply_edits(cur, res.edits) == cur.replace('.txt")', '.txt", strict=strict)').replace(
        '"w")\n    c', '"w", strict=strict)\n    c'
    ).replace('mode="rb")', 'mode="rb", strict=strict)')


def test_a_rename_starts_where_the_name_is_defined_and_reaches_its_uses_in_code_only():
    from unmask.context.nes import binding

    assert [binding("total", "    total += v"), binding("x", "self.x = x"), binding("os", "import os")] == [
        "local",
        "attribute",
        "import",
    ]
    assert binding("foo", "    y = foo()") is None and binding("a", "if a == b:") is None
    src = (
        "def total(xs):\n"
        "    data = list(xs)  # the data\n"
        "    return sum(data), f'{data}', 'data'\n"
        "\n\n"
        "def other(data):\n"
        "    return data\n"
        "\n\n"
        "print(total(xs=[1]))\n"
    )

    def renamed(old_line: str, new_line: str) -> list[str]:
        cur = src.replace(old_line, new_line, 1)
        diff = f"--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n-{old_line}\n+{new_line}\n"
        at = cur.index(new_line) + len(new_line)
        return [f"{cur.count(chr(10), 0, c.start)}:{c.hint}" for c in candidates(cur, at, diff) if c.kind == "rename"]

    # a local: its uses in code in its function (f-string code too); not the comment, the string, other()'s data
    assert renamed("    data = list(xs)  # the data", "    items = list(xs)  # the data") == ["2:items", "2:items"]
    # a parameter: its uses in the function and its keyword at the calls
    assert renamed("def total(xs):", "def total(values):") == ["1:values", "9:values"]
    # a word changed where it is used is not a rename: other uses stay
    assert renamed("    return data", "    return data2") == []
