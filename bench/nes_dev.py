"""Choose the next-edit confidence gate on held-out synthetic edits (never on ../shared/eval).

    python bench/nes_dev.py --n 200

Files come from the corpus' validation split (the first 1% of data/corpus.jsonl, which
training never sees). Two kinds of cases per file:

* rename: a name used on several lines is renamed on its first line (the edit); the right
  answer renames every other use;
* no-op: a line is duplicated as the edit (an unrelated change); the right answer is silence.

Every candidate the system considers is scored with the gate off, then the gate that
maximises F0.5 over (rename uses changed correctly) vs (anything proposed wrongly) is
printed with a precision/recall table. It only measures; the chosen value is copied by
hand into ``lsp/nes.py`` (DEFAULT_MIN_CONFIDENCE) with the command in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import difflib
import json
import keyword
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]{2,}\b")


def val_docs(corpus: Path, n_docs: int) -> list[str]:
    docs = [json.loads(x)["text"] for x in open(corpus, encoding="utf-8")]
    n_val = max(20, len(docs) // 100)  # engine/train.py's split
    return docs[:n_val][: n_docs * 4]


def rename_case(text: str, rng: random.Random) -> dict | None:
    from unmask.engine.edits import new_name

    lines = text.splitlines(keepends=True)
    if not 20 <= len(lines) <= 600:
        return None
    uses: dict[str, set[int]] = {}
    for i, ln in enumerate(lines):
        if ln.lstrip().startswith("#"):
            continue
        for m in IDENT.finditer(ln):
            uses.setdefault(m.group(), set()).add(i)
    names = [w for w, ls in uses.items() if 2 <= len(ls) <= 8 and not w.startswith("__") and not keyword.iskeyword(w)]
    if not names:
        return None
    old = rng.choice(names)
    new = new_name(old, list(uses), rng)
    if new == old or new in uses:
        return None
    first = min(uses[old])
    pat = re.compile(rf"\b{re.escape(old)}\b")
    cur = lines[:]
    cur[first] = pat.sub(new, lines[first])
    target = "".join(pat.sub(new, ln) for ln in lines)
    diff = "".join(difflib.unified_diff(lines, cur, "a/f.py", "b/f.py", n=3))
    body = cur[first].rstrip("\n")
    due = sum(len(pat.findall(ln)) for k, ln in enumerate(lines) if k != first)
    return {
        "current": "".join(cur),
        "target": target,
        "history": diff,
        "cursor": (first, len(body)),
        "old": old,
        "new": new,
        "due": due,
    }


def noop_case(text: str, rng: random.Random) -> dict | None:
    lines = text.splitlines(keepends=True)
    if not 20 <= len(lines) <= 600:
        return None
    i = rng.randrange(len(lines))
    if not lines[i].strip():
        return None
    cur = lines[: i + 1] + [lines[i]] + lines[i + 1 :]
    diff = "".join(difflib.unified_diff(lines, cur, "a/f.py", "b/f.py", n=3))
    return {"current": "".join(cur), "target": "".join(cur), "history": diff, "cursor": (i + 1, len(lines[i].rstrip()))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="cases of each kind")
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus.jsonl"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from unmask.engine.infill import Engine
    from unmask.engine.runtime import backend_config
    from unmask.lsp import nes

    eng = Engine(backend_config("onnx", args.model, args.threads))
    rng = random.Random(args.seed)
    docs = val_docs(args.corpus, args.n)
    good: list[float] = []  # confidence of correct proposals
    bad: list[float] = []  # confidence of wrong proposals (wrong text, or any change in a no-op case)
    due = 0  # uses that should change
    for kind, make in (("rename", rename_case), ("noop", noop_case)):
        made = 0
        for d in docs:
            if made >= args.n:
                break
            case = make(d, rng)
            if case is None:
                continue
            made += 1
            res = nes.predict(eng, case["current"], case["cursor"], case["history"], budget_ms=None, min_confidence=0.0)
            due += case.get("due", 0)
            for c in res.considered:
                if not c["proposed"].strip() or c["proposed"].strip() == c["now"].strip():
                    continue  # not a change: never shown
                right = kind == "rename" and c["now"] == case["old"] and c["proposed"].strip() == case["new"]
                (good if right else bad).append(c["confidence"])
        print(f"{kind}: {made} cases", file=sys.stderr)
    print(f"uses due: {due}; changed correctly (any confidence): {len(good)}; wrong changes: {len(bad)}")
    best = (0.0, 1.0)
    print("gate  recall  precision  F0.5")
    for g in [x / 20 for x in range(0, 20)]:
        tp = sum(c >= g for c in good)
        fp = sum(c >= g for c in bad)
        r = tp / max(1, due)
        p = tp / max(1, tp + fp)
        f = 1.25 * p * r / max(1e-9, 0.25 * p + r)
        print(f"{g:4.2f}  {r:6.3f}  {p:9.3f}  {f:5.3f}")
        if f > best[0]:
            best = (f, g)
    print(f"best gate {best[1]:.2f} (F0.5 {best[0]:.3f})")


if __name__ == "__main__":
    main()
