"""Next-edit evaluation on ../shared/eval/nes (real multi-hunk commits) and a no-op set built from it.

    python bench/nes_eval.py                       # all 450 examples + 450 no-op cases
    python bench/nes_eval.py --limit 60 --json out.json
    python bench/nes_eval.py --data data/release_edits --min-confidence 0.6   # tune on held-out release edits

Scores (see ../shared/eval/nes/README.md): whole-file exact match after applying the
predicted edits, per-hunk precision and recall (line diff current->target vs
current->prediction; a predicted hunk counts when the same lines are replaced by the
same new lines), how often any edit was proposed, latency p50/p95, and per source of the
edits (each rule, the model) its hunks scored alone and how many no-op cases it spoke in.

No-op set (the right answer is silence): for each example, the commit's *last* hunk is
taken as the edit just made and the finished file (``target``) as ``current`` — the
commit is complete, nothing is due. Reported: the share of empty answers.

The system sees only path, current, cursor and history. Evaluation only: nothing here is
used for training or tuning.
"""

from __future__ import annotations

import argparse
import difflib
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval" / "nes"


def load(limit: int | None, data: Path | None = None) -> list[dict]:
    """The evaluation set, or with ``data`` the held-out split of a release-edit folder
    (:mod:`unmask.engine.release_edits`, same schema; one history length per change, the first
    hunk, as in the evaluation set; ``target`` rebuilt): the split that tunes, never the set."""
    rows = []
    if data is not None:
        from unmask.engine.release_edits import apply_remaining, iter_examples

        for ex in iter_examples(data, "heldout"):
            if ex["n_history"] == 1:
                rows.append(ex | {"target": apply_remaining(ex["current"], ex["remaining"])})
    for f in sorted(EVAL.glob("*.jsonl.gz")) if data is None else []:
        with gzip.open(f, "rt") as fh:
            rows += [json.loads(x) for x in fh]
    if limit and limit < len(rows):
        step = len(rows) / limit
        rows = [rows[int(i * step)] for i in range(limit)]
    return rows


def hunks(a: str, b: str) -> set[tuple[int, int, tuple[str, ...]]]:
    al, bl = a.splitlines(keepends=True), b.splitlines(keepends=True)
    ops = difflib.SequenceMatcher(a=al, b=bl, autojunk=False).get_opcodes()
    return {(i1, i2, tuple(bl[j1:j2])) for op, i1, i2, j1, j2 in ops if op != "equal"}


def noop_case(ex: dict) -> dict:
    """The finished file with the commit's last hunk as the edit just made."""
    rem = ex["remaining"]
    last = rem[-1]
    cur = ex["current"].splitlines(keepends=True)
    shift = sum(len(r["new_text"].splitlines(keepends=True)) - (r["end_line"] - r["start_line"]) for r in rem[:-1])
    before_lines = cur[:]
    for r in rem[:-1][::-1]:  # apply all but the last hunk, bottom-up
        before_lines[r["start_line"] : r["end_line"]] = r["new_text"].splitlines(keepends=True)
    target_lines = ex["target"].splitlines(keepends=True)
    diff = "".join(difflib.unified_diff(before_lines, target_lines, "a/" + ex["path"], "b/" + ex["path"], n=3))
    new = last["new_text"].splitlines(keepends=True)
    start = last["start_line"] + shift
    if new:
        line = start + len(new) - 1
        char = len(new[-1].rstrip("\n").encode("utf-16-le")) // 2
    else:
        line, char = start, 0
    return {
        "id": ex["id"] + ":noop",
        "path": ex["path"],
        "current": ex["target"],
        "cursor": {"line": line, "character": char},
        "history": diff,
    }


def main(argv: list[str] | None = None) -> None:
    from unmask.lsp import nes

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="an even spread of N examples (0: all 450)")
    ap.add_argument("--model", default=None)
    ap.add_argument(
        "--data", type=Path, default=None, help="a release_edits diff folder: score its held-out split instead (tuning)"
    )
    ap.add_argument("--budget-ms", type=float, default=250)
    ap.add_argument("--min-confidence", type=float, default=None)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-noop", action="store_true")
    ap.add_argument(
        "--model-proposals",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ask the model at the candidates the rules leave (default: model.json's next_edit.model_proposals)",
    )
    ap.add_argument("--json", type=Path, default=None, help="write per-example results here")
    ap.add_argument("--write", action="store_true", help="store the numbers in the model's model.json and MODEL.md")
    nes.add_rule_flags(ap)
    args = ap.parse_args(argv)

    from unmask.engine.infill import Engine
    from unmask.engine.runtime import backend_config

    eng = Engine(backend_config("onnx", args.model, args.threads))
    eng.warmup()
    if args.write and args.data:
        sys.exit("--write stores the evaluation set's figures: not with --data")
    if args.model_proposals is not None:
        eng.proposes_edits = args.model_proposals
    kw = {"budget_ms": args.budget_ms or None, **nes.rule_kwargs(args)}
    if args.min_confidence is not None:
        kw["min_confidence"] = args.min_confidence
    rows = load(args.limit, args.data)
    # the model runs once per case with the syntax gate off; the gated answer is the same edits
    # less nes.syntax_veto's, so both rows of the report come from one run
    gated_ms: list[float] = []

    def answer(case: dict) -> tuple[list[dict], list[dict], float, list[str]]:
        """Edits ungated and gated, ms, and who made each gated edit (a rule's name or "model")."""
        t0 = time.perf_counter()
        cur = (case["cursor"]["line"], case["cursor"]["character"])
        res = nes.predict(eng, case["current"], cur, case["history"], syntax_gate=False, **kw)
        ms = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        gated = nes.syntax_gate_edits(case["current"], res.edits, res.considered, "python")
        gated_ms.append(ms + (time.perf_counter() - t1) * 1000)
        sources = [c["rule"] or "model" for c in res.considered if c["shown"]]
        return res.edits, gated, ms, sources

    by_source: dict[str, dict[str, int]] = {}  # gated edits, scored one source at a time

    def tally_sources(ex: dict, gold_h: set, gated: list[dict], sources: list[str], noop: bool) -> None:
        for src in sorted(set(sources)):
            mine = [e for e, s in zip(gated, sources) if s == src]
            t = by_source.setdefault(src, {"hunks": 0, "correct": 0, "noop_cases_spoken": 0})
            if noop:
                t["noop_cases_spoken"] += 1
                continue
            pred_h = hunks(ex["current"], nes.apply_edits(ex["current"], mine))
            t["hunks"] += len(pred_h)
            t["correct"] += len(gold_h & pred_h)

    tallies = {v: {"exact": 0, "made": 0, "tp": 0, "n_pred": 0} for v in ("off", "on")}
    out, ms, n_gold = [], [], 0
    for ex in rows:
        plain, gated, t, sources = answer(ex)
        ms.append(t)
        gold_h = hunks(ex["current"], ex["target"])
        n_gold += len(gold_h)
        tally_sources(ex, gold_h, gated, sources, noop=False)
        for v, edits in (("off", plain), ("on", gated)):
            pred = nes.apply_edits(ex["current"], edits)
            pred_h = hunks(ex["current"], pred) if edits else set()
            tl = tallies[v]
            tl["exact"] += pred == ex["target"]
            tl["made"] += bool(edits)
            tl["tp"] += len(gold_h & pred_h)
            tl["n_pred"] += len(pred_h)
        out.append({"id": ex["id"], "edits": plain, "gated": gated, "ms": round(t, 1)})
    n = len(rows)
    noop_silent = {"off": 0, "on": 0}
    nms: list[float] = []
    if not args.no_noop:
        for ex in rows:
            plain, gated, t, sources = answer(noop_case(ex))
            tally_sources(ex, set(), gated, sources, noop=True)
            nms.append(t)
            noop_silent["off"] += not plain
            noop_silent["on"] += not gated

    def report_for(v: str) -> dict:
        tl = tallies[v]
        r = {
            "rename_rule": args.rename_rule,
            "replay_rule": args.replay_rule,
            "signature_rule": args.signature_rule,
            "syntax_gate": v == "on",
            "examples": n,
            "exact_match": tl["exact"] / n,
            "hunk_recall": tl["tp"] / max(1, n_gold),
            "hunk_precision": tl["tp"] / max(1, tl["n_pred"]),
            "predicted_rate": tl["made"] / n,
            "gold_hunks": n_gold,
            "predicted_hunks": tl["n_pred"],
            "p50_ms": statistics.median(ms),
            "p95_ms": sorted(ms)[int(0.95 * (n - 1))],
        }
        if v == "on":  # latency including the gate's parses
            g = gated_ms[:n]
            r |= {"p50_ms": statistics.median(g), "p95_ms": sorted(g)[int(0.95 * (n - 1))]}
        if nms:
            r |= {
                "noop_cases": n,
                "noop_silent_rate": noop_silent[v] / n,
                "noop_p95_ms": sorted(nms)[int(0.95 * (n - 1))],
            }
        return r

    report = report_for("on")
    report["by_source"] = {  # who made the (gated) edits: each source's hunks scored alone
        k: {**v, "precision": round(v["correct"] / max(1, v["hunks"]), 3)} for k, v in sorted(by_source.items())
    }
    report_off = report_for("off")
    print(json.dumps({"syntax gate off": report_off}, indent=1))
    print(json.dumps(report, indent=1))
    if args.write:
        from unmask.engine import modelcard

        pct = ("exact_match", "hunk_recall", "hunk_precision", "predicted_rate", "noop_silent_rate")
        card = {
            k: round(100 * v, 1) if k in pct else (round(v, 1) if isinstance(v, float) else v)
            for k, v in report.items()
        }
        card["command"] = "python bench/nes_eval.py " + " ".join(argv if argv is not None else sys.argv[1:])
        card["min_confidence"] = kw.get("min_confidence", nes.DEFAULT_MIN_CONFIDENCE)
        mj = Path(eng.info.file("model.json"))
        meta = json.loads(mj.read_text())
        card["without_syntax_gate"] = {
            k: round(100 * v, 1) if k in pct else (round(v, 1) if isinstance(v, float) else v)
            for k, v in report_off.items()
        }
        meta["eval_nes"] = card
        mj.write_text(json.dumps(meta, indent=1) + "\n")
        modelcard.write(mj.parent)
    if args.json:
        args.json.write_text(
            json.dumps({"report": report, "without_syntax_gate": report_off, "results": out}, indent=1)
        )


if __name__ == "__main__":
    main()
