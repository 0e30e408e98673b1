"""The ``unmask`` command line: one entry point, one subcommand per job.

    unmask demo                      watch a completion denoise, draft by draft
    unmask complete FILE --line L --col C
    unmask infill --jsonl IN --out OUT [--budget-ms N] [--steps N]
    unmask eval [--sets single,multi,random] [--write]
    unmask train / unmask export     (need the ``train`` extra: torch)
    unmask serve                     the language server (see unmask.lsp.server)
    unmask context FILE --line L --col C   what the model would see there (unmask.context.cli)
    unmask nes --jsonl IN --out OUT  next-edit prediction, batch (unmask.lsp.nes)
    unmask playground                the browser playground (editors/web; build it first)
    unmask bench                     diffusion vs the AR baseline (runs bench/ar_vs_diffusion.py; source checkout)
    unmask doctor                    check the install and the model

Heavy imports happen inside each subcommand so ``unmask --help`` stays instant.
It knows the engine's public API (:mod:`unmask.engine.infill`); it holds no model logic.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NoReturn

from unmask.lsp.shape import auto_bucket

DEMO_PREFIX = '''import os


def find_python_files(root):
    """Return the paths of all .py files below root, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
'''
DEMO_SUFFIX = """
    return sorted(found)
"""


def _engine(args):
    from unmask.engine.infill import Engine
    from unmask.engine.runtime import ModelError, backend_config

    try:
        return Engine(backend_config(args.backend, args.model, args.threads))
    except ModelError as e:
        sys.exit(f"unmask: {e}")


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model directory (default: the shipped model)")
    p.add_argument("--backend", default="onnx", choices=["onnx", "torch"])
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: runtime default)")
    p.add_argument("--steps", type=int, default=32, help="the most model calls per hole (left to right: tokens)")
    p.add_argument("--threshold", type=float, default=0.9, help="commit slots at least this confident")
    p.add_argument("--budget-ms", type=float, default=None, help="deadline per completion (anytime decoding)")


BUCKET_MAX = 256  # the longest answer a row may ask for (tokens); fits every shipped model's window

INFILL_ROWS = f"""\
Input: one JSON object per line, UTF-8:
  {{"id": ANY, "prefix": STR, "suffix": STR, "bucket": INT}}
  prefix   required: the text before the hole
  suffix   optional (default ""): the text after the hole
  id       optional: copied to the output row
  bucket   optional: the longest answer in tokens, an integer from 1 to {BUCKET_MAX};
           default: chosen from the text (a line or a block)
Output: one JSON object per input row, in input order, written and flushed as soon as it is
computed: {{"id", "completion", "ms", "steps", "confidence"}}, or for a row that cannot be used
(not UTF-8, not JSON, not an object, a missing or wrong field) or that the model fails on:
{{"id": ID or null, "error": "what is wrong", "line": N}} (N counts from 1), plus a line on
stderr; the batch goes on. Exit status 0 when the batch ran (error rows included); 2 when the
input cannot be read or the output cannot be written."""


SOURCE_NOTE = """\
Positions are 0-based: --line counts lines (each ends at \\n), --col counts UTF-16 code units
from the start of the line, as LSP clients and `unmask context` do (a character outside the
Basic Multilingual Plane, e.g. an emoji, is two). A position outside the file, or inside such a
character, is an error (exit status 2), as is a missing or unreadable file. A file that is not
UTF-8 is read as Latin-1 (ISO-8859-1: every byte one character), with a note on stderr."""


def _die(msg: str) -> NoReturn:
    """One clear line on stderr, exit status 2 (a usage or input problem)."""
    print(f"unmask: {msg}", file=sys.stderr)
    sys.exit(2)


def _open_error(path: str, e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return f"no such file: {path}"
    if isinstance(e, IsADirectoryError):
        return f"{path} is a directory, not a file"
    if isinstance(e, PermissionError):
        return f"cannot open {path}: permission denied"
    return f"cannot open {path}: {e.strerror or e}"


class BadRow(Exception):
    """An input row that cannot be used; ``str(e)`` is the message for a person."""

    def __init__(self, msg: str, rid=None):
        super().__init__(msg)
        self.rid = rid


def _json_kind(v) -> str:
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    return {dict: "object", list: "array", str: "string", int: "number", float: "number"}.get(type(v), type(v).__name__)


def _show(v) -> str:
    s = json.dumps(v)
    return s if len(s) <= 40 else s[:37] + "..."


def parse_row(raw: bytes) -> tuple[object, str, str, int | None]:
    """(id, prefix, suffix, bucket or None) of one input line, or :class:`BadRow`."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        try:  # say which row it was, if the rest of it reads
            rec = json.loads(raw.decode("utf-8", "replace"))
            rid = rec.get("id") if isinstance(rec, dict) else None
        except ValueError:
            rid = None
        raise BadRow(
            f"not valid UTF-8: byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line "
            "(the input must be UTF-8; re-encode the file, e.g. with iconv -f latin1 -t utf-8)",
            rid,
        ) from None
    why = ""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        why = f"{e.msg} at column {e.colno}"
    except RecursionError:
        why = "nested too deeply"
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        why = str(e)
    if why:
        raise BadRow(
            f'not valid JSON ({why}); each line must be one JSON object {{"id": ..., "prefix": "...", "suffix": "..."}}'
        )
    if not isinstance(rec, dict):
        raise BadRow(
            f'must be a JSON object {{"id": ..., "prefix": "...", "suffix": "..."}}, not a JSON {_json_kind(rec)}'
        )
    rid = rec.get("id")
    if "prefix" not in rec:
        raise BadRow('missing field "prefix" (required: a string, the text before the hole)', rid)
    prefix, suffix, bucket = rec["prefix"], rec.get("suffix", ""), rec.get("bucket")
    if not isinstance(prefix, str):
        raise BadRow(
            f'field "prefix" must be a string (the text before the hole), not a JSON {_json_kind(prefix)}', rid
        )
    if not isinstance(suffix, str):
        raise BadRow(
            f'field "suffix" must be a string (the text after the hole) or left out, not a JSON {_json_kind(suffix)}',
            rid,
        )
    if bucket is not None and (
        isinstance(bucket, bool) or not isinstance(bucket, int) or not 1 <= bucket <= BUCKET_MAX
    ):
        raise BadRow(
            f'field "bucket" must be an integer from 1 to {BUCKET_MAX} (the longest answer in tokens) '
            f"or left out (chosen from the text); got {_show(bucket)}",
            rid,
        )
    return rid, prefix, suffix, bucket


def cmd_infill(args) -> None:
    import numpy as np

    from unmask.engine.runtime import ModelError

    try:  # input and output first: a typo should not cost a model load
        src = open(args.jsonl, "rb") if args.jsonl != "-" else sys.stdin.buffer
    except OSError as e:
        _die(f"infill: {_open_error(args.jsonl, e)}")
    if args.out != "-" and args.jsonl != "-" and Path(args.out).resolve() == Path(args.jsonl).resolve():
        _die(f"infill: --out {args.out} is the input file; writing it would erase the input")
    try:
        out = open(args.out, "w", encoding="utf-8") if args.out != "-" else sys.stdout
    except OSError as e:
        _die(f"infill: {_open_error(args.out, e)}")
    t_load = time.perf_counter()
    eng = _engine(args)
    eng.warmup()
    load_ms = (time.perf_counter() - t_load) * 1000
    lat = []
    n_bad = 0

    def emit(row: dict) -> None:
        out.write(json.dumps(row) + "\n")
        out.flush()

    def bad(lineno: int, rid, msg: str) -> None:
        nonlocal n_bad
        n_bad += 1
        print(f"unmask infill: line {lineno}: skipped: {msg}", file=sys.stderr, flush=True)
        emit({"id": rid, "error": msg, "line": lineno})

    try:
        for lineno, raw in enumerate(src, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                rid, prefix, suffix, bucket = parse_row(raw)
            except BadRow as e:
                bad(lineno, e.rid, str(e))
                continue
            try:
                d = eng.infill(
                    prefix,
                    suffix,
                    bucket=bucket or auto_bucket(prefix, suffix),
                    steps=args.steps,
                    threshold=args.threshold,
                    budget_ms=args.budget_ms,
                )
            except (ModelError, ValueError) as e:
                bad(lineno, rid, f"the model failed on this row: {e}")
                continue
            lat.append(d.ms)
            emit(
                {
                    "id": rid,
                    "completion": d.text,
                    "ms": round(d.ms, 2),
                    "steps": d.step,
                    "confidence": round(d.confidence[0], 4),
                }
            )
    finally:
        if out is not sys.stdout:
            out.close()
        if src is not sys.stdin.buffer:
            src.close()
    tail = f"; {n_bad} bad lines" if n_bad else ""
    if lat:
        a = np.array(lat)
        amort = (a.sum() + load_ms) / len(a)
        print(
            f"{len(a)} spans: p50 {np.percentile(a, 50):.1f} ms, p95 {np.percentile(a, 95):.1f} ms, "
            f"max {a.max():.1f} ms; model load {load_ms:.0f} ms; mean incl. load {amort:.1f} ms" + tail,
            file=sys.stderr,
        )
    else:
        print(f"0 spans; model load {load_ms:.0f} ms" + tail, file=sys.stderr)


class PositionError(ValueError):
    """A --line/--col that is not in the text; ``str(e)`` says why."""


def read_source(path: str) -> str:
    """The text of ``path``: UTF-8 (a byte order mark dropped); a file that is not UTF-8 is read as
    Latin-1 (every byte one character, nothing lost), with a note on stderr. Unreadable: exit 2."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        _die(_open_error(path, e))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n")
        print(
            f"unmask: {path} is not UTF-8 (byte 0x{raw[e.start]:02x} on line {line}, 0-based); "
            "reading it as Latin-1 (ISO-8859-1)",
            file=sys.stderr,
        )
        return raw.decode("latin-1")


def cursor_offset(text: str, line: int, col: int) -> int:
    """The index into ``text`` of the 0-based ``line`` and ``col``, the column in UTF-16 code units
    (as in LSP and ``unmask context``). Lines end at ``\\n`` (a ``\\r`` before it is not a column).
    Raises :class:`PositionError` outside the text or inside a character's surrogate pair."""
    lines = text.split("\n")
    if not 0 <= line < len(lines):
        raise PositionError(f"--line {line} is outside the file: its lines are 0 to {len(lines) - 1} (0-based)")
    cur = lines[line].removesuffix("\r")
    width = len(cur.encode("utf-16-le")) // 2
    if not 0 <= col <= width:
        raise PositionError(
            f"--col {col} is outside line {line}: it is {width} UTF-16 code units long, so columns are 0 to {width}"
        )
    units = i = 0
    while units < col:
        units += 2 if ord(cur[i]) > 0xFFFF else 1
        i += 1
    if units != col:
        raise PositionError(
            f"--col {col} is inside the character {cur[i - 1]!r} on line {line} (it takes two UTF-16 code units); "
            f"use {col - 1} or {col + 1}"
        )
    return sum(len(x) + 1 for x in lines[:line]) + i


def _cut(path: str, line: int, col: int) -> tuple[str, str]:
    text = read_source(path)
    try:
        off = cursor_offset(text, line, col)
    except PositionError as e:
        _die(f"{path}: {e}")
    return text[:off], text[off:]


def cmd_complete(args) -> None:
    prefix, suffix = _cut(args.file, args.line, args.col)
    eng = _engine(args)
    bucket = auto_bucket(prefix, suffix)
    d = eng.infill(prefix, suffix, bucket=bucket, steps=args.steps, threshold=args.threshold, budget_ms=args.budget_ms)
    sys.stdout.write(d.text)
    if not d.text.endswith("\n"):
        sys.stdout.write("\n")
    print(
        f"-- {d.ms:.1f} ms ({d.encode_ms:.1f} ms encode, {d.step} steps), confidence {d.confidence[0]:.2f}",
        file=sys.stderr,
    )


def cmd_demo(args) -> None:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.panel import Panel
    from rich.text import Text

    console = Console()
    if args.file:
        prefix, suffix = _cut(args.file, args.line, args.col)
    else:
        prefix, suffix = DEMO_PREFIX, DEMO_SUFFIX
    t0 = time.perf_counter()
    eng = _engine(args)
    eng.warmup()
    console.print(
        f"[dim]model {eng.info.path} loaded in {(time.perf_counter() - t0) * 1000:.0f} ms "
        f"({eng.meta.get('n_params', 0) / 1e6:.1f}M params, backend {eng.backend.name})[/dim]"
    )
    bucket = auto_bucket(prefix, suffix)
    pre_tail = "".join(prefix.splitlines(keepends=True)[-12:])
    suf_head = "".join(suffix.splitlines(keepends=True)[:6])
    log: list[str] = []

    def view(draft_text: str, conf: float, done: bool) -> Group:
        body = Text(pre_tail, style="dim")
        body.append(draft_text, style="bold green" if done else "bold yellow")
        body.append(suf_head, style="dim")
        return Group(
            Panel(body, title="unmask demo: watch the completion grow", subtitle=f"confidence {conf:.2f}"),
            Text("\n".join(log[-8:]), style="cyan"),
        )

    # The model runs first, undisturbed: each draft keeps its own time stamp (d.ms), and the
    # deadline (--budget-ms) counts model work only. Then the drafts are replayed for the eyes.
    with console.status("[dim]the model is working...[/dim]"):
        drafts = list(
            eng.stream(
                prefix, suffix, bucket=bucket, steps=args.steps, threshold=args.threshold, budget_ms=args.budget_ms
            )
        )
    if not drafts:
        console.print("[bold]no draft[/bold] within the budget")
        return
    with Live(view("", 0.0, False), console=console, refresh_per_second=30, transient=False) as live:
        for i, d in enumerate(drafts):
            if i and args.delay:
                time.sleep(args.delay)
            log.append(f"step {d.step:2d}  {d.ms:7.1f} ms  (encode {d.encode_ms:.1f} ms)  {d.text!r}"[:160])
            live.update(view(d.text, d.confidence[0], d.done))
    console.print()
    console.print(f"[bold]done[/bold] in {d.ms:.1f} ms of model time over {d.step} steps")
    if args.delay:
        console.print(f"[dim](replayed with a {args.delay * 1000:.0f} ms pause per draft, not counted)[/dim]")


def cmd_eval(args) -> None:
    from unmask.engine import evaluate as ev

    eng = _engine(args)
    eng.warmup()
    data = Path(args.data) if args.data else ev.default_data_dir()
    if not data.is_dir():
        sys.exit(f"unmask: evaluation data not found at {data} (pass --data)")
    report: dict = {"model": str(eng.info.path), "backend": eng.backend.name, "sets": {}}
    limits = {"single": args.limit_single, "multi": args.limit_multi, "random": args.limit_random}
    for which in args.sets.split(","):
        tasks = ev.load_tasks(data, which, limits.get(which, 0))
        for oracle in (False, True) if args.oracle else (False,):
            rs = ev.evaluate(
                eng, tasks, which, oracle=oracle, steps=args.steps, threshold=args.threshold, budget_ms=args.budget_ms
            )
            s = ev.summarize(rs)
            key = f"{which}/{'oracle' if oracle else 'predicted'}"
            report["sets"][key] = s
            print(f"{key:20s} {json.dumps(s)}", flush=True)
            if args.dump:
                Path(args.dump).mkdir(parents=True, exist_ok=True)
                with open(Path(args.dump) / f"{which}-{'oracle' if oracle else 'predicted'}.jsonl", "w") as fh:
                    for r in rs:
                        fh.write(json.dumps(r.__dict__) + "\n")
    if args.steps_table:
        tasks = ev.load_tasks(data, "single", args.limit_table)
        table = []
        for steps, thr in [(1, 1.01), (2, 1.01), (4, 1.01), (8, 1.01), (16, 1.01), (32, 1.01), (32, 0.9), (32, 0.7)]:
            s = ev.summarize(ev.evaluate(eng, tasks, "single", steps=steps, threshold=thr))
            row = {"steps_cap": steps, "threshold": thr if thr <= 1 else None, **s}
            table.append(row)
            print(f"steps {steps:2d} threshold {row['threshold']}: {json.dumps(s)}", flush=True)
        report["steps_table"] = table
    report.update(
        {
            "steps": args.steps,
            "threshold": args.threshold,
            "budget_ms": args.budget_ms,
            "command": "unmask " + " ".join(sys.argv[1:]),
        }
    )
    if args.write:
        from unmask.engine import modelcard

        meta_path = eng.info.path / "model.json"
        meta = json.loads(meta_path.read_text())
        meta["eval"] = report
        meta_path.write_text(json.dumps(meta, indent=1) + "\n")
        print(f"wrote eval numbers into {meta_path} and {modelcard.write(eng.info.path)}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


def cmd_train(args, rest: list[str]) -> None:
    try:
        from unmask.engine import train
    except ImportError as e:
        sys.exit(f"unmask train needs PyTorch: pip install torch==2.13.0 && pip install -e '.[train]' ({e})")
    train.main(rest)


def cmd_export(args, rest: list[str]) -> None:
    try:
        from unmask.engine import export
    except ImportError as e:
        sys.exit(f"unmask export needs PyTorch and onnx: pip install -e '.[train]' ({e})")
    export.main(rest)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="unmask", description="local masked-diffusion code completion")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser(
        "infill",
        help="batch infill: JSONL {id, prefix, suffix, bucket} -> {id, completion, ms, steps} or {id, error}",
        description="Fill the hole between prefix and suffix for every row of a JSONL file.",
        epilog=INFILL_ROWS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--jsonl", required=True, help="input JSONL, UTF-8 ('-' for stdin)")
    p.add_argument("--out", required=True, help="output JSONL ('-' for stdout)")
    _add_engine_args(p)

    p = sub.add_parser(
        "complete",
        help="complete FILE at a 0-based line/column and print timings",
        epilog=SOURCE_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="the file (UTF-8; otherwise read as Latin-1, with a note)")
    p.add_argument("--line", type=int, required=True, help="0-based line (lines end at \\n)")
    p.add_argument("--col", type=int, required=True, help="0-based column in UTF-16 code units, as in LSP")
    _add_engine_args(p)

    p = sub.add_parser(
        "demo",
        help="watch a completion grow draft by draft in the terminal",
        epilog=SOURCE_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", help="complete in this file (default: a built-in example)")
    p.add_argument("--line", type=int, default=0, help="0-based line in FILE")
    p.add_argument("--col", type=int, default=0, help="0-based column in FILE, in UTF-16 code units")
    p.add_argument(
        "--delay",
        type=float,
        default=0.25,
        help="pause between drafts when they are replayed, so you can watch (s); "
        "the model runs first, so neither its time nor --budget-ms includes the pauses",
    )
    _add_engine_args(p)

    p = sub.add_parser("eval", help="HumanEval infilling: pass@1 and exact match")
    p.add_argument("--data", help="humaneval-infilling directory (default: ../shared/eval/humaneval-infilling)")
    p.add_argument("--sets", default="single,multi,random")
    p.add_argument("--limit-single", type=int, default=0, help="evaluate an even spread of N tasks (0: all)")
    p.add_argument("--limit-multi", type=int, default=500)
    p.add_argument("--limit-random", type=int, default=0, help="an even spread of N random-span tasks (0: all)")
    p.add_argument("--no-oracle", dest="oracle", action="store_false", help="skip the given-length (oracle) runs")
    p.add_argument("--steps-table", action="store_true", help="also the quality-vs-steps table (single-line)")
    p.add_argument("--limit-table", type=int, default=300, help="single-line tasks per row of the steps table")
    p.add_argument("--write", action="store_true", help="store the numbers in the model's model.json")
    p.add_argument("--json", help="write the report to this file")
    p.add_argument("--dump", help="directory for per-task results")
    _add_engine_args(p)

    sub.add_parser("train", help="train a model (python -m unmask.engine.train --help)", add_help=False)
    sub.add_parser("export", help="export a run to a model directory", add_help=False)
    sub.add_parser("context", help="show what the model would see at FILE --line L --col C", add_help=False)
    sub.add_parser(
        "nes",
        help="batch next-edit prediction: JSONL {id, current, cursor, history} -> {id, edits, ms}",
        add_help=False,
    )
    sub.add_parser("playground", help="browser playground: Monaco on loopback, live drafts", add_help=False)
    sub.add_parser("bench", help="diffusion vs AR baseline on HumanEval (bench/ar_vs_diffusion.py)", add_help=False)

    p = sub.add_parser("serve", help="run the language server (unmask serve --help)", add_help=False)
    sub.add_parser("engine", help="team engine: `unmask engine serve` (one model for many editors)", add_help=False)

    p = sub.add_parser("doctor", help="check the install and the model")
    p.add_argument("--model", help="model directory (default: the shipped model)")
    p.add_argument("--backend", default="onnx", choices=["onnx", "torch"])
    p.add_argument("--engine", metavar="URL", help="also check the team engine at URL (token: $UNMASK_ENGINE_TOKEN)")

    args, rest = ap.parse_known_args(argv)
    if args.cmd == "train":
        return cmd_train(args, rest)
    if args.cmd == "export":
        return cmd_export(args, rest)
    if args.cmd == "playground":
        from unmask.web.playground import main as playground_main

        sys.exit(playground_main(rest))
    if args.cmd == "nes":
        from unmask.lsp.nes import cli as nes_cli

        sys.exit(nes_cli(rest))
    if args.cmd == "bench":
        import runpy

        script = Path(__file__).resolve().parents[1] / "bench" / "ar_vs_diffusion.py"
        if not script.is_file():
            sys.exit(f"unmask bench needs a source checkout (pip install -e .): {script} is missing")
        return runpy.run_path(str(script), run_name="unmask_bench")["main"](rest)
    if args.cmd == "context":
        from unmask.context.cli import main as context_main

        sys.exit(context_main(rest))
    if args.cmd == "serve":
        from unmask.lsp.server import main as serve_main

        return serve_main(rest)
    if args.cmd == "engine":
        if rest[:1] != ["serve"]:
            ap.error("usage: unmask engine serve [--help]")
        from unmask.engine.team import main as engine_main

        sys.exit(engine_main(rest[1:]))
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.cmd == "doctor":
        from unmask.lsp.doctor import main as doctor_main

        return doctor_main(args.model, args.backend, args.engine)
    {"infill": cmd_infill, "complete": cmd_complete, "demo": cmd_demo, "eval": cmd_eval}[args.cmd](args)


if __name__ == "__main__":
    main()
