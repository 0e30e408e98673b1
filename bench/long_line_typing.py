"""Typing at the end of a line longer than the model's window: the window's start anchored or counted back.

    python bench/long_line_typing.py                      # 2 rounds x 24 keystrokes per document and mode
    python bench/long_line_typing.py --rounds 1 --keys 12

Minified code has no line start to cut the context at. Counted back from the cursor, the cut moved
with every keystroke and the model prefilled its whole window again each time; anchored
(``engine/anchor.py``), it stays put until typing pushes it past a content-defined anchor. This
types ``--keys`` characters at the end of two one-line documents (a 60 KB bundle-like line that
does not repeat, and the 2 MB repeating one of tests/test_bad_input.py), and after each keystroke
gathers the context (``gather_context``, the model's tokenizer and window as the server uses them)
and asks the shipped model for a single-line completion with the product's 250 ms budget. Modes
alternate per round in one process (the old mode: ``stable_start`` replaced by the identity in both
places it is used), each round on a fresh cache namespace. Reported per document and mode: the
median and p90 time per keystroke (context + model) and the tokens prefilled per keystroke. CPU
flags are printed; pause other work (training) while it runs.
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--keys", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=str(ROOT / "bench" / "plots" / "long_line_typing.json"))
    args = ap.parse_args(argv)

    import numpy as np
    from test_context_windowed import MINIFIED, minified_line

    import unmask.context.pack as pack
    import unmask.engine.causal as causal
    from unmask.context import ContextConfig, ParsedDocument, gather_context
    from unmask.context.spans import SpanConfig, select_span
    from unmask.engine.anchor import stable_start
    from unmask.engine.infill import Engine
    from unmask.engine.runtime import backend_config

    print(f"cpu flags: {cpu_flags()}", flush=True)
    eng = Engine(backend_config("onnx", None, args.threads))
    eng.warmup()

    def count(s: str) -> int:
        return len(eng.tok.encode(s))

    docs = {"60 KB bundle line": minified_line(60_000), "2 MB repeating line": MINIFIED}
    typed = "+g(h,i)*j-k;l=m" * 4
    modes = {"anchored": stable_start, "counted back": lambda text, start: start}
    samples: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in range(args.rounds):
        for mode in list(modes) if r % 2 == 0 else list(modes)[::-1]:
            pack.stable_start = causal.stable_start = modes[mode]
            for name, text in docs.items():
                got = samples.setdefault((name, mode), {"ms": [], "prefilled": []})
                ns = f"{name}/{mode}/{r}"
                for k in range(args.keys + 1):
                    doc = ParsedDocument(text + typed[:k], None)  # over the tree limit or not, as plain text
                    t = time.perf_counter()
                    col = len(doc.text)
                    span = select_span(doc, 0, col, SpanConfig())
                    cfg = ContextConfig(budget=eng.window - 1 - span.bucket - 4)
                    res = gather_context(doc, 0, col, config=cfg, count_tokens=count, span=span)
                    pieces, buckets = res.engine_pieces()
                    before = eng.stats.as_dict()["prefilled_tokens"]
                    list(eng.stream_holes(pieces, buckets, budget_ms=250, one_line=True, cache=ns))
                    if k:  # the first request of a round fills the cache: not a keystroke
                        got["ms"].append((time.perf_counter() - t) * 1000)
                        got["prefilled"].append(eng.stats.as_dict()["prefilled_tokens"] - before)
    pack.stable_start = causal.stable_start = stable_start
    rows = []
    for (name, mode), got in samples.items():
        rows.append(
            {
                "document": name,
                "mode": mode,
                "keystrokes": len(got["ms"]),
                "p50_ms": round(statistics.median(got["ms"]), 1),
                "p90_ms": round(float(np.percentile(got["ms"], 90)), 1),
                "prefilled_per_keystroke": round(statistics.mean(got["prefilled"]), 1),
                "full_prefills": sum(n > 64 for n in got["prefilled"]),
            }
        )
    cmd = "python bench/long_line_typing.py " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(args.json).write_text(json.dumps({"command": cmd, "cpu_flags": cpu_flags(), "rows": rows}, indent=1))
    print("\n| document | window start | keystrokes | p50 ms | p90 ms | prefilled/keystroke | over 64 prefilled |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(rows, key=lambda r: (r["document"], r["mode"])):
        print(
            f"| {r['document']} | {r['mode']} | {r['keystrokes']} | {r['p50_ms']} | {r['p90_ms']} | "
            f"{r['prefilled_per_keystroke']} | {r['full_prefills']} |"
        )


if __name__ == "__main__":
    main()
