"""Load on one team-engine replica: N simulated typists, ``@serve.batch`` on and off, side by side.

    python bench/team_load.py                              # N = 1, 8, 32, 128; 20 s each; both modes
    python bench/team_load.py --typists 1,8 --seconds 10 --json /tmp/load.json --plot /tmp/load.png

One process starts a local Ray instance and Ray Serve with two applications of the team engine
(:mod:`unmask.engine.team`), each one replica of the shipped model: ``/on`` batches model calls
across requests (``--max-batch-size``, ``--batch-wait-ms``), ``/off`` runs them one at a time
(max batch size 1). For each N, both modes run in turn (so the machine's noise hits both).

A typist is a thread with its own :class:`~unmask.engine.remote.RemoteEngine` (its own user)
writing a region of a real source file of this repository anew, word by word (the region is
removed from the document first): after each word it asks for a single-line completion at the
cursor (pieces = the text before and after, the product's 250 ms budget) and waits for the
answer, then types the next word (think time ``len(word) x 80-150 ms``, seeded). Each
typist's document keeps its context cache on the engine. Loopback only; bounded in time.

Reported per (N, mode): requests/s answered, latency p50/p95 (request sent -> last draft
received), the share that came back with text, the mean batch size and queue wait the engine
saw (``/v1/stats``). First, one user on the idle engine: in-process vs remote on loopback,
alternating on the same requests: the price of the hop. CPU flags are printed; pause other
work (training) while it runs.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from cpuinfo import cpu_flags  # bench/ is on sys.path when a bench script runs

ROOT = Path(__file__).resolve().parent.parent
FILES = [
    "lsp/completer.py",
    "lsp/worker.py",
    "context/spans.py",
    "engine/causal.py",
    "lsp/server.py",
    "context/pack.py",
]


def regions(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(text before, region to type, text after) for n typists: function bodies of real files."""
    rng = random.Random(seed)
    out = []
    texts = [(ROOT / f).read_text() for f in FILES]
    while len(out) < n:
        text = rng.choice(texts)
        lines = text.splitlines(keepends=True)
        starts = [i for i, ln in enumerate(lines) if ln.startswith("        ") and ln.strip() and i > 20]
        i = rng.choice(starts)
        region = "".join(lines[i : i + 6])
        out.append(("".join(lines[:i]), region, "".join(lines[i + 6 :])))
    return out


def words(region: str) -> list[str]:
    """The region cut after each word (the places a typist pauses and a completion is asked)."""
    return [m.end() for m in re.finditer(r"\w+|[^\w\s]+|\n\s*", region)]


class Typist(threading.Thread):
    def __init__(self, url: str, doc: tuple[str, str, str], seed: int, until: float, warm_until: float, budget: float):
        super().__init__(daemon=True)
        from unmask.engine.remote import RemoteEngine

        self.engine = RemoteEngine(url)
        self.before, self.region, self.after = doc
        self.rng = random.Random(seed)
        self.until, self.warm_until, self.budget = until, warm_until, budget
        self.records: list[tuple[float, bool]] = []  # (latency ms, came back with text) after the warm-up
        self.cache: list[tuple[int, int]] = []  # (context tokens reused, prefilled) per request after the warm-up
        self.replicas: set[int] = set()  # the replicas (pids) that answered this typist
        self.doc = f"file:///typist{seed}.py"

    def run(self) -> None:
        cuts = words(self.region)
        time.sleep(self.rng.random())  # typists do not start in step
        k = 0
        while time.time() < self.until:
            end = cuts[k % len(cuts)]
            typed = self.region[:end]  # the region is being written: what follows the cursor is the rest of the file
            suffix = "\n" + self.after if not typed.endswith("\n") else self.after
            if k and k % len(cuts) == 0:  # the region is done: start it over (the document is reset)
                time.sleep(0.5)
            t = time.perf_counter()
            start = time.time()
            try:
                drafts = list(
                    self.engine.stream_holes(
                        [self.before + typed, suffix], [32], budget_ms=self.budget, one_line=True, cache=self.doc
                    )
                )
            except Exception:  # noqa: BLE001 - counted as an answer without text
                drafts = []
            ms = (time.perf_counter() - t) * 1000
            if start >= self.warm_until:
                self.records.append((ms, bool(drafts and drafts[-1].text.strip())))
                if self.engine.last_cache and self.engine.last_engine:
                    self.cache.append((self.engine.last_cache["reused"], self.engine.last_cache["prefilled"]))
                    self.replicas.add(self.engine.last_engine.get("pid"))
            prev = cuts[k % len(cuts) - 1] if k % len(cuts) else 0
            time.sleep(max(0.05, (end - prev) * self.rng.uniform(0.08, 0.15)))  # typing the next word
            k += 1


def run_load(url: str, n: int, seconds: float, budget: float, seed: int, stats_url) -> dict:
    docs = regions(n, seed)
    typists = [Typist(url, docs[i], seed * 1000 + i, 0, 0, budget) for i in range(n)]  # each fetches /v1/info
    t0 = time.time()
    warm = t0 + min(3.0, seconds / 4)
    for t in typists:
        t.until, t.warm_until = t0 + seconds, warm
    before = stats_url() if stats_url else None  # one replica's figures: pass None with several replicas
    for t in typists:
        t.start()
    for t in typists:
        t.join(seconds + 30)
    after = stats_url() if stats_url else None
    recs = [r for t in typists for r in t.records]
    lat = [ms for ms, _ in recs]
    span = seconds - (warm - t0)
    calls = after["figures"]["model_calls"] - before["figures"]["model_calls"] if after else 0
    reused, prefilled = (sum(x) for x in zip(*[c for t in typists for c in t.cache])) if recs else (0, 0)
    batches = after["figures"]["batches"] - before["figures"]["batches"] if after else 0
    return {
        "typists": n,
        "requests": len(recs),
        "rps": round(len(recs) / span, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if lat else None,
        "p95_ms": round(float(np.percentile(lat, 95)), 1) if lat else None,
        "with_text": round(sum(ok for _, ok in recs) / len(recs), 3) if recs else None,
        "mean_batch": round(calls / batches, 2) if batches else None,
        "queue_wait_p95_ms": after["figures"]["queue_wait_ms"]["p95"] if after else None,
        "reused_share": round(reused / (reused + prefilled), 3) if reused + prefilled else None,
        "prefilled_per_request": round(prefilled / len(recs), 1) if recs else None,
        "replicas_per_typist": round(statistics.mean(len(t.replicas) for t in typists if t.replicas), 2)
        if any(t.replicas for t in typists)
        else None,
    }


def hop_price(url: str, n: int, budget: float) -> dict:
    """One user: the in-process engine and the remote one alternate on the same requests."""
    from unmask.engine.infill import Engine
    from unmask.engine.remote import RemoteEngine
    from unmask.engine.runtime import backend_config

    local = Engine(backend_config("onnx", None, 2))
    remote = RemoteEngine(url)
    before, region, after = regions(1, 7)[0]
    cuts = words(region)
    times: dict[str, list[float]] = {"in-process": [], "remote": []}
    same = 0
    for k in range(n):
        end = cuts[k % len(cuts)]
        pieces = [before + region[:end], "\n" + after]
        texts = []
        for name, eng in (
            (("in-process", local), ("remote", remote)) if k % 2 else (("remote", remote), ("in-process", local))
        ):
            t = time.perf_counter()
            d = list(eng.stream_holes(pieces, [32], budget_ms=budget, one_line=True, cache="hop"))
            times[name].append((time.perf_counter() - t) * 1000)
            texts.append(d[-1].text if d else "")
        same += texts[0] == texts[1]
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "requests": n,
        "in_process_p50_ms": round(med["in-process"], 1),
        "remote_p50_ms": round(med["remote"], 1),
        "remote_over_in_process": round(med["remote"] / med["in-process"], 2),
        "hop_ms_p50": round(statistics.median([r - i for r, i in zip(times["remote"], times["in-process"])]), 1),
        "same_text": same,
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, style in (("on", "o-"), ("off", "s--")):
        rs = [r for r in rows if r["mode"] == mode]
        ns = [r["typists"] for r in rs]
        a.plot(ns, [r["p95_ms"] for r in rs], style, label=f"batching {mode} p95")
        a.plot(ns, [r["p50_ms"] for r in rs], style, alpha=0.4, label=f"batching {mode} p50")
        b.plot(ns, [r["rps"] for r in rs], style, label=f"batching {mode}")
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("typists")
        ax.grid(alpha=0.3)
    a.axhline(300, color="gray", lw=0.8, ls=":")
    a.set_ylabel("latency per request (ms)")
    a.legend(fontsize=8)
    b.set_ylabel("requests answered per second")
    b.legend(fontsize=8)
    fig.suptitle("one team-engine replica, 2 CPU cores: @serve.batch on vs off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def start_serve(port: int) -> str:
    """A local Ray instance and Ray Serve's HTTP proxy on loopback ``port``; the base URL."""
    import ray
    from ray import serve

    ray.init(include_dashboard=False, log_to_driver=False, object_store_memory=128 * 2**20)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--typists", default="1,8,32,128")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--budget-ms", type=float, default=250)
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--batch-wait-ms", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--port", type=int, default=8731)
    ap.add_argument("--hop-requests", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=str(ROOT / "bench" / "plots" / "team_load.json"))
    ap.add_argument("--plot", default=str(ROOT / "bench" / "plots" / "team_load.png"))
    args = ap.parse_args(argv)

    import ray
    from ray import serve

    from unmask.engine.remote import RemoteEngine
    from unmask.engine.team import build_app

    print(f"cpu flags: {cpu_flags()}; typists {args.typists}; {args.seconds} s each", flush=True)
    base = start_serve(args.port)
    for mode, size in (("on", args.max_batch_size), ("off", 1)):
        app = build_app(
            None, max_batch_size=size, batch_wait_ms=args.batch_wait_ms, threads=args.threads, cpus_per_replica=0.5
        )
        serve.run(app, name=mode, route_prefix=f"/{mode}")
    for mode in ("on", "off"):  # warm both replicas up
        RemoteEngine(f"{base}/{mode}").warmup()

    hop = hop_price(f"{base}/on", args.hop_requests, args.budget_ms)  # first: an idle engine
    print(json.dumps({"hop": hop}), flush=True)
    rows = []
    for n in [int(x) for x in args.typists.split(",")]:
        for mode in ("on", "off"):
            url = f"{base}/{mode}"
            probe = RemoteEngine(url)
            row = {"mode": mode, **run_load(url, n, args.seconds, args.budget_ms, args.seed + n, probe.health)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    serve.shutdown()
    ray.shutdown()

    result = {
        "command": "python bench/team_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpu_flags": cpu_flags(),
        "settings": vars(args),
        "rows": rows,
        "hop": hop,
    }
    Path(args.json).write_text(json.dumps(result, indent=1))
    plot(rows, Path(args.plot))
    print("\n| typists | batching | answered/s | p50 ms | p95 ms | with text | mean batch | queue wait p95 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['typists']} | {r['mode']} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{r['with_text']:.0%} | {r['mean_batch']} | {r['queue_wait_p95_ms']} |"
        )
    print(
        f"\none user, {hop['requests']} requests alternating: in-process p50 {hop['in_process_p50_ms']} ms, remote "
        f"p50 {hop['remote_p50_ms']} ms ({hop['remote_over_in_process']}x; hop p50 {hop['hop_ms_p50']} ms); "
        f"same text {hop['same_text']}/{hop['requests']}"
    )


if __name__ == "__main__":
    main()
