"""Two team-engine replicas: each user's requests on one replica (``--routing user``) vs by load.

    python bench/team_affinity.py                          # N = 2, 4, 8 typists; 20 s each; both routings
    python bench/team_affinity.py --typists 4 --seconds 10 --json /tmp/aff.json

One process starts a local Ray instance and Ray Serve with two applications of the team engine
(:mod:`unmask.engine.team`), each of two replicas of the shipped model (one thread each):
``/user`` routes by the daemon's ``X-Session-Id`` (consistent hashing: a user's requests go to
one replica), ``/load`` by Serve's default (the less busy of two random replicas). For each N,
both run in turn (which one goes first alternates) with the same typists (bench/team_load.py's:
each writes a region of a real file of this repository word by word, a single-line completion
after each word, 250 ms budget).

Reported per (N, routing): the share of context tokens that came from a replica's cache (the
rest was prefilled), prefilled tokens per request, latency p50/p95, answers with text, and how
many replicas answered each typist; and, summed over both replicas (``/v1/stats`` asked as
different users until each replica has answered), the requests the engine saw, how many a newer
request of the same document superseded, how many expired (the daemon had stopped waiting), the
model calls (batched decoding steps and prefills) and the prefills that ran alone (more than a few
new tokens: they hold the model while they run). CPU flags are printed; pause other
work (training) while it runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from pathlib import Path

from cpuinfo import cpu_flags  # bench/ is on sys.path when a bench script runs
from team_load import run_load, start_serve

ROOT = Path(__file__).resolve().parent.parent
ROUTINGS = ("user", "load")
SUMMED = ("requests", "superseded", "cancelled", "expired", "model_calls", "prefills_alone", "dropped_calls")


def replica_figures(port: int, prefix: str, replicas: int = 2) -> dict:
    """The figures of every replica, summed (Serve routes ``/v1/stats`` to one replica: ask as different users
    until each has answered)."""
    seen: dict[int, dict] = {}
    for i in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", f"{prefix}/v1/stats", headers={"X-Session-Id": f"stats-{i}"})
        stats = json.loads(conn.getresponse().read())
        conn.close()
        seen[stats["pid"]] = stats["figures"]
        if len(seen) == replicas:
            break
    return {k: sum(f[k] for f in seen.values()) for k in SUMMED}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--typists", default="2,4,8")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--budget-ms", type=float, default=250)
    ap.add_argument("--port", type=int, default=8732)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=str(ROOT / "bench" / "plots" / "team_affinity.json"))
    args = ap.parse_args(argv)

    import ray
    from ray import serve

    from unmask.engine.remote import RemoteEngine
    from unmask.engine.team import build_app

    print(f"cpu flags: {cpu_flags()}; typists {args.typists}; {args.seconds} s each", flush=True)
    base = start_serve(args.port)
    for routing in ROUTINGS:
        app = build_app(None, affinity=routing == "user", threads=1, replicas=2, cpus_per_replica=0.25)
        serve.run(app, name=routing, route_prefix=f"/{routing}")
    for routing in ROUTINGS:  # warm the replicas up (a few users: both replicas of each)
        for i in range(6):
            eng = RemoteEngine(f"{base}/{routing}", user=f"warm-{i}")
            eng.warmup()
    rows = []
    for i, n in enumerate(int(x) for x in args.typists.split(",")):
        for routing in ROUTINGS if i % 2 == 0 else ROUTINGS[::-1]:  # each goes first in turn
            before = replica_figures(args.port, f"/{routing}")
            load = run_load(f"{base}/{routing}", n, args.seconds, args.budget_ms, args.seed + n, None)
            after = replica_figures(args.port, f"/{routing}")
            row = {"routing": routing, **load, **{f"engine_{k}": after[k] - before[k] for k in SUMMED}}
            for k in ("mean_batch", "queue_wait_p95_ms"):
                row.pop(k)
            rows.append(row)
            print(json.dumps(row), flush=True)
    serve.shutdown()
    ray.shutdown()

    result = {
        "command": "python bench/team_affinity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpu_flags": cpu_flags(),
        "settings": vars(args),
        "rows": rows,
    }
    Path(args.json).write_text(json.dumps(result, indent=1))
    print("\n| typists | routing | context from cache | prefilled/request | p50 ms | p95 ms | with text |", end="")
    print(" replicas/typist | engine requests | superseded | expired | model calls | prefills alone |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['typists']} | {r['routing']} | {r['reused_share']:.0%} | {r['prefilled_per_request']} | "
            f"{r['p50_ms']} | {r['p95_ms']} | {r['with_text']:.0%} | {r['replicas_per_typist']} | "
            f"{r['engine_requests']} | {r['engine_superseded']} | {r['engine_expired']} | {r['engine_model_calls']} | "
            f"{r['engine_prefills_alone']} |"
        )


if __name__ == "__main__":
    main()
