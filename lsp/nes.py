"""Next-edit prediction: from (file, cursor, recent edit) to the follow-up edits, in one model call.

    result = predict(engine, text, (line, character), history_diff)
    result.edits  # [{"range": {"start": {...}, "end": {...}}, "text": ...}] (LSP, UTF-16)

1. :func:`unmask.context.nes.candidates` lists the regions a follow-up may touch (other
   uses of a renamed word, call sites of a changed signature, lines of the same shape,
   the line below).
2. Every candidate becomes a hole in one sequence: the edit's diff, then excerpts of the
   file around the candidates (``<|sep|>`` between excerpts) — so all candidates are
   denoised together in one batch (:meth:`unmask.engine.infill.Engine.stream_edit`).
3. A candidate is proposed only when the model's text differs from what is there now and
   the model is confident about it (``min_confidence``), and (``syntax_gate``, on by
   default) when it does not make code that parsed fail to parse; otherwise silence. Three
   rules, on by default, decide candidates without the model, because the shipped model
   does not yet follow the edit history (measured: BENCHMARKS.md): at the other uses of a
   renamed word the diff's new word is proposed (``rename_rule``), at a line of the
   edited line's shape the edit's change is made where it carries over (``replay_rule``,
   :func:`unmask.context.nes.replay`), and at the calls of a function whose parameters
   changed the arguments are rewritten for them (``signature_rule``,
   :mod:`unmask.context.signature`). Only the remaining candidates go to the model.

Used by ``unmask nes`` (batch JSONL) and the language server's next-edit request. It
knows the engine's and the context layer's public APIs and LSP position encoding; no
pygls, no model internals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from unmask.context.nes import IDENT, Candidate, candidates
from unmask.context.syntax import syntax_errors
from unmask.engine.edits import Gap, Hole, history_text

EXCERPT_LINES = 2  # lines kept above and below each candidate
DEFAULT_MIN_CONFIDENCE = 0.75
# Renamed words are propagated by rule: the shipped model does not follow the edit history
# yet (its proposals at renamed words are measured in BENCHMARKS.md, "Next-edit prediction").
DEFAULT_RENAME_RULE = True
# A change that carries over to sibling lines of the edited line's shape is replayed there by
# rule (measured on shared/eval/nes: BENCHMARKS.md, "Next-edit prediction").
DEFAULT_REPLAY_RULE = True
# Call sites of a function whose parameters changed get their arguments rewritten by rule.
DEFAULT_SIGNATURE_RULE = True


@dataclass
class NesResult:
    edits: list[dict]
    ms: float
    candidates: int = 0
    considered: list[dict] = field(default_factory=list)  # every fitted candidate: kind, now, proposed, confidence


def utf16_col(line: str, chars: int) -> int:
    return len(line[:chars].encode("utf-16-le")) // 2


def offset_of(text: str, line: int, character: int) -> int:
    """Character offset of an LSP position (UTF-16 column); clamped to the text."""
    lines = text.split("\n")
    line = max(0, min(line, len(lines) - 1))
    base = sum(len(x) + 1 for x in lines[:line])
    s, units = lines[line], 0
    for i, ch in enumerate(s):
        if units >= character:
            return base + i
        units += 2 if ord(ch) > 0xFFFF else 1
    return base + len(s)


def position_of(text: str, offset: int) -> dict:
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return {"line": line, "character": utf16_col(text[start:], offset - start)}


def _bucket(n_tokens: int, kind: str) -> int:
    need = n_tokens + (2 if kind == "rename" else 6)
    for b in (8, 16, 32, 64):
        if b >= need:
            return b
    return 64


def segments_for(text: str, cands: list[Candidate], seed_line: int, n_tokens) -> list:
    """File excerpts around the candidates (and the edit) with a hole per candidate, gaps between."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln))
    keep: set[int] = set()
    for c in cands:
        i = text.count("\n", 0, c.start)
        keep.update(range(i - EXCERPT_LINES, i + EXCERPT_LINES + 1))
    keep.update(range(seed_line - EXCERPT_LINES, seed_line + EXCERPT_LINES + 1))
    keep = {i for i in keep if 0 <= i < len(lines)}
    segs: list = []
    by_start = sorted(cands, key=lambda c: c.start)
    k = 0
    prev = -2
    for i in sorted(keep):
        if i != prev + 1 and segs:
            segs.append(Gap())
        prev = i
        cur, end = starts[i], starts[i + 1]
        while k < len(by_start) and by_start[k].start < end:
            c = by_start[k]
            segs.append(text[cur : c.start])
            segs.append(Hole(text[c.start : c.end], _bucket(n_tokens(text[c.start : c.end]), c.kind)))
            cur = max(cur, c.end)
            k += 1
        if cur < end:
            segs.append(text[cur:end])
    return [s for s in segs if not (isinstance(s, str) and not s)]


def _accept(kind: str, now: str, new: str) -> bool:
    if new.strip() == now.strip() or not new.strip():
        return False
    if kind == "rename":
        return bool(IDENT.fullmatch(new.strip()))
    return "\n" not in new.strip()


def syntax_veto(text: str, edits: list[dict], language: str | None) -> list[int]:
    """Indices of ``edits`` that each add a syntax error to ``text`` (see :mod:`unmask.context.syntax`).

    One parse of the text with all edits applied; only when that is worse, one per edit.
    Nothing is vetoed for a language without a grammar.
    """
    if not edits:
        return []
    before = syntax_errors(text, language)
    if before is None or syntax_errors(apply_edits(text, edits), language) <= before:
        return []
    return [i for i, e in enumerate(edits) if syntax_errors(apply_edits(text, [e]), language) > before]


def syntax_gate_edits(text: str, edits: list[dict], considered: list[dict], language: str | None):
    """``edits`` less the ones :func:`syntax_veto` rejects; their ``considered`` entries are marked.

    ``edits[j]`` is the proposal of the j-th shown entry of ``considered`` (as :func:`predict` builds
    them). Rename-rule edits are never vetoed: they replace a word with a word. Replay- and
    signature-rule edits are checked like the model's.
    """
    shown = [c for c in considered if c["shown"]]
    checked = [j for j, c in enumerate(shown) if c.get("rule") != "rename"]
    vetoed = {checked[i] for i in syntax_veto(text, [edits[j] for j in checked], language)}
    for j in vetoed:
        shown[j].update(shown=False, vetoed="syntax")
    return [e for j, e in enumerate(edits) if j not in vetoed]


def rule_for(c: Candidate, rename_rule: bool, replay_rule: bool, signature_rule: bool) -> str | None:
    """Which rule decides candidate ``c`` without the model: "rename", "replay", "signature" or None."""
    if rename_rule and c.kind == "rename":
        return "rename"
    if replay_rule and c.kind == "shape" and c.hint:
        return "replay"
    if signature_rule and c.kind == "call" and c.hint:
        return "signature"
    return None


def predict(
    engine,
    text: str,
    cursor: tuple[int, int],
    history: str,
    *,
    language: str | None = "python",
    budget_ms: float | None = 250,
    steps: int = 16,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    max_candidates: int = 10,
    rename_rule: bool = DEFAULT_RENAME_RULE,
    replay_rule: bool = DEFAULT_REPLAY_RULE,
    signature_rule: bool = DEFAULT_SIGNATURE_RULE,
    syntax_gate: bool = True,
) -> NesResult:
    """Follow-up edits for ``text`` after the edit ``history`` (a unified diff), cursor in LSP terms.

    rename_rule: propose the renamed word at its other uses without asking the model (the
    diff says what it became).
    replay_rule: at a line of the edited line's shape where the edit's change carries over
    (:func:`unmask.context.nes.replay`), propose that line without asking the model.
    signature_rule: at a call of a function whose parameters the edit changed, propose the
    arguments rewritten for the new parameters (:mod:`unmask.context.signature`).
    The model decides every other candidate, in one batch; when the rules decide all of
    them, or the engine does not propose edits (``engine.proposes_edits``: model.json's
    ``next_edit.model_proposals``, off for the shipped base), the model is not called.
    syntax_gate: drop a proposal that makes the file fail to parse where it parsed
    (rename-rule edits are never dropped: they replace a word with a word).
    """
    t0 = time.perf_counter()
    off = offset_of(text, *cursor)
    cands = candidates(text, off, history, language=language, max_candidates=max_candidates)  # by position
    if not cands:
        return NesResult([], (time.perf_counter() - t0) * 1000)
    rules = [rule_for(c, rename_rule, replay_rule, signature_rule) for c in cands]
    asked = [c for c, r in zip(cands, rules) if r is None]
    texts: dict[int, str] = {}
    confs: dict[int, float] = {}
    if asked and getattr(engine, "proposes_edits", True):  # a model that cannot follow edits is not asked
        tok = engine.tok
        segs = segments_for(text, asked, cursor[0], lambda s: len(tok.encode(s)))
        prep = engine.prepare_edit(history_text(history), segs)
        remaining = None if budget_ms is None else max(1.0, budget_ms - (time.perf_counter() - t0) * 1000)
        drafts = list(engine.stream_prepared(prep, budget_ms=remaining, steps=steps))
        draft = drafts[-1] if drafts else None
        for h, c in enumerate(asked[: len(prep.buckets)]):  # the candidates that fitted the window
            texts[c.start] = draft.texts[h].split("\n", 1)[0] if draft else text[c.start : c.end]
            confs[c.start] = draft.confidence[h] if draft else 0.0
    edits, considered = [], []
    for c, rule in zip(cands, rules):
        now = text[c.start : c.end]
        if rule:
            new, conf, ok = c.hint, 1.0, True
        elif c.start in texts:
            new, conf = texts[c.start], confs[c.start]
            if c.kind != "rename":
                new = new.strip()
            ok = _accept(c.kind, now, new) and conf >= min_confidence
        else:
            continue  # did not fit the model's window
        considered.append(
            {"kind": c.kind, "rule": rule, "now": now, "proposed": new, "confidence": round(conf, 4), "shown": ok}
        )
        if ok:
            edits.append(
                {"range": {"start": position_of(text, c.start), "end": position_of(text, c.end)}, "text": new.strip()}
            )
    if syntax_gate:
        edits = syntax_gate_edits(text, edits, considered, language)
    return NesResult(edits, (time.perf_counter() - t0) * 1000, len(cands), considered)


def history_diff(text: str, edits: list, path: str = "file", burst_gap_s: float = 3.0, near_lines: int = 6) -> str:
    """The user's last logical edit as a unified diff, rebuilt from the server's change records.

    ``edits`` are the document's recorded changes, oldest first, each with ``offset`` (code
    points before it in the text it applied to), ``removed``, ``inserted`` and ``time``.
    The newest change and the ones before it that came in one burst (at most
    ``burst_gap_s`` apart, within ``near_lines`` lines of each other) are undone from
    ``text``; the diff between that text and ``text`` is the edit. Typing a new name
    character by character thus reads as one ``-old``/``+new`` line pair. Empty when the
    burst changed nothing (typed and deleted again).
    """
    import difflib

    if not edits:
        return ""
    before = text
    newest = edits[-1]
    anchor = text.count("\n", 0, min(len(text), newest.offset))
    prev_time = newest.time
    for e in reversed(edits):
        if prev_time - e.time > burst_gap_s:
            break
        line = before.count("\n", 0, min(len(before), e.offset))
        if abs(line - anchor) > near_lines:
            break
        if before[e.offset : e.offset + len(e.inserted)] != e.inserted:
            break  # records out of step with the text (a full resync happened): stop here
        before = before[: e.offset] + e.removed + before[e.offset + len(e.inserted) :]
        prev_time = e.time
    if before == text:
        return ""
    a, b = before.splitlines(keepends=True), text.splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, f"a/{path}", f"b/{path}", n=3))


def apply_edits(text: str, edits: list[dict]) -> str:
    """``text`` with LSP-range ``edits`` applied (non-overlapping; applied from the end)."""
    spans = []
    for e in edits:
        r = e["range"]
        a = offset_of(text, r["start"]["line"], r["start"]["character"])
        b = offset_of(text, r["end"]["line"], r["end"]["character"])
        spans.append((a, b, e["text"]))
    for a, b, t in sorted(spans, reverse=True):
        text = text[:a] + t + text[b:]
    return text


RULES = {  # flag -> (predict's keyword, default, help)
    "--rename-rule": ("rename_rule", DEFAULT_RENAME_RULE, "renamed words: the diff's new word at their other uses"),
    "--replay-rule": ("replay_rule", DEFAULT_REPLAY_RULE, "lines of the edited line's shape: the same change"),
    "--signature-rule": ("signature_rule", DEFAULT_SIGNATURE_RULE, "calls of a changed signature: arguments rewritten"),
}


def add_rule_flags(ap) -> None:
    """``--[no-]rename-rule``, ``--[no-]replay-rule``, ``--[no-]signature-rule`` (product defaults)."""
    import argparse

    for flag, (dest, default, what) in RULES.items():
        ap.add_argument(
            flag, dest=dest, action=argparse.BooleanOptionalAction, default=default, help=f"{what}, without the model"
        )


def rule_kwargs(args) -> dict:
    """predict's rule keywords from arguments parsed with :func:`add_rule_flags`."""
    return {dest: getattr(args, dest) for dest, _, _ in RULES.values()}


def cli(argv: list[str] | None = None) -> int:
    """``unmask nes --jsonl IN --out OUT``: batch next-edit prediction (see the module docstring)."""
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser(prog="unmask nes", description="batch next-edit prediction over JSONL")
    ap.add_argument("--jsonl", required=True, help="input: {id, current, cursor: {line, character}, history, path?}")
    ap.add_argument("--out", required=True, help="output JSONL ('-' for stdout): {id, edits, ms}")
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--budget-ms", type=float, default=250, help="deadline per request (0: none)")
    ap.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE)
    add_rule_flags(ap)
    args = ap.parse_args(argv)

    from unmask.engine.infill import Engine
    from unmask.engine.runtime import ModelError, backend_config

    try:
        eng = Engine(backend_config("onnx", args.model, args.threads))
    except ModelError as e:
        print(f"unmask nes: {e}", file=sys.stderr)
        return 1
    eng.warmup()
    src = open(args.jsonl, encoding="utf-8") if args.jsonl != "-" else sys.stdin
    out = open(args.out, "w", encoding="utf-8") if args.out != "-" else sys.stdout
    bad = 0
    for lineno, line in enumerate(src, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            text, history, cur = rec["current"], rec.get("history", ""), rec["cursor"]
            if not isinstance(text, str) or not isinstance(history, str):
                raise TypeError("current and history must be strings")
            pos = (int(cur["line"]), int(cur["character"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            bad += 1
            print(f"unmask nes: line {lineno}: skipped ({e})", file=sys.stderr)
            out.write(json.dumps({"id": None, "error": str(e), "line": lineno}) + "\n")
            continue
        path = rec.get("path") or ""
        lang = "python" if path.endswith(".py") or not path else None
        res = predict(
            eng,
            text,
            pos,
            history,
            language=lang,
            budget_ms=args.budget_ms or None,
            min_confidence=args.min_confidence,
            **rule_kwargs(args),
        )
        out.write(json.dumps({"id": rec.get("id"), "edits": res.edits, "ms": round(res.ms, 2)}) + "\n")
        out.flush()
    if out is not sys.stdout:
        out.close()
    return 1 if bad else 0
