"""What the model thread's idle memory release costs a user: the release itself, and the next request.

    python bench/memory_release.py              # 12 rounds, the shipped model
    python bench/memory_release.py --rounds 30 --what trim   # glibc's trim alone (or: arena)

The server returns free memory to the OS once the model thread has idled ``IDLE_RELEASE_S``
(:mod:`unmask.lsp.worker`): a one-token run that shrinks ONNX Runtime's arena, then glibc's
``malloc_trim(0)``. A keystroke that arrives during the release waits for it, and the request after
a release grows the arena again. Each round times a request on a fresh document (a cold prefill of
about 2,500 characters and 8 steps, as after a pause at a new spot) after plain idling, then the
release, then the same kind of request after it: the two requests alternate, so machine noise
falls on both. Printed: the medians and the ratio, the release's median and maximum, CPU flags.

It knows the engine's public API and the worker's release; nothing of LSP.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time
from pathlib import Path

from cpuinfo import cpu_flags  # bench/ is on sys.path when a bench script runs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--model", default=None)
    ap.add_argument("--what", choices=("both", "arena", "trim"), default="both", help="which part of the release")
    args = ap.parse_args(argv)

    from unmask.engine.infill import Engine
    from unmask.engine.runtime import backend_config

    eng = Engine(backend_config("onnx", args.model))
    trim = ctypes.CDLL(None).malloc_trim
    src = (ROOT / "context" / "sources.py").read_text()

    def request(i: int) -> float:
        text = src[(i * 200) % (len(src) - 2600) :][:2500]
        t = time.perf_counter()
        list(eng.stream_holes([text, "\n"], [16], budget_ms=None, steps=8, cache=f"doc{i}"))
        return (time.perf_counter() - t) * 1000

    for i in range(3):
        request(i)
    plain, after, release = [], [], []
    for r in range(args.rounds):
        plain.append(request(100 + 2 * r))
        t = time.perf_counter()
        if args.what != "trim":
            eng.backend.release_memory()
        if args.what != "arena":
            trim(0)
        release.append((time.perf_counter() - t) * 1000)
        after.append(request(101 + 2 * r))
    print(
        f"CPU flags: {cpu_flags()}; load average {os.getloadavg()[0]:.2f}; {args.rounds} rounds; release: {args.what}"
    )
    p, a = statistics.median(plain), statistics.median(after)
    print(f"request after plain idle: median {p:.1f} ms")
    print(f"request after a release:  median {a:.1f} ms ({a / p:.2f}x)")
    print(f"the release itself:       median {statistics.median(release):.1f} ms, max {max(release):.1f} ms")


if __name__ == "__main__":
    main()
