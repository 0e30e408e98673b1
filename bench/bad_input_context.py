"""Per-request context work on bad input: the documents of ``tests/test_bad_input.py`` against a normal file.

    python bench/bad_input_context.py                        # this tree, 5 requests per document
    python bench/bad_input_context.py --rev fe92d04          # also the code at a commit, side by side
    python bench/bad_input_context.py --profile "2 MB minified, one line"   # cProfile one document

Each document goes through the server's own path without LSP or model (``lsp/repo.py``
``RepoContext``): didOpen (not timed; documents over 1,000,000 characters get no tree, as in the
server), then ``--requests`` times a keystroke at the end (didChange + lazy re-parse, timed apart)
followed by what a completion request does before the engine: the span (``lsp/shape.py``
``choose_span``) and the context (``RepoContext.gather``). A small normal document stays open
next to it, so the ``open`` source has work. The medians are printed with their ratio to a
normal file (``context/sources.py``, 356 lines, cursor in its middle) measured in the same run.

``--rev REV`` runs the same requests, alternating, against ``context/`` and ``lsp/`` as they were at
``REV`` (``git archive``, in a child process), so load from other jobs falls on both alike.
Token counts use the shipped tokenizer when ``--tokenizer`` names one (the server's counter is
the model's tokenizer, memoized), else ``len // 3``. Prints CPU flags and the load average.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cpuinfo import cpu_flags  # bench/ is on sys.path when a bench script runs

ROOT = Path(__file__).resolve().parent.parent
NORMAL = ROOT / "context" / "sources.py"


def documents() -> dict[str, tuple[str, str, tuple[int, int] | None]]:
    """name -> (language, text, cursor or None for the end): the bad documents and a normal one."""
    spec = importlib.util.spec_from_file_location("_bad_input", ROOT / "tests" / "test_bad_input.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    normal = NORMAL.read_text()
    mid = normal.count("\n") // 2
    docs = {"normal (context/sources.py)": ("python", normal, (mid, len(normal.split("\n")[mid])))}
    for name, (lang, text) in mod.DOCUMENTS.items():
        docs[name] = (lang, text, None)
    return docs


def load_rev(rev: str) -> None:
    """Import ``unmask.context`` and ``unmask.lsp`` from ``git archive REV`` instead of this tree."""
    tmp = Path(tempfile.mkdtemp(prefix="unmask-rev-"))
    data = subprocess.run(["git", "archive", rev, "context", "lsp"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=data, check=True)
    import unmask

    for name, folder in (("context", "context"), ("lsp", "lsp")):
        spec = importlib.util.spec_from_file_location(
            f"unmask.{name}", tmp / folder / "__init__.py", submodule_search_locations=[str(tmp / folder)]
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules[f"unmask.{name}"] = mod
        setattr(unmask, name, mod)
        spec.loader.exec_module(mod)


def counter(path: str | None):
    if not path:
        return None
    import functools

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)

    @functools.lru_cache(maxsize=4096)  # as the server's (lsp/worker.py _counter)
    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids)

    return count


def end_of(text: str) -> tuple[int, int]:
    last = text.split("\n")[-1]
    return text.count("\n"), len(last.encode("utf-16-le")) // 2


def measure(name: str, requests: int, tokenizer: str | None, window: int, profile: bool = False) -> dict:
    """Median ms per stage over ``requests`` keystroke + completion pairs on document ``name``."""
    from unmask.context import SpanChoice
    from unmask.lsp.repo import RepoContext
    from unmask.lsp.shape import choose_span

    lang, text, at = documents()[name]
    count = counter(tokenizer)
    repo = RepoContext()
    uri = f"file:///tmp/unmask-bench/{name.split()[0]}.{'js' if lang == 'javascript' else 'py'}"
    repo.open("file:///tmp/unmask-bench/other.py", "python", "def add(a, b):\n    return a + b\n", 1)
    doc = repo.open(uri, lang, text, 1)
    line, col = at or end_of(text)
    rows: dict[str, list[float]] = {}
    prof = cProfile.Profile() if profile else None
    sizes = []
    sources = ("scope", "definitions", "recent", "open", "similar")
    for k in range(requests + 1):  # the first one warms up (imports, compiled queries): not counted
        t = time.perf_counter()
        repo.change(uri, (line, col), (line, col), "abcdefgh"[k % 8], k + 2)
        doc.tree  # noqa: B018 - the lazy re-parse
        rows.setdefault("edit+parse", []).append((time.perf_counter() - t) * 1e3)
        col += 1
        text = doc.text  # the server's request carries the text as prefix and suffix (not timed here)
        off = len(doc.src[: doc.offset_at(line, col)].decode("utf-8", "replace"))
        prefix, suffix = text[:off], text[off:]
        if prof and k:
            prof.enable()
        t = time.perf_counter()
        span = choose_span(prefix, suffix, doc, (line, col))
        choice = span.choice or SpanChoice(span.kind, span.bucket, span.multiline, offset=doc.offset_at(line, col))
        t1 = time.perf_counter()
        res = repo.gather(uri, (line, col), choice, sources=sources, count_tokens=count, window=window)
        t2 = time.perf_counter()
        if prof and k:
            prof.disable()
        rows.setdefault("span", []).append((t1 - t) * 1e3)
        rows.setdefault("context", []).append((t2 - t1) * 1e3)
        for src, ms in res.timings.items():
            if src not in ("span", "total"):
                rows.setdefault(f"  {src}", []).append(ms)
        sizes.append(sum(map(len, res.engine_pieces()[0])))
        if k == 0:
            rows.clear()
            sizes.clear()
    if prof:
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    out = {k: statistics.median(v) for k, v in rows.items()}
    out["chars shown"] = statistics.median(sizes)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=5, help="keystroke + completion pairs per document")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of this tree and --rev")
    ap.add_argument("--rev", help="also measure the code at this commit, alternating with this tree")
    ap.add_argument("--tokenizer", help="count tokens with this tokenizer.json (default: len // 3)")
    ap.add_argument("--window", type=int, default=512, help="the model's window in tokens")
    ap.add_argument("--only", action="append", help="a document name (repeatable; default: all)")
    ap.add_argument("--profile", help="cProfile the requests on this document (to stderr) and stop")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child is not None:  # one measurement in a fresh process: name, optionally at a rev
        spec = json.loads(args.child)
        if spec["rev"]:
            load_rev(spec["rev"])
        print(json.dumps(measure(spec["name"], args.requests, args.tokenizer, args.window)))
        return
    if args.profile:
        measure(args.profile, args.requests, args.tokenizer, args.window, profile=True)
        return

    print(f"CPU flags: {cpu_flags()}; load average {os.getloadavg()[0]:.2f} (other jobs share the 2 cores)")
    names = args.only or list(documents())
    revs: list[str | None] = [None] + ([args.rev] if args.rev else [])
    got: dict[tuple[str, str | None], list[dict]] = {}
    for _ in range(args.rounds):
        for name in names:
            for rev in revs:
                cmd = [sys.executable, __file__, "--requests", str(args.requests), "--window", str(args.window)]
                if args.tokenizer:
                    cmd += ["--tokenizer", args.tokenizer]
                cmd += ["--child", json.dumps({"name": name, "rev": rev})]
                r = subprocess.run(cmd, capture_output=True, text=True, check=True)
                got.setdefault((name, rev), []).append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"load average at the end {os.getloadavg()[0]:.2f}; medians over {args.rounds} x {args.requests} requests\n")
    normal = names[0] if names[0].startswith("normal") else None
    head = ["document", *(f"{'this tree' if r is None else r}: span + context ms" for r in revs), "stages (this tree)"]
    print("| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|")
    base = {}
    for name in names:
        cells = []
        for rev in revs:
            runs = got[(name, rev)]
            total = statistics.median(r["span"] + r["context"] for r in runs)
            if name == normal:
                base[rev] = total
            ratio = f" ({total / base[rev]:.0f}x normal)" if normal and name != normal and base.get(rev) else ""
            cells.append(f"{total:.1f}{ratio}")
        mine = got[(name, None)]
        stages = {k: statistics.median(r[k] for r in mine if k in r) for k in mine[0] if k not in ("span", "context")}
        cells.append(", ".join(f"{k.strip()} {v:.1f}" for k, v in stages.items() if k == "chars shown" or v >= 0.5))
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
