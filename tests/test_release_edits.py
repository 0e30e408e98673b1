"""Next-edit data from released versions (engine/release_edits.py) on tiny local fixture releases, no network.

Cutting a change into (history, current, remaining) in shared/eval/nes's schema, hunk application,
decontamination (excluded packages, vendored paths, eval paths, file and hunk hashes, duplicates)
and the split by package.
"""

from __future__ import annotations

import gzip
import json
import random
import zipfile
from pathlib import Path

from unmask.engine import release_edits as re_

BEFORE = """import os


def area(w, h):
    return w * h


def perimeter(w, h):
    return 2 * (w + h)


def describe(w, h):
    a = area(w, h)
    p = perimeter(w, h)
    return f"{a} {p}"
"""

AFTER = """import os
import math


def area(width, h):
    return width * h


def perimeter(w, h):
    return 2 * (w + h)


def describe(w, h):
    a = area(width=w, h=h)
    p = perimeter(w, h)
    return f"{a} {p} {math.pi}"
"""


def test_cut_matches_eval_schema():
    ex = re_.cut("pkg/geo.py", BEFORE, AFTER, 1)
    assert ex["n_remaining"] == len(ex["remaining"]) >= 2
    # the history is the first hunk as a unified diff; applying it gives current
    assert ex["history"].startswith("--- a/pkg/geo.py\n+++ b/pkg/geo.py\n@@ ")
    assert re_.diff_hunks(ex["history"]) == [("", "import math\n")]
    assert ex["current"] == BEFORE.replace("import os\n", "import os\nimport math\n", 1)
    # remaining ranges are lines of current; old_text is exactly there; applying them gives the new file
    lines = ex["current"].splitlines(keepends=True)
    for r in ex["remaining"]:
        assert "".join(lines[r["start_line"] : r["end_line"]]) == r["old_text"]
    assert re_.apply_remaining(ex["current"], ex["remaining"]) == AFTER
    assert ex["cursor"] == {"line": 1, "character": len("import math")}
    # two hunks of history: the cursor is at the end of the second one
    ex2 = re_.cut("pkg/geo.py", BEFORE, AFTER, 2)
    assert re_.apply_remaining(ex2["current"], ex2["remaining"]) == AFTER
    assert ex2["n_remaining"] == ex["n_remaining"] - 1
    assert len(re_.diff_hunks(ex2["history"])) == 2


def test_hunk_application_random():
    rng = random.Random(0)
    words = ["a = 1\n", "b = 2\n", "\n", "def f():\n", "    pass\n", "return x\n", "# c\n"]
    for _ in range(200):
        a = [rng.choice(words) for _ in range(rng.randrange(0, 15))]
        b = list(a)
        for _ in range(rng.randrange(1, 5)):
            i = rng.randrange(0, len(b) + 1)
            if rng.random() < 0.5 and i < len(b):
                del b[i]
            else:
                b.insert(i, rng.choice(words))
        hunks = re_.hunks_of(a, b)
        assert re_.apply_hunks(a, hunks) == b
        for k in range(1, len(hunks)):
            ex = re_.cut("x.py", "".join(a), "".join(b), k, hunks)
            assert re_.apply_remaining(ex["current"], ex["remaining"]) == "".join(b)
            assert ex["current"] == "".join(re_.apply_hunks(a, hunks[:k]))


def test_formatting_only():
    assert re_.formatting_only("x = (1,\n  2)\n", "x = (1, 2)\n")
    assert not re_.formatting_only("x = 1  # a\n", "x = 1  # b\n")
    assert not re_.formatting_only("x = 1\n", "x = 2\n")


def _wheel(d: Path, name: str, version: str, files: dict[str, str]) -> str:
    fn = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(d / fn, "w") as z:
        for p, t in files.items():
            z.writestr(p, t)
        z.writestr(f"{name}-{version}.dist-info/METADATA", "Name: x\n")
    return fn


def _package(root: Path, name: str, versions: list[dict[str, str]]) -> None:
    d = root / name
    d.mkdir(parents=True)
    vs = [f"1.{i}" for i in range(len(versions))]
    files = {v: _wheel(d, name, v, f) for v, f in zip(vs, versions)}
    (d / "manifest.json").write_text(json.dumps({"order": vs[::-1], "files": files}))


def _variant(tag: str) -> tuple[str, str]:
    """A before/after pair of three hunks, distinct per tag."""
    return BEFORE.replace("describe", f"describe_{tag}"), AFTER.replace("math", f"m_{tag}")


def test_build_decontaminates_and_splits(tmp_path: Path):
    rel, out, ev = tmp_path / "releases", tmp_path / "out", tmp_path / "eval"
    ev.mkdir()
    names = ["alpha", "beta", "gamma", "delta", "eps"]
    train_p, held_p = re_.split_packages(names, 0.4)
    assert (train_p, held_p) == re_.split_packages(list(reversed(names)), 0.4)  # deterministic
    assert len(held_p) == 2 and not set(train_p) & set(held_p)

    # an eval example: its path, its file text and one of its hunks are off limits
    eb, ea = _variant("evalfile")
    hunk_old = "def area(w, h):\n    return w * h  # the eval's own hunk, long enough\n"
    hunk_new = "def area(width, h):\n    return width * h  # the eval's own hunk, long enough\n"
    hb, ha = f"x = 0\n{hunk_old}y = 1\nz = 1\n", f"x = 0\n{hunk_new}y = 1\nz = 2\n"
    ev_ex = {
        "id": "o/r:c:src/ev/path.py",
        "path": "src/ev/path.py",
        "before": eb,
        "current": eb,
        "target": ea,
        "history": "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-import os\n+import sys\n",
        "remaining": [{"start_line": 3, "end_line": 5, "old_text": hunk_old, "new_text": hunk_new}],
    }
    with gzip.open(ev / "x.jsonl.gz", "wt") as f:
        f.write(json.dumps(ev_ex) + "\n")

    clean = {t: _variant(t) for t in names}
    shared = _variant("shared")  # the same change in a held-out and a train package
    for n in names:
        b, a = clean[n]
        v0 = {f"{n}/mod.py": b, f"{n}/shared.py": shared[0]}
        v1 = {f"{n}/mod.py": a, f"{n}/shared.py": shared[1]}
        if n == train_p[0]:
            v0 |= {f"{n}/_vendor/requests/api.py": b, "ev/path.py": b, f"{n}/e.py": eb, f"{n}/h.py": hb}
            v1 |= {f"{n}/_vendor/requests/api.py": a, "ev/path.py": a, f"{n}/e.py": ea, f"{n}/h.py": ha}
        _package(rel, n, [v0, v1, v1])  # the third release changes nothing
    _package(rel, "flask", [{"flask/app.py": clean["alpha"][0]}, {"flask/app.py": clean["alpha"][1]}])

    st = re_.build(rel, out, ev, re_.Bounds(max_history=1), heldout_share=0.4, log=lambda *_: None)
    assert st["dropped"] == {
        "duplicate": 4,
        "eval_file": 1,
        "eval_hunk": 1,
        "eval_path": 1,
        "package": 1,
        "vendored": 1,
    }
    assert st["eval_examples_indexed"] == 1
    assert set(st["heldout_packages"]) == set(held_p) and "flask" not in st["heldout_packages"]

    held = list(re_.iter_examples(out, "heldout"))
    train = list(re_.iter_examples(out, "train"))
    assert {e["package"] for e in held} == set(held_p)
    assert {e["package"] for e in train} == set(train_p)
    # the shared change was cut once, in the held-out package that came first
    assert sum(e["path"].endswith("shared.py") for e in held + train) == 1
    assert not any(e["path"].endswith("shared.py") for e in train)
    blob = json.dumps(train + held)
    assert "evalfile" not in blob and "evalhunk" not in blob and "requests" not in blob
    for e in train + held:
        assert e["n_history"] == 1 and e["from"] == "1.0" and e["to"] == "1.1"
        b, a = (_variant(e["package"])) if e["path"].endswith("mod.py") else shared
        assert re_.apply_remaining(e["current"], e["remaining"]) == a
    assert json.loads((out / "stats.json").read_text())["examples"] == {"train": len(train), "heldout": len(held)}


def test_read_release_sdist(tmp_path: Path):
    import io
    import tarfile

    p = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(p, "w:gz") as t:
        for name, data in (("pkg-1.0/src/pkg/a.py", b"x = 1\n"), ("pkg-1.0/README", b"r"), ("pkg-1.0/b.py", b"\xff")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    assert re_.read_release(p) == {"src/pkg/a.py": "x = 1\n"}  # non-UTF-8 and non-.py files left out


def test_windows_of_a_big_change(tmp_path: Path):
    # 12 one-line hunks, the 8th is big: windows of at most 4 small consecutive hunks, none across the big one
    a = [f"x{i} = {i}\n" for i in range(60)]
    b = list(a)
    for i in range(0, 60, 5):
        b[i] = f"x{i} = {i} + 1\n"
    b[35:36] = [f"big{j} = {j}\n" for j in range(9)]
    hunks = re_.hunks_of(a, b)
    assert len(hunks) == 12
    bd = re_.Bounds(max_hunks=4)
    assert re_.windows(hunks, bd) == [(0, 4), (4, 7), (8, 12)]
    assert re_.windows(hunks, re_.Bounds(max_hunks=4, min_hunks=4)) == [(0, 4), (8, 12)]

    rel, out = tmp_path / "releases", tmp_path / "out"
    _package(rel, "pkg", [{"pkg/m.py": "".join(a)}, {"pkg/m.py": "".join(b)}])
    st = re_.build(rel, out, None, bd, heldout_share=0, log=lambda *_: None)
    assert st["out_of_bounds"] == {"hunks>max": 1} and st["windows_kept"] == 3 and st["changes_kept"] == 0
    exs = list(re_.iter_examples(out, "train"))
    assert sorted({tuple(e["window"]) for e in exs}) == [(0, 4), (4, 7), (8, 12)]
    for e in exs:  # a window's examples end at the window's last hunk; the big hunk is applied after (8, 12)'s start
        w0, w1 = e["window"]
        end = "".join(re_.apply_hunks(a, hunks[:w1]))
        assert re_.apply_remaining(e["current"], e["remaining"]) == end
        assert e["n_history"] + e["n_remaining"] == w1 - w0


def test_edit_prompt_is_the_servers_layout():
    """The training prompt (engine side) equals what the server builds for the causal engine (lsp side)."""
    from types import SimpleNamespace

    from unmask.context.nes import Candidate
    from unmask.engine.causal import CausalEngine
    from unmask.engine.edits import history_text
    from unmask.lsp import nes

    assert nes.EXCERPT_LINES == re_.EXCERPT_LINES
    stub = SimpleNamespace(comment="#", window=10**6, tok=SimpleNamespace(encode=lambda s: list(s.encode())))
    long_after = AFTER.replace('    return f"{a} {p} {math.pi}"\n', "".join(f"    x{i} = {i}\n" for i in range(20)))
    long_after += "    return math.pi\n"
    long_before = BEFORE.replace('    return f"{a} {p}"\n', "".join(f"    x{i} = {i}\n" for i in range(20)))
    long_before += "    return 0\n"
    n = 0
    for before, after in ((BEFORE, AFTER), (long_before, long_after)):
        for k in (1, 2):
            ex = re_.cut("pkg/geo.py", before, after, k)
            text = ex["current"]
            starts = [0]
            for ln in text.splitlines(keepends=True):
                starts.append(starts[-1] + len(ln))
            for r, h in enumerate(ex["remaining"]):
                cand = Candidate(starts[h["start_line"]], starts[h["end_line"]], "near")
                segs = nes.segments_for(text, [cand], ex["cursor"]["line"], len)
                prep = CausalEngine.prepare_edit(stub, history_text(ex["history"]), segs)
                want = "".join(prep.parts[: prep.parts.index(None)])
                got = re_.edit_prompt(ex, r)
                assert got == (want, h["new_text"])
                n += 1
    assert n >= 6
