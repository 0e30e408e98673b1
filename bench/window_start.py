"""Typing with the context cut to the window: its start at an anchor, or at the first place that fits.

    python bench/window_start.py                          # 2 rounds x 24 keystrokes per document and mode
    python bench/window_start.py --rounds 1 --keys 12

The model's context cache holds only while the context's start stays where it was. Cut at the
first line start that fits the budget, the start moved down a line whenever typing pushed the text
over it (in an ordinary file, about one keystroke in ten), and on a line longer than the window
(minified code), counted back from the cursor, it moved with every keystroke; each move prefilled
the whole window again. Anchored (``engine/anchor.py``), the start stays put until typing pushes it
past an anchor line, or in one long line a content-defined anchor. And sized by the span's bucket,
the context changed whenever the bucket did (a new line's first keystrokes take it from a block, 64
slots, to a line, 32 then 16); the window now keeps room for 64 slots whatever the bucket.

Three documents: a real 356-line Python file (tests/fixtures/real/sources.py.txt) with a new line
typed at line 300, a 60 KB bundle-like line that does not repeat, and the 2 MB repeating line of
tests/test_bad_input.py, typed at its end. After each of ``--keys`` keystrokes the context is
gathered (``gather_context`` with prefix and suffix, the model's tokenizer and window as the server
uses them) and the shipped model asked for a single-line completion with the product's 250 ms
budget. Three modes, their order alternating per round, in one process, each round on a fresh cache
namespace: ``before`` (the anchor functions replaced, in both places they are used, by the first
line start at or after the cut, and the cut itself; the room sized by the bucket), ``anchored cut``
(anchors, room by the bucket) and ``anchored, fixed room`` (the product). Reported per document and
mode: the median and p90 time per keystroke to the answer and to the first draft (context + model;
the first draft is what a streaming editor can show first, and what a prefill delays), and the
tokens prefilled per keystroke. CPU flags are printed; pause other work (training) while it runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from cpuinfo import cpu_flags  # bench/ is on sys.path when a bench script runs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
LINE = "    merged = sorted(set(names) | set(extra), key=lambda n: (len(n), n))\n    return merged[: limit]"


def first_line_start(text: str, start: int) -> int | None:
    """The cut before anchors: the first line start at or after ``start`` (None in one long line)."""
    if start <= 0 or text[start - 1] == "\n":
        return max(start, 0)
    nl = text.find("\n", start)
    return nl + 1 if nl >= 0 else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--keys", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=str(ROOT / "bench" / "plots" / "window_start.json"))
    args = ap.parse_args(argv)

    import numpy as np
    from test_context_windowed import MINIFIED, minified_line

    import unmask.context.pack as pack
    import unmask.engine.causal as causal
    import unmask.lsp.repo as repo
    from unmask.context import ContextConfig, ParsedDocument, gather_context
    from unmask.context.spans import SpanConfig, select_span
    from unmask.engine.anchor import stable_line_start, stable_start
    from unmask.engine.infill import BLOCK_BUCKET, Engine
    from unmask.engine.runtime import backend_config

    print(f"cpu flags: {cpu_flags()}", flush=True)
    eng = Engine(backend_config("onnx", None, args.threads))
    eng.warmup()

    def count(s: str) -> int:
        return len(eng.tok.encode(s))

    real = (ROOT / "tests" / "fixtures" / "real" / "sources.py.txt").read_text().split("\n")
    docs = {  # name -> (text before the cursor, after it, what is typed there)
        "356-line Python file": ("\n".join(real[:300]) + "\n", "\n" + "\n".join(real[300:]), LINE),
        "60 KB bundle line": (minified_line(60_000), "", "+g(h,i)*j-k;l=m" * 4),
        "2 MB repeating line": (MINIFIED, "", "+g(h,i)*j-k;l=m" * 4),
    }
    modes = {  # (line cut, long-line cut, slots the window keeps for the hole whatever its bucket)
        "before": (first_line_start, lambda text, start: start, 0),
        "anchored cut": (stable_line_start, stable_start, 0),
        "anchored, fixed room": (stable_line_start, stable_start, BLOCK_BUCKET),  # the product
    }

    def use(mode: str) -> None:
        line_cut, long_cut, slots = modes[mode]
        pack.stable_line_start = causal.stable_line_start = line_cut
        pack.stable_start = causal.stable_start = long_cut
        repo.ROOM_SLOTS = causal.ROOM_SLOTS = slots  # both modules' names for engine.infill.ROOM_SLOTS

    samples: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in range(args.rounds):
        for mode in list(modes) if r % 2 == 0 else list(modes)[::-1]:
            use(mode)
            for name, (head, tail, typed) in docs.items():
                got = samples.setdefault((name, mode), {"ms": [], "first": [], "prefilled": []})
                ns = f"{name}/{mode}/{r}"
                for k in range(args.keys + 1):
                    before = head + typed[:k]
                    doc = ParsedDocument(before + tail, None)  # plain text: the same for both modes
                    t = time.perf_counter()
                    line, col = before.count("\n"), len(before) - (before.rfind("\n") + 1)
                    span = select_span(doc, line, col, SpanConfig())
                    budget = repo.context_budget(eng.window, span.bucket)
                    cfg = ContextConfig(budget=budget, sources=frozenset({"prefix", "suffix"}))
                    res = gather_context(doc, line, col, config=cfg, count_tokens=count, span=span)
                    pieces, buckets = res.engine_pieces()
                    filled = eng.stats.as_dict()["prefilled_tokens"]
                    first = None
                    for _ in eng.stream_holes(pieces, buckets, budget_ms=250, one_line=True, cache=ns):
                        first = first or (time.perf_counter() - t) * 1000  # the first draft an editor could show
                    if k:  # the first request of a round fills the cache: not a keystroke
                        got["ms"].append((time.perf_counter() - t) * 1000)
                        got["first"].append(first)
                        got["prefilled"].append(eng.stats.as_dict()["prefilled_tokens"] - filled)
    use("anchored, fixed room")
    rows = []
    for (name, mode), got in samples.items():
        rows.append(
            {
                "document": name,
                "mode": mode,
                "keystrokes": len(got["ms"]),
                "p50_ms": round(statistics.median(got["ms"]), 1),
                "p90_ms": round(float(np.percentile(got["ms"], 90)), 1),
                "first_draft_p50_ms": round(statistics.median(got["first"]), 1),
                "first_draft_p90_ms": round(float(np.percentile(got["first"], 90)), 1),
                "first_draft_max_ms": round(max(got["first"]), 1),
                "prefilled_per_keystroke": round(statistics.mean(got["prefilled"]), 1),
                "full_prefills": sum(n > 64 for n in got["prefilled"]),
            }
        )
    cmd = "python bench/window_start.py " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(args.json).write_text(json.dumps({"command": cmd, "cpu_flags": cpu_flags(), "rows": rows}, indent=1))
    print("\n| document | window start | keystrokes | answer p50 ms | p90 | first draft p50 ms | p90 | max |", end="")
    print(" prefilled/keystroke | over 64 prefilled |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(rows, key=lambda r: (r["document"], r["mode"])):
        print(
            f"| {r['document']} | {r['mode']} | {r['keystrokes']} | {r['p50_ms']} | {r['p90_ms']} | "
            f"{r['first_draft_p50_ms']} | {r['first_draft_p90_ms']} | {r['first_draft_max_ms']} | "
            f"{r['prefilled_per_keystroke']} | {r['full_prefills']} |"
        )


if __name__ == "__main__":
    main()
