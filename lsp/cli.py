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
    p.add_argument("--steps", type=int, default=32, help="denoising step cap")
    p.add_argument("--threshold", type=float, default=0.9, help="commit slots at least this confident")
    p.add_argument("--budget-ms", type=float, default=None, help="deadline per completion (anytime decoding)")


def cmd_infill(args) -> None:
    import numpy as np

    t_load = time.perf_counter()
    eng = _engine(args)
    eng.warmup()
    load_ms = (time.perf_counter() - t_load) * 1000
    src = open(args.jsonl, encoding="utf-8") if args.jsonl != "-" else sys.stdin
    out = open(args.out, "w", encoding="utf-8") if args.out != "-" else sys.stdout
    lat = []
    n_bad = 0
    for lineno, line in enumerate(src, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            prefix, suffix = rec["prefix"], rec.get("suffix", "")
            if not isinstance(prefix, str) or not isinstance(suffix, str):
                raise TypeError("prefix and suffix must be strings")
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            n_bad += 1
            print(f"unmask infill: line {lineno}: skipped ({e})", file=sys.stderr)
            out.write(json.dumps({"id": None, "error": str(e), "line": lineno}) + "\n")
            continue
        bucket = rec.get("bucket") or auto_bucket(prefix, suffix)
        d = eng.infill(
            prefix, suffix, bucket=bucket, steps=args.steps, threshold=args.threshold, budget_ms=args.budget_ms
        )
        lat.append(d.ms)
        out.write(
            json.dumps(
                {
                    "id": rec.get("id"),
                    "completion": d.text,
                    "ms": round(d.ms, 2),
                    "steps": d.step,
                    "confidence": round(d.confidence[0], 4),
                }
            )
            + "\n"
        )
        out.flush()
    if out is not sys.stdout:
        out.close()
    if lat:
        a = np.array(lat)
        amort = (a.sum() + load_ms) / len(a)
        print(
            f"{len(a)} spans: p50 {np.percentile(a, 50):.1f} ms, p95 {np.percentile(a, 95):.1f} ms, "
            f"max {a.max():.1f} ms; model load {load_ms:.0f} ms; mean incl. load {amort:.1f} ms"
            + (f"; {n_bad} bad lines" if n_bad else ""),
            file=sys.stderr,
        )


def cmd_complete(args) -> None:
    text = Path(args.file).read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True) or [""]
    if not 0 <= args.line < max(1, len(lines)) + (1 if text.endswith("\n") else 0):
        sys.exit(f"unmask: line {args.line} is outside {args.file} ({len(lines)} lines, 0-based)")
    offset = sum(len(x) for x in lines[: args.line])
    cur = lines[args.line] if args.line < len(lines) else ""
    col = min(args.col, len(cur.rstrip("\r\n")))
    prefix, suffix = text[: offset + col], text[offset + col :]
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
        text = Path(args.file).read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        off = sum(len(x) for x in lines[: args.line]) + args.col
        prefix, suffix = text[:off], text[off:]
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
            Panel(body, title="unmask demo: masked-diffusion infill", subtitle=f"confidence {conf:.2f}"),
            Text("\n".join(log[-8:]), style="cyan"),
        )

    with Live(view("", 0.0, False), console=console, refresh_per_second=30, transient=False) as live:
        for d in eng.stream(
            prefix, suffix, bucket=bucket, steps=args.steps, threshold=args.threshold, budget_ms=args.budget_ms
        ):
            log.append(f"step {d.step:2d}  {d.ms:7.1f} ms  (encode {d.encode_ms:.1f} ms)  {d.text!r}"[:160])
            live.update(view(d.text, d.confidence[0], d.done))
            if args.delay:
                time.sleep(args.delay)
    console.print()
    console.print(
        f"[bold]done[/bold] in {d.ms:.1f} ms of model time over {d.step} steps "
        f"(the {args.delay * 1000:.0f} ms pause per draft is only for your eyes)"
    )


def cmd_eval(args) -> None:
    from unmask.engine import evaluate as ev

    eng = _engine(args)
    eng.warmup()
    data = Path(args.data) if args.data else ev.default_data_dir()
    if not data.is_dir():
        sys.exit(f"unmask: evaluation data not found at {data} (pass --data)")
    report: dict = {"model": str(eng.info.path), "backend": eng.backend.name, "sets": {}}
    limits = {"single": args.limit_single, "multi": args.limit_multi, "random": 0}
    for which in args.sets.split(","):
        tasks = ev.load_tasks(data, which, limits.get(which, 0))
        for oracle in (False, True):
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

    p = sub.add_parser("infill", help="batch infill: JSONL {id, prefix, suffix} -> {id, completion, ms, steps}")
    p.add_argument("--jsonl", required=True, help="input JSONL ('-' for stdin)")
    p.add_argument("--out", required=True, help="output JSONL ('-' for stdout)")
    _add_engine_args(p)

    p = sub.add_parser("complete", help="complete FILE at a 0-based line/column and print timings")
    p.add_argument("file")
    p.add_argument("--line", type=int, required=True)
    p.add_argument("--col", type=int, required=True)
    _add_engine_args(p)

    p = sub.add_parser("demo", help="watch a completion denoise live in the terminal")
    p.add_argument("file", nargs="?")
    p.add_argument("--line", type=int, default=0)
    p.add_argument("--col", type=int, default=0)
    p.add_argument("--delay", type=float, default=0.25, help="pause between drafts so you can watch (s)")
    _add_engine_args(p)

    p = sub.add_parser("eval", help="HumanEval infilling: pass@1 and exact match")
    p.add_argument("--data", help="humaneval-infilling directory (default: ../shared/eval/humaneval-infilling)")
    p.add_argument("--sets", default="single,multi,random")
    p.add_argument("--limit-single", type=int, default=0, help="evaluate an even spread of N tasks (0: all)")
    p.add_argument("--limit-multi", type=int, default=500)
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

    p = sub.add_parser("doctor", help="check the install and the model")
    p.add_argument("--model", help="model directory (default: the shipped model)")
    p.add_argument("--backend", default="onnx", choices=["onnx", "torch"])

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
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.cmd == "doctor":
        from unmask.lsp.doctor import main as doctor_main

        return doctor_main(args.model, args.backend)
    {"infill": cmd_infill, "complete": cmd_complete, "demo": cmd_demo, "eval": cmd_eval}[args.cmd](args)


if __name__ == "__main__":
    main()
