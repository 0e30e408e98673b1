"""Replay a typing session through a real LSP client against ``unmask serve`` and time it.

    python bench/lsp_replay.py                       # retype a function of lsp/shape.py
    python bench/lsp_replay.py --file F --start-line 40 --lines 12 --seed 1 --write
    python bench/lsp_replay.py --context on,off      # the stage breakdown with and without repository context

The client (pygls) starts the server as a subprocess over stdio, with the repository as its
workspace folder (``--root``; the server indexes it and the run starts once the index is
ready), opens a real source file with a region removed, and retypes that region one keystroke
at a time, a keystroke every 80-150 ms (seeded), as ``didChange`` + an automatic
``textDocument/inlineCompletion`` for each. It does not wait for answers before the next
keystroke, like an editor. Reported: end-to-end latency (request sent -> response received)
p50/p95 of the requests that were answered, the share superseded by a newer keystroke
(``ContentModified``), the share served by type-through, and the server's own counters.

The **breakdown** joins each answered request that ran the model with the server's trace of
it (``unmask/timings``): p50/p95 per stage (didChange apply, parse, span, context, queue,
tokenize, encode, each denoising step, shaping, serialization), the model's forward time and
the engine's overhead over it (engine - model), and the time outside the server's clock:
client round trip - server time = transport + (de)serialization in the client and JSON-RPC
framing. ``--write`` puts the numbers and the command into BENCHMARKS.md (its own section only).

It knows LSP and the server's custom ``unmask/stats`` and ``unmask/timings`` requests; it knows
nothing of the model.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import re
import subprocess
import sys
import time
from collections import defaultdict
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


async def replay(args, budget_ms: int, min_confidence: float, context: bool = True) -> dict:
    src = Path(args.file).read_text(encoding="utf-8")
    start = args.start_line
    if start is None:
        start = next((i for i, ln in enumerate(src.splitlines()) if args.start_at in ln), 0)
    doc, region, offset = session(src, start, args.lines)
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
    options = {"latencyBudgetMs": budget_ms, "minConfidence": min_confidence, "context": {"enabled": context}}
    root = Path(args.root).resolve() if args.root else None
    folders = [types.WorkspaceFolder(uri=root.as_uri(), name=root.name)] if root else None
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            initialization_options=options,
            root_uri=root.as_uri() if root else None,
            workspace_folders=folders,
        )
    )
    client.initialized(types.InitializedParams())
    t_index = time.perf_counter()
    while root and _plain(await client.protocol.send_request_async("unmask/stats", {}))["indexing"]:
        await asyncio.sleep(0.2)  # start typing once the workspace index is built
    index_s = time.perf_counter() - t_index
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
    before = _plain(await client.protocol.send_request_async("unmask/stats", {}))

    records: list[dict] = []
    ids = itertools.count(1)
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
        rec = {"sent": time.perf_counter(), "version": version, "id": f"k{next(ids)}"}
        fut = client.protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, _params(uri, doc, offset), msg_id=rec["id"]
        )
        fut.add_done_callback(lambda f, rec=rec: _done(rec, f))
        records.append(rec)
        await asyncio.sleep(rng.uniform(args.min_ms, args.max_ms) / 1000)
    deadline = time.perf_counter() + 10
    while any("outcome" not in r for r in records) and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    wall = time.perf_counter() - t_start
    # cursor jumps: one request at each of --cold other positions, waited for (a new position: cold cache)
    cold_records: list[dict] = []
    ends = [m.start() for m in re.finditer(r"\S(?=\n)", doc)]
    for off in rng.sample(ends, min(args.cold, len(ends))):
        rec = {"sent": time.perf_counter(), "id": f"c{next(ids)}"}
        fut = client.protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, _params(uri, doc, off + 1), msg_id=rec["id"]
        )
        fut.add_done_callback(lambda f, rec=rec: _done(rec, f))
        while "outcome" not in rec:
            await asyncio.sleep(0.005)
        cold_records.append(rec)
        await asyncio.sleep(0.1)
    after = _plain(await client.protocol.send_request_async("unmask/stats", {}))
    traces = _plain(await client.protocol.send_request_async("unmask/timings", {}))["requests"]
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
        "context": context,
        "root": ("." if root == ROOT else _shown_path(str(root))) if root else None,
        "indexed_files": after.get("indexedFiles", 0),
        "index_s": round(index_s, 1),
        "model": _model_label(after.get("model", "")),
        "breakdown": breakdown(records, traces),
        "cache": cache_split(records, cold_records, traces),
    }


HEADER = (
    "| budget | minConfidence | context | keys | p50 | p95 | max | answered | superseded | type-through "
    "| with an item | model calls |\n" + "| --- " * 12 + "|"
)

# stage rows of the breakdown, in pipeline order: (key, label)
ROWS = [
    ("edit", "didChange: apply text + tree edit (per keystroke)"),
    ("wait", "arrival -> handler runs"),
    ("parse", "incremental re-parse"),
    ("span", "span choice"),
    ("context", "context gathering + packing"),
    ("queue", "wait for the model thread"),
    ("tokenize", "engine: tokenize + layout"),
    ("encode", "model: encode forward"),
    ("step", "one denoising step (engine, wall)"),
    ("stepForward", "one denoising step (model forward)"),
    ("stepCount", "steps per request"),
    ("denoise", "all steps (engine, wall)"),
    ("engine", "engine total"),
    ("model", "model forward total"),
    ("engineOverhead", "engine overhead = engine - model"),
    ("shape", "shape + convert to LSP"),
    ("serialize", "serialize + write response"),
    ("server", "server: arrival -> response written"),
    ("transport", "round trip - server (transport, client (de)serialization)"),
    ("roundTrip", "client round trip"),
]


def breakdown(records: list[dict], traces: list[dict]) -> dict:
    """p50/p95 per stage over the answered requests that ran the model (joined with the server's traces)."""
    by_id = {t["requestId"]: t for t in traces}
    vals: dict[str, list[float]] = defaultdict(list)
    n = 0
    for r in records:
        t = by_id.get(r["id"])
        if t is None or r.get("outcome") not in ("items", "empty") or "engine" not in t["stages"]:
            continue
        n += 1
        for k, v in t["stages"].items():
            vals[k].append(v)
        vals["step"] += t["steps"]
        vals["stepForward"] += t["stepForward"]
        vals["stepCount"].append(len(t["steps"]))
        vals["roundTrip"].append(r["ms"])
        vals["transport"].append(r["ms"] - t["stages"]["server"])
        vals["overheadShare"].append(t["stages"]["engineOverhead"] / max(t["stages"]["engine"], 1e-9))
    out: dict = {"requests": n, "traced": len(traces)}
    for k, xs in vals.items():
        a = np.array(xs)
        out[k] = {"p50": round(float(np.percentile(a, 50)), 2), "p95": round(float(np.percentile(a, 95)), 2)}
    return out


WARM_MAX_PREFILL = 16  # a request whose context needed more new tokens than this counts as cold


def cache_split(records: list[dict], jumps: list[dict], traces: list[dict]) -> dict:
    """Round trips of model-running requests while typing, warm vs cold cache; and at cursor jumps.

    Warm: the engine's context cache held all but at most ``WARM_MAX_PREFILL`` tokens of the
    context (typing appends to the prefix); cold: more had to be prefilled (a new line pushed
    the window, the suffix changed). Jumps: requests at other positions, waited for one by one.
    """
    by_id = {t["requestId"]: t for t in traces}
    groups: dict[str, list[float]] = {"warm": [], "cold": [], "jump": []}
    reused = prefilled = 0
    for name, recs in (("typing", records), ("jump", jumps)):
        for r in recs:
            t = by_id.get(r["id"])
            if t is None or r.get("outcome") not in ("items", "empty") or not t.get("cache"):
                continue
            c = t["cache"]
            if name == "typing":
                reused += c["reused"]
                prefilled += c["prefilled"]
                groups["warm" if c["prefilled"] <= WARM_MAX_PREFILL else "cold"].append(r["ms"])
            else:
                groups["jump"].append(r["ms"])
    out: dict = {"reused_share": round(reused / max(1, reused + prefilled), 3)}
    for k, xs in groups.items():
        a = np.array(xs) if xs else np.array([np.nan])
        out[k] = {
            "n": len(xs),
            "p50": round(float(np.nanpercentile(a, 50)), 1) if xs else None,
            "p95": round(float(np.nanpercentile(a, 95)), 1) if xs else None,
        }
    return out


def cache_table(results: list[dict]) -> str:
    head = "| row | context tokens from the cache | warm n | p50 | p95 | cold n | p50 | p95 | jump n | p50 | p95 |"
    rows = [head, "| --- " * 11 + "|"]
    for r in results:
        c = r.get("cache") or {}
        cells = [f"{c.get('reused_share', 0):.1%}"]
        for k in ("warm", "cold", "jump"):
            g = c.get(k) or {}
            cells += [str(g.get("n", 0)), str(g.get("p50")), str(g.get("p95"))]
        rows.append(f"| {_label(r)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def breakdown_table(results: list[dict]) -> str:
    """Markdown: a p50/p95 column pair per run, and p50 ratios of the first run to the others."""
    head = "| stage | " + " | ".join(f"{_label(r)} p50 | p95" for r in results)
    head += "".join(f" | p50 ratio {_label(results[0])} / {_label(r)}" for r in results[1:]) + " |"
    sep = "| --- " * (1 + 2 * len(results) + len(results) - 1) + "|"
    lines = [head, sep]
    for key, label in ROWS:
        cells = []
        for r in results:
            b = r["breakdown"].get(key)
            unit = "" if key == "stepCount" else " ms"
            cells += [f"{b['p50']}{unit}", f"{b['p95']}{unit}"] if b else ["-", "-"]
        for r in results[1:]:
            a, b = results[0]["breakdown"].get(key), r["breakdown"].get(key)
            cells.append(f"{a['p50'] / b['p50']:.2f}" if a and b and b["p50"] else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    share = [f"{r['breakdown']['overheadShare']['p50']:.0%}" for r in results if "overheadShare" in r["breakdown"]]
    n = ", ".join(f"{_label(r)}: {r['breakdown']['requests']}" for r in results)
    return (
        "\n".join(lines)
        + f"\n\nRequests in the breakdown (answered, ran the model): {n}. "
        + (
            f"Engine overhead as a share of the engine's time (p50 of per-request shares): {', '.join(share)}."
            if share
            else ""
        )
    )


def _label(r: dict) -> str:
    return f"context {'on' if r.get('context', True) else 'off'}"


def _plain(value):
    """JSON-like data from what pygls returns for custom requests (namedtuples)."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


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
        f"| {r['budget_ms']} ms | {r['min_confidence']} | {'on' if r.get('context', True) else 'off'} | "
        f"{r['keystrokes']} | {r['p50_ms']} ms | {r['p95_ms']} ms | {r['max_ms']} ms | "
        f"{r['answered']} | {r['superseded_share']:.1%} | {r['type_through_share']:.1%} | {r['with_items']} | "
        f"{r['model_calls']} |"
        for r in results
    )
    pair = [r for r in results if (r["budget_ms"], r["min_confidence"]) == (res["budget_ms"], res["min_confidence"])]
    root = (
        f"The workspace folder is `{res['root']}` ({res['indexed_files']} files indexed in {res['index_s']} s "
        "before typing starts), so completions get repository context unless the row says off."
        if res.get("root")
        else "No workspace folder: no index."
    )
    body = f"""{START}
## LSP end to end: typing replay (`bench/lsp_replay.py`, issues 3 and 7)

A real LSP client (pygls) drives `unmask serve` over stdio: it retypes {res["keystrokes"]} characters of
`{res["file"]}`, a keystroke every 80-150 ms, each one a `didChange` plus an automatic
`textDocument/inlineCompletion`, without waiting for answers. Latency is request sent to response
received, over the requests answered (the others were superseded by the next keystroke and
answered `ContentModified`). One row per `latencyBudgetMs` (budget), `minConfidence` and
`context.enabled`. {root}

{HEADER}
{rows}

### Where the time goes (issue 7)

Each answered request that ran the model, joined with the server's own trace of it
(`unmask/timings`), at budget {res["budget_ms"]} ms and minConfidence {res["min_confidence"]}. Engine
stages come from the model thread; the model's forward passes are timed apart from the engine's own
work (tokenizing, sampling, decoding a draft per step), so the engine's overhead is engine - model.
The server's clock starts once the request is read and parsed and stops once the response is
written; the rest of the client's round trip is transport and the client's (de)serialization.
p50 and p95 are per row, so the stages do not add up to the total.

{breakdown_table(pair)}

### Warm and cold caches (issue 15)

The requests above that ran the model, by what the engine's context KV cache held: *warm* when
typing left at most {WARM_MAX_PREFILL} context tokens to prefill, *cold* otherwise; *jump* is one
request at each of {res["cache"]["jump"]["n"]} other positions of the file after typing (a cursor
jump: the whole context is new), each waited for. Round trip in ms.

{cache_table(results)}

Target: warm p50 <= 150 ms, p95 <= 300 ms; cold p95 <= 600 ms. Machine: {machine()}. Model: {res["model"]}. {note}

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
    ap.add_argument("--start-line", type=int, help="first line of the retyped region (0-based; default: --start-at)")
    ap.add_argument(
        "--start-at",
        default="    text = raw if multiline else",
        help="the retyped region starts at the first line holding this text (the body of shape.shape by default)",
    )
    ap.add_argument("--lines", type=int, default=14, help="lines in the retyped region")
    ap.add_argument("--max-keys", type=int, default=0, help="stop after N keystrokes (0: the whole region)")
    ap.add_argument("--min-ms", type=float, default=80)
    ap.add_argument("--max-ms", type=float, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cold", type=int, default=20, help="after typing, requests at N other positions (cursor jumps)")
    ap.add_argument("--budget-ms", default="250", help="latencyBudgetMs sent to the server; a comma list runs each")
    ap.add_argument("--min-confidence", default="0.4", help="minConfidence sent to the server; a comma list runs each")
    ap.add_argument("--context", default="on", help="context.enabled: on, off, or a comma list (on,off) to compare")
    ap.add_argument("--root", default=str(ROOT), help="workspace folder sent to the server ('' for none)")
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    ap.add_argument("--log-file", default="", help="server log file ('' for none)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--write", action="store_true", help="update the section in BENCHMARKS.md")
    ap.add_argument("--note", default="", help="a sentence appended to the BENCHMARKS.md section")
    args = ap.parse_args(argv)
    results = []
    for budget in [int(b) for b in str(args.budget_ms).split(",")]:
        for conf in [float(c) for c in str(args.min_confidence).split(",")]:
            for ctx in args.context.split(","):
                res = asyncio.run(replay(args, budget, conf, ctx.strip() == "on"))
                print(json.dumps(res, indent=1), flush=True)
                results.append(res)
    print(breakdown_table(results[: len(args.context.split(","))]))
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
