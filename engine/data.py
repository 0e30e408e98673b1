"""Training examples for span-infilling masked diffusion, built from raw source text.

One example is a window of a file with several *spans* cut out of it (a whole line, several
lines, an indented block body, the rest of a line, a random character span). Pieces are
tokenized separately, exactly as the runtime tokenizes prefix / span / suffix, so the
token boundaries at a hole look the same in training and in use. Each span gets a slot
count from ``BUCKETS`` (the smallest that fits, or a larger one half of the time so that
the bucket does not give the length away); slots after the span's text are ``eos``.

A share of examples masks the whole window instead (plain MDLM over all tokens), so that
most positions of a forward pass carry loss (dense supervision).

Noise (MDLM / LLaDA): t ~ U(0, 1) per example, every slot masked with probability t, loss
on masked slots weighted 1/t. The returned arrays follow the sequence layout of
:mod:`unmask.engine.model` (context first, then slots; natural positions).

It knows token ids only through the tokenizer passed in; no torch here (numpy arrays).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from .tokenizer import Tokenizer

BUCKETS = (8, 16, 32, 64)
KINDS = ("line", "lines", "block", "rest", "random")
KIND_WEIGHTS = (0.30, 0.15, 0.10, 0.25, 0.20)


@dataclass
class Example:
    ids: np.ndarray  # (T,) int64, model input (masked slots = mask id)
    pos: np.ndarray  # (T,) int64, document positions
    is_ctx: np.ndarray  # (T,) bool
    valid: np.ndarray  # (T,) bool, False for batch padding
    target: np.ndarray  # (T,) int64, -1 where no loss
    weight: np.ndarray  # (T,) float32, 1/t on masked slots
    n_slots: int  # slots in this example (the loss normaliser)


def bucket_for(n: int, rng: random.Random | None = None) -> int | None:
    """Smallest bucket holding n tokens; with rng, a random larger one half of the time."""
    fits = [b for b in BUCKETS if b >= n]
    if not fits:
        return None
    if rng is not None and len(fits) > 1 and rng.random() < 0.5:
        return rng.choice(fits[1:])
    return fits[0]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def pick_span(lines: list[str], starts: list[int], rng: random.Random) -> tuple[int, int]:
    """One span as a (start, end) character range in the window text."""
    n = len(lines)
    kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
    i = rng.randrange(n)
    for _ in range(4):  # prefer non-blank lines
        if lines[i].strip():
            break
        i = rng.randrange(n)
    line = lines[i]
    s = starts[i]
    if kind == "line":
        return s, s + len(line)
    if kind == "lines":
        j = min(n, i + rng.randint(2, 8))
        return s, starts[j - 1] + len(lines[j - 1])
    if kind == "block":
        for k in range(i, min(n, i + 30)):
            if lines[k].rstrip().endswith(":"):
                ind = _indent(lines[k])
                j = k + 1
                while j < n and j < k + 13 and (not lines[j].strip() or _indent(lines[j]) > ind):
                    j += 1
                if j > k + 1:
                    return starts[k + 1], starts[j - 1] + len(lines[j - 1])
        return s, s + len(line)
    body = line.rstrip("\r\n")
    if kind == "rest":
        lo = _indent(body)
        c = rng.randint(lo, max(lo, len(body)))
        end = s + (len(line) if rng.random() < 0.5 else len(body))
        return s + c, end
    # random character span over up to three lines
    j = min(n, i + rng.randint(1, 3))
    end_max = starts[j - 1] + len(lines[j - 1])
    a = rng.randint(s, max(s, s + len(body)))
    b = rng.randint(a, min(end_max, a + 120))
    return a, b


def make_example(
    text: str,
    tok: Tokenizer,
    rng: random.Random,
    seq_len: int,
    max_spans: int = 4,
    p_whole: float = 0.15,
    t: float | None = None,
) -> Example:
    sp = tok.specials
    if t is None:
        t = rng.uniform(1e-3, 1.0)
    if rng.random() < p_whole:
        ids = np.array(tok.encode(text)[: seq_len - 1], dtype=np.int64)
        ids = np.concatenate([[sp.file], ids])
        L = len(ids)
        is_ctx = np.zeros(L, bool)
        is_ctx[0] = True
        masked = np.array([False] + [rng.random() < t for _ in range(L - 1)])
        if not masked.any() and L > 1:
            masked[rng.randrange(1, L)] = True
        target = np.where(masked, ids, -1)
        inp = np.where(masked, sp.mask, ids)
        return _finish(inp, np.arange(L), is_ctx, target, masked / t, L - 1, seq_len, sp.pad)

    lines = text.splitlines(keepends=True) or [text]
    starts = list(np.cumsum([0] + [len(x) for x in lines[:-1]]))
    spans: list[tuple[int, int]] = []
    for _ in range(rng.randint(1, max_spans)):
        a, b = pick_span(lines, starts, rng)
        if all(b + 1 <= c or a >= d + 1 for c, d in spans):
            spans.append((a, b))
    spans.sort()
    pieces, kinds = [], []
    cur = 0
    for a, b in spans:
        pieces.append(text[cur:a])
        kinds.append(False)
        pieces.append(text[a:b])
        kinds.append(True)
        cur = b
    pieces.append(text[cur:])
    kinds.append(False)
    toks = tok.encode_batch(pieces)

    ctx_ids, ctx_pos = [sp.file], [0]
    slot_tgt: list[int] = []
    slot_pos: list[int] = []
    p = 1
    budget = seq_len - 1
    for piece, is_span in zip(toks, kinds):
        if is_span:
            bk = bucket_for(len(piece), rng)
            if bk is None or bk > budget:  # too long: keep it as context instead
                is_span = False
            else:
                slot_tgt += piece + [sp.eos] * (bk - len(piece))
                slot_pos += range(p, p + bk)
                p += bk
                budget -= bk
                continue
        take = piece[:budget]
        ctx_ids += take
        ctx_pos += range(p, p + len(take))
        p += len(take)
        budget -= len(take)
        if budget <= 0:
            break
    if not slot_tgt:  # every span fell out: fall back to whole-window masking
        return make_example(text, tok, rng, seq_len, max_spans, p_whole=1.0, t=t)
    tgt = np.array(slot_tgt, dtype=np.int64)
    masked = np.array([rng.random() < t for _ in slot_tgt])
    if not masked.any():
        masked[rng.randrange(len(masked))] = True
    C = len(ctx_ids)
    ids = np.concatenate([ctx_ids, np.where(masked, sp.mask, tgt)])
    pos = np.concatenate([ctx_pos, slot_pos])
    is_ctx = np.arange(len(ids)) < C
    target = np.concatenate([np.full(C, -1), np.where(masked, tgt, -1)])
    weight = np.concatenate([np.zeros(C), masked / t])
    return _finish(ids, pos, is_ctx, target, weight, len(slot_tgt), seq_len, sp.pad)


def _finish(ids, pos, is_ctx, target, weight, n_slots, seq_len, pad) -> Example:
    L = len(ids)
    n = seq_len - L

    def padv(a, v, dt):
        return np.concatenate([np.asarray(a, dtype=dt), np.full(n, v, dtype=dt)])

    return Example(
        ids=padv(ids, pad, np.int64),
        pos=padv(pos, 0, np.int64),
        is_ctx=padv(is_ctx, True, bool),
        valid=padv(np.ones(L, bool), False, bool),
        target=padv(target, -1, np.int64),
        weight=padv(weight, 0.0, np.float32),
        n_slots=int(n_slots),
    )


class WindowSampler:
    """Random windows of about ``chars`` characters from documents, weighted by length."""

    def __init__(self, docs: list[str], chars: int, seed: int):
        self.docs = docs
        self.chars = chars
        self.rng = random.Random(seed)
        lens = np.array([len(d) for d in docs], dtype=np.float64)
        self.cum = np.cumsum(np.minimum(lens, 20 * chars))

    def sample(self) -> str:
        i = int(np.searchsorted(self.cum, self.rng.random() * self.cum[-1], side="right"))
        d = self.docs[min(i, len(self.docs) - 1)]
        if len(d) <= self.chars:
            return d
        start = self.rng.randrange(len(d) - self.chars)
        nl = d.rfind("\n", 0, start)
        start = 0 if nl < 0 else nl + 1
        end = d.find("\n", start + self.chars)
        return d[start : len(d) if end < 0 else end + 1]


def batch(examples: list[Example]) -> dict[str, np.ndarray]:
    out = {
        k: np.stack([getattr(e, k) for e in examples]) for k in ("ids", "pos", "is_ctx", "valid", "target", "weight")
    }
    out["n_slots"] = np.array(sum(e.n_slots for e in examples))
    return out


def make_edit_example(text: str, tok: Tokenizer, rng: random.Random, seq_len: int, t: float) -> Example | None:
    """An edit-propagation example (see :mod:`unmask.engine.edits`), or None when ``text`` has none."""
    from .edits import assemble, synthesize, synthesize_signature

    got = (synthesize_signature(text, rng) if rng.random() < 0.25 else None) or synthesize(text, rng)
    if got is None:
        return None
    lay = assemble(tok, got[0], got[1], seq_len, lambda n: bucket_for(n, rng))
    if lay is None:
        return None
    ctx_ids, ctx_pos, slot_pos, slot_tgt, _ = lay
    tgt = np.array(slot_tgt, dtype=np.int64)
    masked = np.array([rng.random() < t for _ in slot_tgt])
    if not masked.any():
        masked[rng.randrange(len(masked))] = True
    C = len(ctx_ids)
    ids = np.concatenate([ctx_ids, np.where(masked, tok.specials.mask, tgt)])
    pos = np.concatenate([ctx_pos, slot_pos])
    target = np.concatenate([np.full(C, -1), np.where(masked, tgt, -1)])
    weight = np.concatenate([np.zeros(C), masked / t])
    return _finish(ids, pos, np.arange(len(ids)) < C, target, weight, len(slot_tgt), seq_len, tok.specials.pad)


FIM_TOKENS = ("<|reserved_0|>", "<|reserved_1|>", "<|reserved_2|>")  # fim prefix / suffix / middle (AR baseline)


def fim_ids(tok: Tokenizer) -> tuple[int, int, int]:
    ids = tuple(tok.hf.token_to_id(t) for t in FIM_TOKENS)
    if None in ids:
        raise ValueError("tokenizer lacks the reserved tokens used as FIM markers")
    return ids  # type: ignore[return-value]


def fim_sequence(tok: Tokenizer, prefix: list[int], suffix: list[int]) -> list[int]:
    """Prefix-suffix-middle layout (Bavarian et al. 2022); the middle and ``eos`` follow."""
    pre, suf, mid = fim_ids(tok)
    return [pre, *prefix, suf, *suffix, mid]


def make_fim_example(text: str, tok: Tokenizer, rng: random.Random, seq_len: int, p_fim: float = 0.9) -> Example:
    """An autoregressive example: FIM (PSM) with one span from :func:`pick_span`, else plain left-to-right.

    Every position is a causal "slot" predicting the next token (loss everywhere, weight 1).
    """
    sp = tok.specials
    if rng.random() < p_fim:
        lines = text.splitlines(keepends=True) or [text]
        starts = list(np.cumsum([0] + [len(x) for x in lines[:-1]]))
        a, b = pick_span(lines, starts, rng)
        pre, mid, suf = tok.encode_batch([text[:a], text[a:b], text[b:]])
        mid = mid[:64] + [sp.eos]
        room = seq_len - 3 - len(mid)
        keep_suf = min(len(suf), room // 3 if len(pre) > room - room // 3 else room - len(pre))
        suf = suf[:keep_suf]
        pre = pre[max(0, len(pre) - (room - len(suf))) :]
        seq = fim_sequence(tok, pre, suf) + mid
    else:
        seq = [sp.file, *tok.encode(text)][:seq_len]
    ids = np.array(seq, dtype=np.int64)
    L = len(ids)
    target = np.concatenate([ids[1:], [-1]])
    weight = (target >= 0).astype(np.float32)
    return _finish(ids, np.arange(L), np.zeros(L, bool), target, weight, int(weight.sum()), seq_len, sp.pad)


def batches(
    docs: list[str],
    tok: Tokenizer,
    seq_len: int,
    batch_size: int,
    max_spans: int,
    p_whole: float,
    seed: int,
    p_edit: float = 0.0,
    objective: str = "mdlm",
):
    """Endless training batches; t is stratified over each batch (one draw, evenly spaced).

    objective "mdlm": span infilling (+ ``p_edit`` edit-propagation examples); "fim": the
    autoregressive baseline's causal FIM examples.
    """
    chars = int(seq_len * 3.6)
    sampler = WindowSampler(docs, chars=chars, seed=seed)
    long_sampler = WindowSampler(docs, chars=chars * 3, seed=seed + 1)
    rng = random.Random(seed * 7919 + 1)
    while True:
        base = rng.random()
        exs = []
        for i in range(batch_size):
            if objective == "fim":
                exs.append(make_fim_example(sampler.sample(), tok, rng, seq_len))
                continue
            t = max(1e-3, (base + i / batch_size) % 1.0)
            ex = None
            if rng.random() < p_edit:
                ex = make_edit_example(long_sampler.sample(), tok, rng, seq_len, t)
            exs.append(ex or make_example(sampler.sample(), tok, rng, seq_len, max_spans, p_whole, t=t))
        yield batch(exs)
