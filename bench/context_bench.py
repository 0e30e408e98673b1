"""Benchmark unmask.context on a real workspace: index build time and memory, and the
per-request cost of span selection + context gathering.

    python bench/context_bench.py                      # CPython's Lib/ (this machine's stdlib)
    python bench/context_bench.py --root DIR --workers 2 --requests 500
    python bench/context_bench.py --tokenizer engine/models/<name>/tokenizer.json

Requests imitate an editor: open a random indexed file (didOpen, not timed), then type
``--burst`` characters at a random code position, each a didChange + incremental re-parse
(timed apart) followed by a completion request that gathers context there (timed). The
last few opened files are the open documents and their edits the history. Prints a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import sysconfig
import time

from unmask.context import ContextConfig, IndexConfig, ParsedDocument, WorkspaceIndex, gather_context


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=sysconfig.get_paths()["stdlib"], help="workspace (default: the stdlib)")
    ap.add_argument("--workers", type=int, default=2, help="indexing processes")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--burst", type=int, default=4, help="requests per opened file, one keystroke apart")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", help="count tokens with this tokenizer.json (default: len // 3)")
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args(argv)

    count = None
    if args.tokenizer:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(args.tokenizer)

        def count(s: str) -> int:
            return len(tok.encode(s, add_special_tokens=False).ids)

    rss0 = rss_mb()
    ix = WorkspaceIndex(args.root, IndexConfig(workers=args.workers))
    last = [0.0]

    def progress(done: int, total: int, msg: str) -> None:
        if time.perf_counter() - last[0] > 5 or done == total:
            last[0] = time.perf_counter()
            print(f"  index: {msg}", file=sys.stderr)

    t = time.perf_counter()
    ix.start(progress)
    ix.wait()
    build_s = time.perf_counter() - t
    ix.close()  # the worker processes are not part of the index's memory
    rss1 = rss_mb()
    stats = ix.stats
    approx = ix.approx_bytes() / 2**20

    rng = random.Random(args.seed)
    files = sorted(ix.files)
    open_docs: list[ParsedDocument] = []
    gather_ms, edit_ms, kinds, suppressed, packed = [], [], {}, 0, []
    cfg = ContextConfig()
    first_ms: list[float] = []
    while len(gather_ms) < args.requests:
        rel = rng.choice(files)
        doc = ParsedDocument.from_path(ix.abspath(rel))  # didOpen
        code = [i for i in range(doc.line_count) if doc.line_text(i).strip()]
        if not code:
            continue
        line = rng.choice(code)
        text = doc.line_text(line)
        col = rng.choice([len(text), len(text), rng.randrange(len(text) + 1)])  # mostly end of line
        col = len(text[:col].encode("utf-16-le")) // 2
        for k in range(args.burst):  # keystrokes in one place, a completion request after each
            t = time.perf_counter()
            doc.apply_edit((line, col), (line, col), rng.choice(" x(."))
            doc.tree  # noqa: B018 - the incremental re-parse a didChange costs
            edit_ms.append((time.perf_counter() - t) * 1e3)
            col += 1
            t = time.perf_counter()
            res = gather_context(doc, line, col, index=ix, open_docs=open_docs[-4:], config=cfg, count_tokens=count)
            gather_ms.append((time.perf_counter() - t) * 1e3)
            if k == 0:
                first_ms.append(gather_ms[-1])
            kinds[res.span.kind] = kinds.get(res.span.kind, 0) + 1
            suppressed += res.span.suppressed
            packed.append(len(res.snippets))
        open_docs.append(doc)

    out = {
        "root": args.root,
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "files": stats.files,
        "definitions": stats.definitions,
        "skipped": dict(stats.skipped),
        "build_s": round(build_s, 2),
        "rss_delta_mb": round(rss1 - rss0, 1),
        "index_approx_mb": round(approx, 1),
        "requests": len(gather_ms),
        "gather_p50_ms": round(pct(gather_ms, 0.5), 2),
        "gather_p95_ms": round(pct(gather_ms, 0.95), 2),
        "gather_max_ms": round(max(gather_ms), 2),
        "first_in_file_p50_ms": round(pct(first_ms, 0.5), 2),
        "first_in_file_p95_ms": round(pct(first_ms, 0.95), 2),
        "edit_reparse_p50_ms": round(pct(edit_ms, 0.5), 2),
        "edit_reparse_p95_ms": round(pct(edit_ms, 0.95), 2),
        "snippets_mean": round(statistics.mean(packed), 1),
        "span_kinds": kinds,
        "suppressed": suppressed,
        "tokenizer": args.tokenizer or "len // 3",
    }
    print("| measure | value |\n| --- | --- |")
    rows = [
        ("workspace", f"`{out['root']}` ({out['files']} files indexed, {out['definitions']} definitions)"),
        ("skipped", ", ".join(f"{k} {v}" for k, v in sorted(out["skipped"].items()))),
        ("index build (2 cores shared)", f"{out['build_s']} s with {args.workers} worker processes"),
        (
            "index memory",
            f"{out['rss_delta_mb']} MB RSS growth of the server process (~{out['index_approx_mb']} MB by "
            "sys.getsizeof)",
        ),
        (
            "didChange + incremental re-parse",
            f"p50 {out['edit_reparse_p50_ms']} ms, p95 {out['edit_reparse_p95_ms']} ms",
        ),
        (
            "context gathering (span + sources + packing)",
            f"p50 {out['gather_p50_ms']} ms, p95 {out['gather_p95_ms']} ms, max {out['gather_max_ms']} ms "
            f"over {out['requests']} requests",
        ),
        (
            "… first request after opening a file (cold caches)",
            f"p50 {out['first_in_file_p50_ms']} ms, p95 {out['first_in_file_p95_ms']} ms",
        ),
        ("token counting", out["tokenizer"]),
        ("snippets packed per request", f"{out['snippets_mean']} (mean)"),
        ("spans chosen", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + f"; suppressed {suppressed}"),
    ]
    for k, v in rows:
        print(f"| {k} | {v} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
