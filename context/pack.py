"""Gather context for one completion and pack it into a token budget.

:func:`gather_context` is the one call: it chooses the span (:func:`spans.select_span`),
cuts the prefix and suffix around the cursor, runs the enabled context sources
(:data:`sources.SOURCES`), and packs their snippets by score into what is left of the
budget. Priorities: prefix (up to ``prefix_share`` of the budget) and suffix (up to
``suffix_share``) first; then snippets, best score first (score = source weight ×
relevance), each whole or cut to whole lines; whatever is left goes back to the prefix,
then the suffix. The result lists every piece with its source, score and token count, and
hands the engine its ``(pieces, buckets)``::

    res = gather_context(doc, line, col, index=ix, count_tokens=engine.tok.count)
    pieces, buckets = res.engine_pieces()   # snippets + prefix, suffix
    engine.stream_holes(pieces, buckets)

Sources are switched off for ablation with ``ContextConfig(sources=...)``; ``prefix`` and
``suffix`` can be switched off the same way.

It knows budgets, scores and the order of pieces; it knows nothing about the tokenizer
(``count_tokens`` is passed in; the default guesses ``len(text) // 3``), the model or LSP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..engine.anchor import stable_line_start, stable_start
from .document import EditRecord, ParsedDocument
from .index import WorkspaceIndex
from .sources import SOURCES, Piece, Request
from .spans import SpanChoice, SpanConfig, select_span

ALL_SOURCES = frozenset({"prefix", "suffix", *SOURCES})
WINDOW = 384  # the default model's window, in tokens


def default_count_tokens(text: str) -> int:
    return len(text) // 3


@dataclass(frozen=True)
class ContextConfig:
    budget: int | None = None  # context tokens; None: WINDOW - 1 - the span's bucket
    sources: frozenset[str] = ALL_SOURCES
    weights: dict[str, float] = field(default_factory=lambda: {
        "scope": 1.0, "definitions": 0.9, "recent": 0.8, "open": 0.6, "similar": 0.5,
    })  # fmt: skip
    prefix_share: float = 0.5  # of the budget, before snippets
    suffix_share: float = 0.15
    min_piece_tokens: int = 12  # don't pack a snippet cut shorter than this
    max_pieces: int = 12  # per source
    span: SpanConfig = field(default_factory=SpanConfig)

    def without(self, *names: str) -> ContextConfig:
        """The same configuration with some sources switched off (ablation)."""
        from dataclasses import replace

        return replace(self, sources=self.sources - set(names))


@dataclass
class ContextResult:
    span: SpanChoice
    prefix: Piece
    suffix: Piece
    snippets: list[Piece]  # packed, best first
    candidates: int  # snippets offered by the sources
    budget: int
    used: int
    language: str | None
    timings: dict[str, float]  # ms

    def render_snippets(self) -> str:
        """The snippets as text placed before the prefix: the best one nearest the cursor."""
        return "".join(p.text for p in sorted(self.snippets, key=lambda p: p.score))

    def engine_pieces(self) -> tuple[list[str], list[int]]:
        """``(pieces, buckets)`` for ``Engine.stream_holes``: one hole at the cursor."""
        return [self.render_snippets() + self.prefix.text, self.suffix.text], [self.span.bucket]

    def to_dict(self) -> dict:
        s = self.span
        return {
            "language": self.language,
            "span": {
                "kind": s.kind,
                "bucket": s.bucket,
                "multiline": s.multiline,
                "suppress_reason": s.suppress_reason,
                "node_type": s.node_type,
                "offset": s.offset,
            },
            "budget": self.budget,
            "used": self.used,
            "candidates": self.candidates,
            "pieces": [self.prefix.to_dict(), *(p.to_dict() for p in self.snippets), self.suffix.to_dict()],
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _fit(lines: list[str], budget: int, count: Callable[[str], int], from_end: bool) -> str:
    """Whole lines from one end of ``lines`` (the nearest one always, cut if it must be) within budget.

    Lines are counted one by one, then the joined text once: tokenizers do not add up
    exactly across lines, so the per-line budget is scaled down until the whole fits.
    """
    order = lines[::-1] if from_end else lines
    costs = [count(ln + "\n") for ln in order]
    target = budget
    for _ in range(4):
        used, keep = 0, 0
        for c in costs:
            if used + c > target and keep:
                break
            used += c
            keep += 1
        kept = order[:keep][::-1] if from_end else order[:keep]
        text = "\n".join(kept)
        real = count(text)
        if real <= budget:
            if from_end and 1 < keep < len(order):  # cut: at an anchor line, which typing below it does not move
                text = text[stable_line_start(text, 0) or 0 :]
            return text
        if keep == 1:  # the line at the cursor alone is too long: cut it by characters
            room = max(0, len(text) * budget // max(real, 1))
            # before the cursor: at an anchor that typing does not move, so the model's cached context holds
            return text[stable_start(text, len(text) - room) :] if from_end else text[:room]
        target = max(1, target * budget // real - 1)
    return ""


def _cut_tail(text: str, budget: int, count: Callable[[str], int]) -> str:
    """The longest tail of ``text`` made of whole lines (the last, partial one always) within budget."""
    if budget <= 0:
        return ""
    text = text[-budget * 8 :] if len(text) > budget * 8 else text
    return _fit(text.split("\n"), budget, count, from_end=True)


def _cut_head(text: str, budget: int, count: Callable[[str], int]) -> str:
    """The longest head of ``text`` made of whole lines (the first, partial one always) within budget."""
    if budget <= 0:
        return ""
    return _fit(text[: budget * 8].split("\n"), budget, count, from_end=False)


def gather_context(
    doc: ParsedDocument,
    line: int,
    character: int,
    *,
    index: WorkspaceIndex | None = None,
    open_docs: Sequence[ParsedDocument] = (),
    edits: Sequence[EditRecord] | None = None,
    config: ContextConfig | None = None,
    count_tokens: Callable[[str], int] | None = None,
    encoding: str = "utf-16",
    span: SpanChoice | None = None,
) -> ContextResult:
    """Everything the model should see for a completion at (line, character) of ``doc``."""
    t0 = time.perf_counter()
    cfg = config or ContextConfig()
    count = count_tokens or default_count_tokens
    timings: dict[str, float] = {}
    if span is None:
        span = select_span(doc, line, character, cfg.span, encoding)
    timings["span"] = (time.perf_counter() - t0) * 1e3
    off = span.offset
    budget = cfg.budget if cfg.budget is not None else WINDOW - 1 - span.bucket

    t = time.perf_counter()
    src = doc.src
    before = src[max(0, off - budget * 8) : off].decode("utf-8", "replace") if "prefix" in cfg.sources else ""
    after = src[off : off + budget * 8].decode("utf-8", "replace") if "suffix" in cfg.sources else ""
    pre_cap, suf_cap = int(budget * cfg.prefix_share), int(budget * cfg.suffix_share)
    pre_text = _cut_tail(before, pre_cap, count)
    suf_text = _cut_head(after, suf_cap, count)
    pre_tok, suf_tok = count(pre_text), count(suf_text)
    # lines the prefix/suffix could show once the leftover budget flows back to them
    vis_first = line - (before[-budget * 4 :].count("\n") if before else 0)
    vis_last = line + (after[: budget * 4].count("\n") if after else 0)
    timings["prefix_suffix"] = (time.perf_counter() - t) * 1e3

    rel = index.rel(doc.path) if index is not None and doc.path else doc.path
    req = Request(doc, off, line, span, cfg, index, open_docs, edits, (vis_first, vis_last), rel)
    cands: list[Piece] = []
    for name, fn in SOURCES.items():
        if name not in cfg.sources:
            continue
        t = time.perf_counter()
        w = cfg.weights.get(name, 0.5)
        for p in fn(req):
            p.score *= w
            cands.append(p)
        timings[name] = (time.perf_counter() - t) * 1e3

    t = time.perf_counter()
    room = budget - pre_tok - suf_tok
    packed: list[Piece] = []
    taken: list[tuple[str, int, int]] = []
    for p in sorted(cands, key=lambda p: -p.score):
        if room < cfg.min_piece_tokens:
            break
        if any(q == p.path and p.line <= b and p.end_line >= a for q, a, b in taken):
            continue  # overlaps a snippet already packed
        p.tokens = count(p.text)
        if p.tokens > room:
            p.text = _cut_head(p.text, room, count).rstrip("\n") + "\n"
            p.tokens = count(p.text)
            if p.tokens > room or p.tokens < cfg.min_piece_tokens:
                continue
        packed.append(p)
        taken.append((p.path, p.line, p.end_line))
        room -= p.tokens
    if room > 0:  # leftover flows back to the prefix, then the suffix
        if "prefix" in cfg.sources and len(pre_text) < len(before):
            pre_text = _cut_tail(before, pre_tok + room, count)
            room += pre_tok - count(pre_text)
            pre_tok = count(pre_text)
        if room > 0 and "suffix" in cfg.sources and len(suf_text) < len(after):
            suf_text = _cut_head(after, suf_tok + room, count)
            suf_tok = count(suf_text)
    timings["pack"] = (time.perf_counter() - t) * 1e3
    timings["total"] = (time.perf_counter() - t0) * 1e3
    prefix = Piece("prefix", pre_text, float("inf"), pre_tok, rel, line - pre_text.count("\n"), line)
    suffix = Piece("suffix", suf_text, float("inf"), suf_tok, rel, line, line + suf_text.count("\n"))
    used = pre_tok + suf_tok + sum(p.tokens for p in packed)
    return ContextResult(span, prefix, suffix, packed, len(cands), budget, used, doc.language, timings)
