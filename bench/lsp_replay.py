"""Replay a typing session through a real LSP client against ``unmask serve`` and time it.

    python bench/lsp_replay.py                       # retype a function of lsp/shape.py
    python bench/lsp_replay.py --file F --start-line 40 --lines 12 --seed 1 --write

The client (pygls) starts the server as a subprocess over stdio, opens a real source file
with a region removed, and retypes that region one keystroke at a time, a keystroke every
80-150 ms (seeded), as ``didChange`` + an automatic ``textDocument/inlineCompletion`` for
each. It does not wait for answers before the next keystroke, like an editor. Reported:
end-to-end latency (request sent -> response received) p50/p95 of the requests that were
answered, the share superseded by a newer keystroke (``ContentModified``), the share served
by type-through, and the server's own counters. ``--write`` puts the numbers and the command
into BENCHMARKS.md (its own section only).

It knows LSP and the server's custom ``unmask/stats`` request; it knows nothing of the model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parent.parent
CONTENT_MODIFIED = -32801
START, END = "<!-- lsp_replay:start -->", "<!-- lsp_replay:end -->"


def session(text: str, start_line: int, n_lines: int) -> tuple[str, str, int]:
    """(document without the region, the region to type, the offset where typing happens)."""
    lines = text.splitlines(keepends=True)
    start_line = max(0, min(start_line, len(lines) - 1))
    region = "".join(lines[start_line : start_line + n_lines])
    offset = sum(len(x) for x in lines[:start_line])
    return text[:offset] + text[offset + len(region) :], region, offset


def position(text: str, offset: int) -> types.Position:
    """Line and UTF-16 column of a code-point offset (the client side of the protocol)."""
    line = text.count("\n", 0, offset)
    col_text = text[text.rfind("\n", 0, offset) + 1 : offset]
    return types.Position(line=line, character=len(col_text.encode("utf-16-le")) // 2)


async def replay(args, budget_ms: int, min_confidence: float) -> dict:
    src = Path(args.file).read_text(encoding="utf-8")
    doc, region, offset = session(src, args.start_line, args.lines)
    if args.max_keys:
        region = region[: args.max_keys]
    rng = random.Random(args.seed)

    client = LanguageClient("unmask-bench", "0")
    client.feature(types.WINDOW_LOG_MESSAGE)(lambda params: None)
    client.feature(types.WINDOW_SHOW_MESSAGE)(lambda params: print("server:", params.message, file=sys.stderr))
    cmd = [sys.executable, "-m", "unmask.lsp.cli", "serve", "--log-file", args.log_file]
    if args.model:
        cmd += ["--model", args.model]
    await client.start_io(*cmd)
    drain = asyncio.create_task(_forward_stderr(client._server.stderr))  # an undrained pipe blocks the server
    options = {"latencyBudgetMs": budget_ms, "minConfidence": min_confidence}
    await client.initialize_async(
        types.InitializeParams(capabilities=types.ClientCapabilities(), initialization_options=options)
    )
    client.initialized(types.InitializedParams())
    uri = Path(args.file).resolve().as_uri()
    version = 1
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(types.TextDocumentItem(uri=uri, language_id="python", version=1, text=doc))
    )
    await client.protocol.send_request_async("unmask/stats", {})  # the model is loaded and warm
    # one completion before the clock starts, as an editor would have had by now
    await asyncio.wrap_future(
        client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, _params(uri, doc, offset))
    )
    before = (await client.protocol.send_request_async("unmask/stats", {}))._asdict()

    records: list[dict] = []
    t_start = time.perf_counter()
    for ch in region:
        pos = position(doc, offset)
        doc = doc[:offset] + ch + doc[offset:]
        offset += len(ch)
        version += 1
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(version=version, uri=uri),
                [types.TextDocumentContentChangePartial(range=types.Range(pos, pos), text=ch)],
            )
        )
        rec = {"sent": time.perf_counter(), "version": version}
        fut = client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, _params(uri, doc, offset))
        fut.add_done_callback(lambda f, rec=rec: _done(rec, f))
        records.append(rec)
        await asyncio.sleep(rng.uniform(args.min_ms, args.max_ms) / 1000)
    deadline = time.perf_counter() + 10
    while any("outcome" not in r for r in records) and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    wall = time.perf_counter() - t_start
    after = (await client.protocol.send_request_async("unmask/stats", {}))._asdict()
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    drain.cancel()

    answered = [r for r in records if r.get("outcome") in ("items", "empty")]
    lat = np.array([r["ms"] for r in answered]) if answered else np.array([np.nan])
    n = len(records)
    delta = {k: after[k] - before[k] for k in after if isinstance(after[k], int)}
    return {
        "file": str(Path(args.file).resolve().relative_to(ROOT))
        if ROOT in Path(args.file).resolve().parents
        else args.file,
        "keystrokes": n,
        "wall_s": round(wall, 1),
        "answered": len(answered),
        "with_items": sum(r["outcome"] == "items" for r in records),
        "superseded_share": round(sum(r.get("outcome") == "superseded" for r in records) / n, 3),
        "errors": sum(r.get("outcome") == "error" for r in records),
        "type_through_share": round(delta.get("typeThrough", 0) / n, 3),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "max_ms": round(float(lat.max()), 1),
        "model_calls": delta.get("modelCalls", 0),
        "server": delta,
        "budget_ms": budget_ms,
        "min_confidence": min_confidence,
        "model": _model_label(after.get("model", "")),
    }


async def _forward_stderr(stream) -> None:
    while line := await stream.readline():
        sys.stderr.buffer.write(line)


def _model_label(path: str) -> str:
    """The model directory (relative to the repo) and its training step, from its model.json."""
    if not path:
        return "?"
    try:
        step = json.loads((Path(path) / "model.json").read_text()).get("training", {}).get("step", "?")
    except (OSError, ValueError):
        step = "?"
    return f"{_shown_path(path)} (training step {step})"


def _shown_path(file: str) -> str:
    p = Path(file).resolve()
    return str(p.relative_to(ROOT)) if ROOT in p.parents else file


def _params(uri: str, doc: str, offset: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=position(doc, offset),
    )


def _done(rec: dict, fut) -> None:
    rec["ms"] = (time.perf_counter() - rec["sent"]) * 1000
    try:
        res = fut.result()
    except JsonRpcException as e:
        rec["outcome"] = "superseded" if e.code == CONTENT_MODIFIED else "error"
        return
    except Exception:
        rec["outcome"] = "error"
        return
    rec["outcome"] = "items" if res is not None and res.items else "empty"


def machine() -> str:
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        cpu = "unknown CPU"
    import os

    return f"{cpu}, {os.cpu_count()} cores"


def write_section(results: list[dict], command: str, note: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    res = results[0]
    rows = "\n".join(
        f"| {r['budget_ms']} ms | {r['min_confidence']} | {r['keystrokes']} | "
        f"{r['p50_ms']} ms | {r['p95_ms']} ms | {r['max_ms']} ms | "
        f"{r['answered']} | {r['superseded_share']:.1%} | {r['type_through_share']:.1%} | {r['with_items']} | "
        f"{r['model_calls']} |"
        for r in results
    )
    body = f"""{START}
## LSP end to end: typing replay (`bench/lsp_replay.py`, issue 3)

A real LSP client (pygls) drives `unmask serve` over stdio: it retypes {res["keystrokes"]} characters of
`{res["file"]}`, a keystroke every 80-150 ms, each one a `didChange` plus an automatic
`textDocument/inlineCompletion`, without waiting for answers. Latency is request sent to response
received, over the requests answered (the others were superseded by the next keystroke and
answered `ContentModified`). One row per `latencyBudgetMs` (budget) and `minConfidence`.

| budget | minConfidence | keys | p50 | p95 | max | answered | superseded | type-through | with an item | model calls |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

Target: p50 <= 150 ms, p95 <= 300 ms. Machine: {machine()}. Model: {res["model"]}. {note}

```
{command}
```
{END}"""
    if START in text and END in text:
        text = text[: text.index(START)] + body + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", default=str(ROOT / "lsp" / "shape.py"), help="a real source file to retype")
    ap.add_argument("--start-line", type=int, default=57, help="first line of the retyped region (0-based)")
    ap.add_argument("--lines", type=int, default=14, help="lines in the retyped region")
    ap.add_argument("--max-keys", type=int, default=0, help="stop after N keystrokes (0: the whole region)")
    ap.add_argument("--min-ms", type=float, default=80)
    ap.add_argument("--max-ms", type=float, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-ms", default="250", help="latencyBudgetMs sent to the server; a comma list runs each")
    ap.add_argument("--min-confidence", default="0.4", help="minConfidence sent to the server; a comma list runs each")
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    ap.add_argument("--log-file", default="", help="server log file ('' for none)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--write", action="store_true", help="update the section in BENCHMARKS.md")
    ap.add_argument("--note", default="", help="a sentence appended to the BENCHMARKS.md section")
    args = ap.parse_args(argv)
    results = []
    for budget in [int(b) for b in str(args.budget_ms).split(",")]:
        for conf in [float(c) for c in str(args.min_confidence).split(",")]:
            res = asyncio.run(replay(args, budget, conf))
            print(json.dumps(res, indent=1), flush=True)
            results.append(res)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.write:
        given = list(argv if argv is not None else sys.argv[1:])
        if "--note" in given:  # the note is prose for the page, not part of the command
            i = given.index("--note")
            del given[i : i + 2]
        shown = [a for a in given if a != "--write"]
        write_section(results, "python bench/lsp_replay.py " + subprocess.list2cmdline(shown), args.note)


if __name__ == "__main__":
    main()
