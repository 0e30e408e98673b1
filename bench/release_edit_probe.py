"""Does the model carry a real edit on? A margin probe on held-out release edits (never ../shared/eval).

    python -m unmask.engine.release_edits diff          # writes data/release_edits/heldout-*.jsonl
    python bench/release_edit_probe.py --n 120           # the base model (or --model DIR: an adapted one)

Examples: the held-out packages' release edits (:mod:`unmask.engine.release_edits`) with one
hunk of history. For each hunk left to predict, the request is laid out exactly as the server
lays out a next-edit request for the causal engine: the file excerpts of
``unmask.lsp.nes.segments_for`` (the seed edit's lines and the hunk's, ``EXCERPT_LINES`` around
each, gaps between) with the hunk's lines as the hole, and the history as comments in front
(``CausalEngine.prepare_edit`` on ``history_text``). Teacher-forced (``CausalEngine._logprob``):

    margin = log P(new text + next line | context) - log P(text there now + next line | context)

(the next line after the hunk is scored on both sides, so a pure insertion or deletion compares
two continuations of the same length of file). A model that follows the edit has margin > 0,
and a larger one when it sees the history than when the history is left out.

Printed: examples and hunks, the share of hunks with a positive margin and the mean (and median)
margin, with and without the history, and how often the history raised the margin. ``--out``
appends the record as a JSON line: one point of the learning curve of the margin.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def hunk_requests(ex: dict, n_tokens, max_hunks: int):
    """(segments, next line, hunk) for each hunk left to predict (the first ``max_hunks``)."""
    from unmask.context.nes import Candidate
    from unmask.engine.edits import Hole
    from unmask.lsp import nes

    text = ex["current"]
    starts = [0]
    for ln in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(ln))
    for r in ex["remaining"][:max_hunks]:
        a, b = starts[r["start_line"]], starts[r["end_line"]]
        segs = nes.segments_for(text, [Candidate(a, b, "near")], ex["cursor"]["line"], n_tokens)
        holes = [s for s in segs if isinstance(s, Hole)]
        if len(holes) != 1:
            continue
        after = text[b:]
        nxt = after.split("\n", 1)[0] + ("\n" if "\n" in after else "")
        yield segs, nxt, r


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("data/release_edits"))
    ap.add_argument("--split", default="heldout")
    ap.add_argument("--n", type=int, default=120, help="examples")
    ap.add_argument("--hunks", type=int, default=3, help="hunks scored per example (the first ones)")
    ap.add_argument("--excerpt-lines", type=int, default=None, help="lines around each hole (default: the server's)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="append the record (JSON line) here")
    args = ap.parse_args(argv)

    from unmask.engine.edits import history_text
    from unmask.engine.infill import Engine
    from unmask.engine.release_edits import iter_examples
    from unmask.engine.runtime import backend_config
    from unmask.lsp import nes

    if args.excerpt_lines is not None:
        nes.EXCERPT_LINES = args.excerpt_lines
    exs = [e for e in iter_examples(args.data, args.split) if e["n_history"] == 1]
    random.Random(args.seed).shuffle(exs)
    exs = exs[: args.n]
    eng = Engine(backend_config("onnx", args.model, args.threads))
    if not hasattr(eng, "_logprob"):
        sys.exit("the probe scores with the causal engine (CausalEngine._logprob)")

    def n_tokens(s: str) -> int:
        return len(eng.tok.encode(s))

    def margin(hist: str, segs: list, nxt: str, r: dict) -> float | None:
        try:
            prep = eng.prepare_edit(hist, segs)
        except ValueError:  # the hole does not fit the window
            return None
        i = prep.parts.index(None)
        before = "".join(p for p in prep.parts[:i])
        return eng._logprob(before, r["new_text"] + nxt) - eng._logprob(before, r["old_text"] + nxt)

    t0 = time.perf_counter()
    rows = []
    used = set()
    for e_i, ex in enumerate(exs):
        hist = history_text(ex["history"])
        for segs, nxt, r in hunk_requests(ex, n_tokens, args.hunks):
            m1, m0 = margin(hist, segs, nxt, r), margin("", segs, nxt, r)
            if m1 is None or m0 is None:
                continue
            kind = "insert" if not r["old_text"] else "delete" if not r["new_text"] else "replace"
            rows.append((m1, m0, kind, ex.get("window") is None))
            used.add(ex["id"])
        print(
            f"\r{e_i + 1}/{len(exs)} examples, {len(rows)} hunks, {time.perf_counter() - t0:.0f}s",
            end="",
            file=sys.stderr,
        )
    print(file=sys.stderr)
    if not rows:
        sys.exit("no hunk scored")
    m1 = np.array([r[0] for r in rows])
    m0 = np.array([r[1] for r in rows])
    rec = {
        "model": args.model or "default",
        "split": args.split,
        "examples": len(used),
        "hunks": len(rows),
        "excerpt_lines": nes.EXCERPT_LINES,
        "positive_with_history": round(float((m1 > 0).mean()), 3),
        "positive_without_history": round(float((m0 > 0).mean()), 3),
        "mean_margin_with_history": round(float(m1.mean()), 3),
        "mean_margin_without_history": round(float(m0.mean()), 3),
        "median_margin_with_history": round(float(np.median(m1)), 3),
        "median_margin_without_history": round(float(np.median(m0)), 3),
        "history_raised_margin": round(float((m1 > m0).mean()), 3),
        "by_kind": {
            k: {
                "hunks": int(sum(r[2] == k for r in rows)),
                "positive_with_history": round(float(np.mean([r[0] > 0 for r in rows if r[2] == k])), 3),
                "mean_gain_from_history": round(float(np.mean([r[0] - r[1] for r in rows if r[2] == k])), 3),
            }
            for k in ("replace", "insert", "delete")
            if any(r[2] == k for r in rows)
        },
        "whole_changes": {  # hunks of changes taken whole (not windows of a bigger release diff)
            "hunks": int(sum(r[3] for r in rows)),
            "positive_with_history": round(float(np.mean([r[0] > 0 for r in rows if r[3]] or [np.nan])), 3),
            "mean_gain_from_history": round(float(np.mean([r[0] - r[1] for r in rows if r[3]] or [np.nan])), 3),
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(rec, indent=1))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
