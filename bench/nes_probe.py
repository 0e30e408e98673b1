"""Does the model use the edit history? A probe on held-out synthetic renames (never ../shared/eval).

    python bench/nes_probe.py --n 60

For each rename case (bench/nes_dev.py: a name renamed on its first line in a held-out
corpus file), every other use of the old name is a hole. One forward pass with all slots
masked scores the new and the old word at each hole (sum of the slots' log-probabilities,
end-of-span included). Reported: how often the new word scores higher, and the mean
margin log P(new) - log P(old) with the edit's diff in the context vs with an empty diff:
a model that follows the edit must raise the new word's margin when it sees the diff.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nes_dev import rename_case, val_docs  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60, help="rename cases")
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus.jsonl"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    from unmask.context.nes import candidates
    from unmask.engine.edits import history_text
    from unmask.engine.infill import Engine
    from unmask.engine.runtime import backend_config
    from unmask.lsp import nes

    eng = Engine(backend_config("onnx", args.model, args.threads))
    sp = eng.tok.specials
    rng = random.Random(0)

    def log_probs(hist: str, segs: list):
        prep = eng.prepare_edit(hist, segs)
        kv = eng.backend.encode(prep.ctx_ids, prep.ctx_pos)
        logits = eng.backend.step(np.full((1, len(prep.slot_pos)), sp.mask, np.int64), prep.slot_pos[None], kv)[0]
        m = logits.max(-1, keepdims=True)
        return prep, logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))

    def score(word: str, lp: np.ndarray, idx: np.ndarray) -> float:
        ids = eng.tok.encode(word)[: len(idx) - 1]
        ids += [sp.eos] * (len(idx) - len(ids))
        return float(sum(lp[i, t] for i, t in zip(idx, ids)))

    with_hist, without, prefer = [], [], 0
    cases = 0
    for d in val_docs(args.corpus, args.n * 2):
        if cases >= args.n:
            break
        c = rename_case(d, rng)
        if c is None:
            continue
        text = c["current"]
        cands = candidates(text, nes.offset_of(text, *c["cursor"]), c["history"])
        if not any(x.kind == "rename" for x in cands):
            continue
        cases += 1
        segs = nes.segments_for(text, cands, c["cursor"][0], lambda s: len(eng.tok.encode(s)))
        prep, lp = log_probs(history_text(c["history"]), segs)
        prep0, lp0 = log_probs("", segs)
        for h, x in enumerate(sorted(cands, key=lambda x: x.start)[: min(len(prep.buckets), len(prep0.buckets))]):
            if x.kind != "rename":
                continue
            now = text[x.start : x.end]
            i1, i0 = np.where(prep.span_of == h)[0], np.where(prep0.span_of == h)[0]
            m1 = score(x.hint, lp, i1) - score(now, lp, i1)
            with_hist.append(m1)
            without.append(score(x.hint, lp0, i0) - score(now, lp0, i0))
            prefer += m1 > 0
    n = len(with_hist)
    print(f"{cases} rename cases, {n} holes at other uses of the renamed word")
    print(f"new word preferred (diff shown): {prefer}/{n} = {prefer / max(1, n):.1%}")
    print(
        f"mean margin log P(new) - log P(old): with the diff {np.mean(with_hist):.3f}, without {np.mean(without):.3f}"
    )
    print(f"mean shift caused by the diff: {np.mean(np.array(with_hist) - np.array(without)):+.3f} nats")


if __name__ == "__main__":
    main()
