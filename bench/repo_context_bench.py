"""Repository-level completion quality: lines that use a symbol defined in another module.

    python bench/repo_context_bench.py [--root STDLIB] [--n 100] [--model DIR]

The workspace (default: this interpreter's standard library) is indexed with
:class:`unmask.context.WorkspaceIndex`. A line is a candidate when it calls or uses a
function or class that its file does not define but a workspace module it imports does
(so the file alone does not show the name's signature). Each candidate line is masked
whole (single-line infill) and completed with the context packer:

* ``full``: every context source;
* ``none``: prefix and suffix only (no cross-file snippets);
* ``-<source>``: every source but one (ablation);
* with ``--cuts``, only ``full``, twice: the window's start at an anchor line (engine/anchor.py, the
  product) and at the first line start that fits (before it).

Reports exact match and mean character similarity per condition. Caveat: the standard
library is in the training corpus, so absolute numbers are optimistic; the comparison
between conditions is what this measures.
"""

from __future__ import annotations

import argparse
import difflib
import random
import re
import sysconfig
import time
from pathlib import Path

import numpy as np
from window_start import first_line_start  # the cut before anchor lines (bench/ is on sys.path)

import unmask.context.pack as pack
import unmask.engine.causal as causal
from unmask.context import ContextConfig, IndexConfig, ParsedDocument, WorkspaceIndex, gather_context
from unmask.context.pack import ALL_SOURCES
from unmask.engine.anchor import stable_line_start
from unmask.engine.infill import LINE_BUCKET, Engine
from unmask.engine.runtime import backend_config


def candidates(index: WorkspaceIndex, n: int, seed: int) -> list[tuple[str, int, str]]:
    """(rel path, line number, foreign name) triples."""
    rng = random.Random(seed)
    rels = sorted(r for r in index.files if r.endswith(".py") and "/" in r and "test" not in r)
    rng.shuffle(rels)
    out = []
    for rel in rels:
        entry = index.files[rel]
        own = {d.name for d in entry.tags.definitions}
        foreign = {}
        for f in index.imported_files(rel):
            for d in index.files[f].tags.definitions if f in index.files else ():
                if d.kind in ("function", "class") and len(d.name) > 3 and d.name not in own:
                    foreign[d.name] = d
        if not foreign:
            continue
        lines = Path(index.abspath(rel)).read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        pat = re.compile(r"\b(" + "|".join(map(re.escape, sorted(foreign))) + r")\s*\(")
        hits = [
            (i, m.group(1))
            for i, line in enumerate(lines)
            if i > 10
            and line.startswith((" ", "\t"))
            and not line.lstrip().startswith(("import ", "from ", "#"))
            and len(line) < 120
            and (m := pat.search(line))
        ]
        for i, name in rng.sample(hits, min(2, len(hits))):
            out.append((rel, i, name))
        if len(out) >= n:
            break
    return out[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=sysconfig.get_paths()["stdlib"])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument(
        "--cuts",
        action="store_true",
        help="compare the window's start at anchor lines (engine/anchor.py) with the first line start that fits",
    )
    args = ap.parse_args()
    t = time.perf_counter()
    index = WorkspaceIndex(args.root, IndexConfig(workers=2))
    index.build()
    print(f"indexed {len(index.files)} files in {time.perf_counter() - t:.1f} s")
    eng = Engine(backend_config("onnx", args.model))
    count = lambda s: len(eng.tok.encode(s))  # noqa: E731
    items = candidates(index, args.n, args.seed)
    cross_file = sorted(ALL_SOURCES - {"prefix", "suffix"})
    conditions = {"full": ContextConfig(), "none": ContextConfig().without(*cross_file)}
    for src in cross_file:
        conditions[f"-{src}"] = ContextConfig().without(src)
    if args.cuts:
        conditions = {"full, anchored cut": ContextConfig(), "full, first line that fits": ContextConfig()}
    results = {k: ([], []) for k in conditions}
    for rel, i, _name in items:
        path = index.abspath(rel)
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        answer = lines[i]
        doc = ParsedDocument("".join(lines[:i] + lines[i + 1 :]), "python", path)
        for cname, cfg in conditions.items():
            old_cut = "first line that fits" in cname  # the cut before engine/anchor.py: no anchor lines
            pack.stable_line_start = causal.stable_line_start = first_line_start if old_cut else stable_line_start
            res = gather_context(doc, i, 0, index=index, config=cfg, count_tokens=count)
            pieces, _ = res.engine_pieces()
            d = eng.infill(pieces[0], pieces[1], bucket=LINE_BUCKET, steps=args.steps, one_line=True)
            results[cname][0].append(d.text == answer)
            results[cname][1].append(difflib.SequenceMatcher(None, d.text.strip(), answer.strip()).ratio())
    print(f"{len(items)} lines using a symbol from another module ({args.root})")
    print("| condition | exact % | similarity |\n|---|---|---|")
    for cname, (ex, sim) in results.items():
        print(f"| {cname} | {100 * np.mean(ex):.1f} | {np.mean(sim):.3f} |")
    index.close()


if __name__ == "__main__":
    main()
