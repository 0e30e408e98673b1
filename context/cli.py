"""``unmask context FILE --line L --col C [--json] [--root DIR]``: show what the model would see.

Indexes the workspace (the nearest git root above FILE, else the current directory, or
``--root``), opens FILE, chooses the span at the 0-based position and packs the context;
prints each piece with its source, score and tokens, the span chosen and the timings.
``--without SOURCE`` switches sources off (ablation).

It knows argparse and printing; all the work is in ``pack.gather_context``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from .document import ParsedDocument
from .index import IndexConfig, WorkspaceIndex
from .languages import language_for_path
from .pack import ALL_SOURCES, ContextConfig, gather_context


def find_root(path: str) -> str:
    """The nearest directory above ``path`` holding ``.git``, else the current directory."""
    d = os.path.dirname(os.path.abspath(path))
    while True:
        if os.path.exists(os.path.join(d, ".git")):
            return d
        up = os.path.dirname(d)
        if up == d:
            return os.getcwd()
        d = up


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unmask context", description=__doc__.split("\n\n")[0])
    p.add_argument("file")
    p.add_argument("--line", type=int, required=True, help="0-based line")
    p.add_argument("--col", type=int, required=True, help="0-based column (UTF-16 code units)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--root", help="workspace root (default: nearest git root, else the current directory)")
    p.add_argument("--budget", type=int, help="context tokens (default: model window minus the span's slots)")
    p.add_argument("--without", action="append", default=[], choices=sorted(ALL_SOURCES), help="switch a source off")
    p.add_argument("--workers", type=int, default=1, help="indexing processes (0: in this process)")
    p.add_argument("--no-index", action="store_true", help="skip the workspace index (current file only)")
    p.add_argument("-v", "--verbose", action="store_true", help="log skipped files")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not os.path.isfile(args.file):
        print(f"unmask context: no such file: {args.file}", file=sys.stderr)
        return 2
    root = args.root or find_root(args.file)
    t = time.perf_counter()
    doc = ParsedDocument.from_path(args.file, language_for_path(args.file))
    open_ms = (time.perf_counter() - t) * 1e3
    index, index_s = None, 0.0
    if not args.no_index:
        index = WorkspaceIndex(root, IndexConfig(workers=args.workers))
        index.build()
        index_s = index.stats.seconds
    cfg = ContextConfig(budget=args.budget).without(*args.without)
    try:
        res = gather_context(doc, args.line, args.col, index=index, config=cfg)
    finally:
        if index is not None:
            index.close()
    out = res.to_dict()
    out["root"] = root
    out["timings_ms"]["open_parse"] = round(open_ms, 3)
    out["index"] = (
        None
        if index is None
        else {
            "files": index.stats.files,
            "definitions": index.stats.definitions,
            "seconds": round(index_s, 3),
            "skipped": dict(index.stats.skipped),
        }
    )
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    s = out["span"]
    print(
        f"span: {s['kind']} bucket={s['bucket']} multiline={s['multiline']} node={s['node_type']}"
        + (f"  SUPPRESSED ({s['suppress_reason']})" if s["suppress_reason"] else "")
    )
    print(f"budget: {res.used}/{res.budget} tokens, {len(res.snippets)} of {res.candidates} snippets packed")
    for p in out["pieces"]:
        where = f"{p['path']}:{p['line'] + 1}" if p["line"] >= 0 else p["path"]
        print(f"\n── {p['source']} score={p['score']} tokens={p['tokens']} {where}")
        print(p["text"].rstrip("\n"))
    if out["index"]:
        i = out["index"]
        print(f"\nindex: {i['files']} files, {i['definitions']} definitions, {i['seconds']} s, skipped {i['skipped']}")
    print("timings (ms): " + ", ".join(f"{k}={v}" for k, v in out["timings_ms"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
