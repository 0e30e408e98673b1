"""Adapt the pretrained base into a block-diffusion infiller: one flat script, resumable.

    python -m unmask.engine.adapt --out runs/adapt --minutes 60          # train (resumes if ckpt.pt exists)
    python -m unmask.engine.adapt --out runs/b --init-from DIR           # continue from an export
    python -m unmask.engine.adapt export --run runs/adapt --out DIR      # delta-*.npz + model.json

Block diffusion after BD3-LM (Arriola et al. 2025), SDAR and Fast-dLLM v2 (Wu et al. 2025):
the base stays a causal LM over the context, and learns to fill a *block* of B masked slots
at once, B in {1, 2, 4, 8, 16} (B = 1 is plain AR, the runtime's floor).

**An example** is a FIM hole cut from a corpus file (kinds as :func:`unmask.engine.data.pick_span`:
rest of line, a line, a few lines, a block body, a random span), laid out exactly as the
runtime (:mod:`unmask.engine.causal`) prompts the base:

* context = ``suffix_as_comments(suffix)`` then the prefix minus its last token (token
  healing), at most ``--max-ctx`` tokens, cut like ``CausalEngine._context``;
* middle = ``tokenize(last prefix token's text + hole text) + [eos]`` (eos = ``<|endoftext|>``, 0),
  at most ``--max-mid`` tokens; middle token j sits at position C + j (C = context length).

**Sequence layout** (one example, one block size B; middle split in blocks of B)::

    [ context (C) | clean middle, blocks 0..n-2 | noisy middle, blocks 0..n-1 ]

* context: causal;
* clean block b: the context, clean blocks < b, and its own block bidirectionally;
* noisy block b: the context, clean blocks < b, and its own noisy block bidirectionally;
* clean and noisy copies of a block share position ids.

Noise: in noisy block b each slot is the MASK id (``<empty_output>``, 16) with probability t,
t ~ U(eps, 1) per block. **Token shift** (the base's): logits at a position predict the next
token. Slot 0 of block b is predicted at the clean position just before the block (last token
of clean block b-1; last context token for b = 0); slot i > 0 at noisy position i-1. Loss:
cross-entropy on masked slots, weighted 1/t (MDLM, Sahoo et al. 2024), over the middle's
token count. Two refinements that keep the expected loss and lower its variance / cost:

* slot 0's prediction does not depend on the noise, so it always carries loss with weight 1
  (the expectation of mask/t);
* ``--complementary`` (default): two noisy copies per block, masks m and not-m with rates t
  and 1-t, t ~ U(eps, 1-eps), each weighted 1/(2 rate) (Fast-dLLM v2's complementary masks):
  every slot is supervised once per example;
* ``--views`` block sizes per hole: each adds its own clean + noisy copies behind one shared
  context (the expensive part), so one context pass supervises the middle several times.

The last clean block and noisy blocks of one slot are left out (they supervise nothing).
Examples are packed into rows of ``--row-len`` tokens (the mask is block-diagonal over them);
the context room of the last example of a row shrinks to fill it.

**Inference** (the runtime, later): the context (and each committed block, fed with the
block-bidirectional mask above) is in the KV cache. A block step feeds the B positions
``x_0 .. x_{B-1}`` (uncommitted slots = 16) attending to the whole cache plus
bidirectionally within the block; x_0's distribution is the logits of the last cached
position, x_{i+1}'s the logits at block position i. After the block is committed, feeding it
once more (clean) puts it in the cache and gives the logits for the next block's x_0.

Training: LoRA on every linear layer (:mod:`unmask.engine.llama`; ``--top-k`` trains the last k
layers fully instead), bf16 autocast where the CPU has native bf16, AdamW, warm-up then
constant or cosine, gradient accumulation. Logs JSON lines to ``log.jsonl``; checkpoints
(trainable weights, optimizer, counters, RNG and data-stream state) atomically every
``--ckpt-minutes``; a validation loss per block size on fixed holes from held-out files (1% by
content hash) every ``--val-every`` steps.

``--init-from DIR`` starts a new run from a model directory written by ``export`` (on a machine
that has lost ``runs/``, such as a lent GPU: ``scripts/device/adapt.sh``): the LoRA factors
(scale unfolded) or full deltas are loaded into the trainable tensors, the optimizer starts
fresh (with its warm-up), and the run refuses a recipe whose LoRA rank, targets or ``--top-k``
differ. What the export had seen (its ``training`` record) is kept in the checkpoint, so the
next export's ``training`` record counts steps, tokens and hours over all runs (``runs`` lists
each one, ``init_from`` names the start). ``--workers N`` builds the rows in N DataLoader
processes (GPU runs); their streams are seeded by the step, so a resumed run draws fresh rows
instead of continuing exactly.

``--edit-data DIR`` (a :mod:`unmask.engine.release_edits` ``diff`` folder; only its ``train``
split is read) makes ``--edit-share`` of the holes next edits from real release diffs: one
remaining hunk of an example is the hole, its new text the middle, and the context is the
runtime's next-edit request up to that hole (the history as comments, then the file excerpts:
``release_edits.edit_prompt``, the same text ``CausalEngine.prepare_edit`` builds, with no
suffix comments); an example whose context does not fit whole is skipped, as the runtime
leaves such a hole out. ``--edit-noop-share`` of these holes are lines the change leaves alone
(the line below the cursor, or a line near a hunk to come) with the line itself as the middle,
so the model learns to keep text where no edit is due as well as to carry an edit on. A next-edit
hole is trained at one block size, drawn by ``--edit-block-weights`` (default B=1 only: the runtime
decodes a proposal token by token and gates it on teacher-forced log-probabilities, so every
supervised token of an edit hole goes to that path).

It knows the prompt layout and the training objective; decoding lives in the runtime.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import corpus as corpus_mod
from .causal import suffix_as_comments
from .data import WindowSampler, pick_span
from .llama import Llama, LoRALinear, add_lora, train_top_layers
from .tokenizer import Specials, Tokenizer
from .train import cpu_has_native_bf16

BLOCK_SIZES = (1, 2, 4, 8, 16)
BLOCK_WEIGHTS = (0.10, 0.10, 0.20, 0.30, 0.30)
CTX, CLEAN, NOISY = 0, 1, 2  # token kinds of the layout
MAX_FILE = 16_000_000  # bytes per shipped file (the repo ships files <= 16 MB)


def default_meta() -> dict:
    from .runtime import default_model_dir

    return json.loads((default_model_dir() / "model.json").read_text())


def load_tokenizer(gguf: Path, meta: dict | None = None) -> Tokenizer:
    from tokenizers import Tokenizer as HFTokenizer

    from .base import tokenizer_json

    meta = meta or default_meta()
    return Tokenizer(HFTokenizer.from_str(tokenizer_json(gguf)), specials=Specials(**meta["specials"]))


# -- examples ------------------------------------------------------------------------------------
@dataclass
class Hole:
    ctx: list[int]  # suffix comments + prefix minus its last token
    mid: list[int]  # healed token text + hole text, then eos (unless cut at max_mid)


def context_ids(tok: Tokenizer, before: str, after: str, room: int) -> tuple[list[int], str] | None:
    """(context ids, healed text) as ``CausalEngine._context`` builds them; None if the heal is not clean text."""
    head = suffix_as_comments(after) if after else ""
    cap = room * 8
    before = before[-cap:] if len(before) > cap else before
    h_ids = tok.encode(head) if head else []
    if len(h_ids) > room // 3:
        h_ids = tok.encode(suffix_as_comments(after, max_lines=3))[: room // 3]
    p_ids = tok.encode(before)
    keep = room - len(h_ids)
    if len(p_ids) > keep:  # cut on the left at a line start
        cut = len(before) - len(tok.decode(p_ids[-keep:]))
        nl = before.find("\n", cut)
        before = before[nl + 1 :] if nl >= 0 else before[cut:]
        p_ids = tok.encode(before)[-keep:]
    if not p_ids:
        return (h_ids, "") if h_ids else None
    full, rest = tok.decode(p_ids), tok.decode(p_ids[:-1])
    heal = full[len(rest) :]
    if not full.startswith(rest) or not heal or not before.endswith(heal) or "\ufffd" in heal:
        return None  # the last token is not whole characters (rare): skip the example
    return h_ids + p_ids[:-1], heal


def make_hole(text: str, tok: Tokenizer, rng: random.Random, room: int, max_mid: int, span=None) -> Hole | None:
    """A hole cut from ``text`` (at ``span`` = (a, b) characters, else drawn); None when unusable."""
    if span is None:
        lines = text.splitlines(keepends=True) or [text]
        starts = list(np.cumsum([0] + [len(x) for x in lines[:-1]]))
        span = pick_span(lines, starts, rng)
    a, b = span
    got = context_ids(tok, text[:a], text[b:], room)
    if got is None or not got[0]:
        return None
    ctx, heal = got
    mid = tok.encode(heal + text[a:b])
    mid = mid + [tok.specials.eos] if len(mid) < max_mid else mid[:max_mid]
    return Hole(ctx, mid)


def noop_line(ex: dict, rng: random.Random) -> dict | None:
    """A line of ``ex["current"]`` that the change leaves alone, as a remaining "hunk" whose new text is
    the line itself: the line below the cursor (the server's ``near`` candidate) or one within 12 lines
    of a hunk to come; None when every such line is part of the change."""
    lines = ex["current"].splitlines(keepends=True)
    taken = {ex["cursor"]["line"]}
    for r in ex["remaining"]:
        taken |= set(range(r["start_line"], max(r["end_line"], r["start_line"] + 1)))
    near = [ex["cursor"]["line"] + 1] if rng.random() < 0.5 else []
    r = ex["remaining"][rng.randrange(len(ex["remaining"]))]["start_line"]
    pool = near or list(range(r - 12, r + 13))
    pool = [i for i in pool if 0 <= i < len(lines) and i not in taken and lines[i].strip()]
    if not pool:
        return None
    i = rng.choice(pool)
    return {"start_line": i, "end_line": i + 1, "old_text": lines[i], "new_text": lines[i]}


def make_edit_hole(
    ex: dict, tok: Tokenizer, rng: random.Random, room: int, max_mid: int, noop_share: float = 0.0
) -> Hole | None:
    """A next-edit hole from a release-edit example (:mod:`unmask.engine.release_edits`): one of its
    remaining hunks, the context laid out as the runtime lays out a next-edit request (history as comments,
    the excerpts up to the hole: ``release_edits.edit_prompt``), the middle its new text; None when the
    context does not fit ``room`` whole (the runtime leaves such a hole out) or is unusable. A share
    ``noop_share`` of them is a line the change leaves alone (:func:`noop_line`), its middle the line as it
    is: where no edit is due the model should keep the text, so the server's gate stays silent there."""
    from .release_edits import edit_prompt

    if noop_share and rng.random() < noop_share:
        keep = noop_line(ex, rng)
        if keep is None:
            return None
        got = edit_prompt(ex | {"remaining": [keep]}, 0)
    else:
        got = edit_prompt(ex, rng.randrange(len(ex["remaining"])))
    if got is None:
        return None
    before, new = got
    if len(tok.encode(before)) > room:
        return None
    c = context_ids(tok, before, "", room)
    if c is None or not c[0]:
        return None
    ctx, heal = c
    mid = tok.encode(heal + new)
    mid = mid + [tok.specials.eos] if len(mid) < max_mid else mid[:max_mid]
    return Hole(ctx, mid)


@dataclass
class Layout:
    """One row of packed examples: inputs and where the loss is (all numpy)."""

    ids: list[int] = field(default_factory=list)
    pos: list[int] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)  # CTX / CLEAN / NOISY
    group: list[int] = field(default_factory=list)  # example id for context, view id otherwise
    copy: list[int] = field(default_factory=list)  # noisy copy id within a view
    blk: list[int] = field(default_factory=list)  # block index (-1 for context)
    sup: list[int] = field(default_factory=list)  # logit positions that carry loss
    tgt: list[int] = field(default_factory=list)
    w: list[float] = field(default_factory=list)
    sup_b: list[int] = field(default_factory=list)  # index into BLOCK_SIZES of each supervised position
    n_mid: np.ndarray = field(default_factory=lambda: np.zeros(len(BLOCK_SIZES)))  # middle tokens per block size
    owner: list[int] = field(default_factory=list)  # example id of every token
    n_groups: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def view_cost(n_mid: int, B: int, copies: int) -> int:
    """Tokens one view adds after the context: clean blocks but the last, noisy blocks of >= 2 slots."""
    nb = -(-n_mid // B)
    last = n_mid - (nb - 1) * B
    noisy = (n_mid - (last if last < 2 else 0)) if B > 1 else 0
    return (n_mid - last) + copies * noisy


def add_example(
    lay: Layout,
    hole: Hole,
    sizes: list[int],
    rng: random.Random,
    mask_id: int,
    eps: float,
    complementary: bool,
    ts: list[float] | None = None,
) -> None:
    """Append one hole with one view per block size in ``sizes`` (see the module docstring)."""
    ctx, mid = hole.ctx, hole.mid
    C, M = len(ctx), len(mid)
    ex = lay.n_groups
    lay.n_groups += 1
    start = len(lay)
    for j, t in enumerate(ctx):
        lay.ids.append(t), lay.pos.append(j), lay.kind.append(CTX), lay.group.append(ex)
        lay.copy.append(0), lay.blk.append(-1), lay.owner.append(ex)
    last_ctx = start + C - 1
    k = 0
    for B in sizes:
        bi = BLOCK_SIZES.index(B)
        view = lay.n_groups
        lay.n_groups += 1
        lay.n_mid[bi] += M
        blocks = [(s, min(s + B, M)) for s in range(0, M, B)]
        clean_last: list[int] = []  # row index of the last token of each clean block
        for b, (s, e) in enumerate(blocks[:-1]):
            for j in range(s, e):
                lay.ids.append(mid[j]), lay.pos.append(C + j), lay.kind.append(CLEAN), lay.group.append(view)
                lay.copy.append(0), lay.blk.append(b), lay.owner.append(ex)
            clean_last.append(len(lay) - 1)
        n_copies = 2 if complementary else 1
        for b, (s, e) in enumerate(blocks):
            # slot 0: predicted at the clean position before the block, whatever the noise (weight 1)
            lay.sup.append(last_ctx if b == 0 else clean_last[b - 1])
            lay.tgt.append(mid[s]), lay.w.append(1.0), lay.sup_b.append(bi)
            if e - s < 2:
                continue
            if ts is not None:
                t = ts[k % len(ts)]
                k += 1
            else:
                t = rng.uniform(eps, 1 - eps) if complementary else rng.uniform(eps, 1.0)
            m = np.array([rng.random() < t for _ in range(e - s)])
            for c in range(n_copies):
                masked, rate = (m, t) if c == 0 else (~m, 1.0 - t)
                base = len(lay)
                for i, j in enumerate(range(s, e)):
                    lay.ids.append(mask_id if masked[i] else mid[j]), lay.pos.append(C + j)
                    lay.kind.append(NOISY), lay.group.append(view), lay.copy.append(c), lay.blk.append(b)
                    lay.owner.append(ex)
                for i in range(1, e - s):
                    if masked[i]:  # slot i is predicted at noisy position i - 1
                        lay.sup.append(base + i - 1)
                        lay.tgt.append(mid[s + i]), lay.w.append(1.0 / (rate * n_copies)), lay.sup_b.append(bi)


def attention_mask(kind: np.ndarray, group: np.ndarray, copy: np.ndarray, blk: np.ndarray, owner: np.ndarray):
    """(L, L) bool, True where query row may attend to key column (the layout of the module docstring)."""
    q = lambda a: a[:, None]  # noqa: E731
    k = lambda a: a[None, :]  # noqa: E731
    idx = np.arange(len(kind))
    same = q(owner) == k(owner)
    see_ctx = (k(kind) == CTX) & ((q(kind) != CTX) | (k(idx) <= q(idx)))
    same_view = (q(group) == k(group)) & (q(kind) != CTX)
    see_clean = (
        (k(kind) == CLEAN)
        & same_view
        & (((q(kind) == CLEAN) & (k(blk) <= q(blk))) | ((q(kind) == NOISY) & (k(blk) < q(blk))))
    )
    see_noisy = (k(kind) == NOISY) & (q(kind) == NOISY) & same_view & (q(copy) == k(copy)) & (q(blk) == k(blk))
    return same & (see_ctx | see_clean | see_noisy)


def finish_row(lay: Layout, row_len: int, pad: int, sup_pad: int = 64) -> dict[str, np.ndarray]:
    """Numpy arrays for one row, padded to ``row_len`` (padding attends only to padding, causally)."""
    n = len(lay)
    extra = row_len - n
    assert extra >= 0, (n, row_len)
    kind = np.array(lay.kind + [CTX] * extra)
    group = np.array(lay.group + [-1] * extra)
    owner = np.array(lay.owner + [-1] * extra)
    mask = attention_mask(kind, group, np.array(lay.copy + [0] * extra), np.array(lay.blk + [-1] * extra), owner)
    S = len(lay.sup)
    Sp = -(-max(S, 1) // sup_pad) * sup_pad  # few distinct shapes for the head (oneDNN caches per shape)
    return {
        "ids": np.array(lay.ids + [pad] * extra, np.int64),
        "pos": np.array(lay.pos + [0] * extra, np.int64),
        "mask": mask,
        "sup": np.array(lay.sup + [0] * (Sp - S), np.int64),
        "tgt": np.array(lay.tgt + [-100] * (Sp - S), np.int64),
        "w": np.array(lay.w + [0.0] * (Sp - S), np.float32),
        "sup_b": np.array(lay.sup_b + [0] * (Sp - S), np.int64),
        "n_mid": lay.n_mid.copy(),
        "n_tok": np.array(n),
        "n_sup": np.array(S),
    }


def pick_sizes(rng: random.Random, k: int, weights=BLOCK_WEIGHTS) -> list[int]:
    """k distinct block sizes drawn by ``weights``."""
    pool, ws, out = list(BLOCK_SIZES), list(weights), []
    for _ in range(min(k, len(pool))):
        i = rng.choices(range(len(pool)), ws)[0]
        out.append(pool.pop(i))
        ws.pop(i)
    return out


class RowStream:
    """Endless packed training rows from documents; its whole state is two RNG states (resumable)."""

    def __init__(
        self, docs: list[str], tok: Tokenizer, a: argparse.Namespace, seed: int, edits: list[dict] | None = None
    ):
        self.docs, self.tok, self.a = docs, tok, a
        self.edits = edits or []  # release-edit examples, a share ``a.edit_share`` of the holes
        self.sampler = WindowSampler(docs, chars=a.window_chars, seed=seed)
        self.rng = random.Random(seed * 7919 + 1)
        self.weights = tuple(float(x) for x in a.block_weights.split(","))
        self.edit_weights = tuple(float(x) for x in getattr(a, "edit_block_weights", "1,0,0,0,0").split(","))

    def state(self) -> dict:
        return {"sampler": self.sampler.rng.getstate(), "rng": self.rng.getstate()}

    def set_state(self, s: dict) -> None:
        self.sampler.rng.setstate(_tuple(s["sampler"]))
        self.rng.setstate(_tuple(s["rng"]))

    def row(self) -> dict[str, np.ndarray]:
        a, tok = self.a, self.tok
        copies = 2 if a.complementary else 1
        lay = Layout()
        for _ in range(1000):  # (a hole can be unusable: try again)
            left = a.row_len - len(lay)
            if left < 64:
                break
            if self.edits and self.rng.random() < getattr(a, "edit_share", 0.0):
                sizes = pick_sizes(self.rng, 1, self.edit_weights)
                ex = self.edits[self.rng.randrange(len(self.edits))]
                state = self.rng.getstate()  # the same hunk again if the context must shrink

                def mk(room, ex=ex, state=state):
                    self.rng.setstate(state)
                    return make_edit_hole(ex, tok, self.rng, room, a.max_mid, getattr(a, "edit_noop_share", 0.0))
            else:
                sizes = pick_sizes(self.rng, a.views, self.weights)
                text = self.sampler.sample()
                lines = text.splitlines(keepends=True) or [text]
                span = pick_span(lines, list(np.cumsum([0] + [len(x) for x in lines[:-1]])), self.rng)

                def mk(room, text=text, span=span):
                    return make_hole(text, tok, self.rng, room, a.max_mid, span)

            hole = mk(a.max_ctx)
            if hole is None:
                continue
            views = sum(view_cost(len(hole.mid), B, copies) for B in sizes)
            if len(hole.ctx) + views > left:  # the row's last example: a shorter context fills it
                room = left - views
                hole = mk(room) if room >= 32 else None
                if hole is None or len(hole.ctx) + sum(view_cost(len(hole.mid), B, copies) for B in sizes) > left:
                    break
            add_example(lay, hole, sizes, self.rng, tok.specials.mask, a.eps, a.complementary)
        return finish_row(lay, a.row_len, tok.specials.pad)


def _tuple(x):
    return tuple(_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def held_out(text: str) -> bool:
    """1% of files, by content hash (the same files on every machine)."""
    h = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "little") % 100 == 0


def validation_rows(docs: list[str], tok: Tokenizer, a: argparse.Namespace) -> dict[int, list[dict[str, np.ndarray]]]:
    """Fixed rows per block size: the same ``--val-holes`` holes for every B, noise on a fixed grid."""
    rng = random.Random(1234)
    sampler = WindowSampler(docs, chars=a.window_chars, seed=1234)
    holes: list[Hole] = []
    for _ in range(100 * a.val_holes):
        h = make_hole(sampler.sample(), tok, rng, a.max_ctx, a.max_mid)
        if h is not None:
            holes.append(h)
        if len(holes) == a.val_holes:
            break
    ts = [a.eps + (1 - 2 * a.eps) * (i + 0.5) / 7 for i in range(7)]
    out: dict[int, list] = {}
    for B in BLOCK_SIZES:
        nrng = random.Random(99 + B)
        rows, lay = [], Layout()
        for i, h in enumerate(holes):
            need = len(h.ctx) + view_cost(len(h.mid), B, 2)
            if len(lay) + need > a.row_len:
                rows.append(finish_row(lay, a.row_len, tok.specials.pad))
                lay = Layout()
            add_example(lay, h, [B], nrng, tok.specials.mask, a.eps, True, ts=ts[i % 7 :] + ts[: i % 7])
        rows.append(finish_row(lay, a.row_len, tok.specials.pad))
        out[B] = rows
    return out


# -- loss ------------------------------------------------------------------------------------------
def to_torch(rows: list[dict[str, np.ndarray]], device: str) -> dict[str, torch.Tensor]:
    """Stack rows into a batch; supervised indices become flat indices into (R * L)."""
    L = len(rows[0]["ids"])
    b = {k: torch.from_numpy(np.stack([r[k] for r in rows])) for k in ("ids", "pos", "mask")}
    b["mask"] = b["mask"][:, None]  # (R, 1, L, L)
    b["sup"] = torch.from_numpy(np.concatenate([r["sup"] + i * L for i, r in enumerate(rows)]))
    for k in ("tgt", "w", "sup_b"):
        b[k] = torch.from_numpy(np.concatenate([r[k] for r in rows]))
    b["n_mid"] = torch.from_numpy(np.sum([r["n_mid"] for r in rows], axis=0))
    b["n_tok"] = int(sum(int(r["n_tok"]) for r in rows))
    b["n_sup"] = int(sum(int(r["n_sup"]) for r in rows))
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}


def loss_fn(model: Llama, b: dict, amp_dtype, norm: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, weighted CE summed per block size (5,)): 1/t-weighted CE over masked slots / middle tokens."""
    dev = b["ids"].device.type
    with torch.autocast(device_type=dev, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        h = model.hidden(b["ids"], b["pos"], b["mask"])  # (R, L, D)
        logits = model.logits(h.reshape(-1, h.shape[-1])[b["sup"]]).float()  # (S, V)
    ce = F.cross_entropy(logits, b["tgt"], reduction="none", ignore_index=-100) * b["w"]
    per_b = torch.zeros(len(BLOCK_SIZES), device=ce.device).index_add_(0, b["sup_b"], ce.detach())
    denom = norm if norm is not None else float(b["n_mid"].sum())
    return ce.sum() / max(denom, 1.0), per_b


# -- training ----------------------------------------------------------------------------------
def build_model(cfg, w, a: argparse.Namespace) -> tuple[Llama, list[str]]:
    model = Llama.from_weights(cfg, w)
    if a.top_k:
        names = train_top_layers(model, a.top_k)
    else:
        names = add_lora(model, a.lora_r, a.lora_alpha, tuple(a.lora_targets.split(",")))
    return model, names


TRAINING_SUMS = ("steps", "tokens", "supervised_tokens", "hours")


def init_from_export(model: Llama, d: Path, a: argparse.Namespace) -> dict:
    """Load the deltas of an ``export``ed model directory into ``model``'s trainable tensors.

    LoRA factors come as ``{name}.lora_a`` (r, in) and ``{name}.lora_b`` (out, r) with the
    exporting run's scale folded into b: b is divided by this model's scale, so the update
    ``scale * B A`` is the exported one. Full deltas (``--top-k``) are added to the base.
    Refuses (SystemExit) an export whose LoRA rank, targets or top-k differ from ``a``.
    Returns what the export had seen (its ``training`` record: the sums and the runs so far).
    """
    meta_path = d / "model.json"
    if not meta_path.is_file():
        raise SystemExit(f"--init-from {d}: no model.json (pass a directory written by `adapt export`)")
    meta = json.loads(meta_path.read_text())
    files = meta.get("delta_files") or []
    if not files:
        raise SystemExit(f"--init-from {d}: model.json lists no delta_files (not written by `adapt export`)")
    tr = meta.get("training") or {}
    rec = tr.get("recipe") or {}
    keys = ("top_k",) if a.top_k or rec.get("top_k") else ("top_k", "lora_r", "lora_targets")
    norm = lambda k, v: set(str(v).split(",")) if k == "lora_targets" else v  # noqa: E731
    diff = [
        f"{k}={rec[k]!r} there, {getattr(a, k)!r} here"
        for k in keys
        if k in rec and norm(k, rec[k]) != norm(k, getattr(a, k))
    ]
    if diff:
        raise SystemExit(f"--init-from {d} was trained with another recipe ({'; '.join(diff)}): pass the same settings")
    arrays: dict[str, np.ndarray] = {}
    for f in files:
        with np.load(d / f) as z:
            arrays.update({k: z[k] for k in z.files})
    lora = {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    full = {
        n.removesuffix(".weight"): p
        for n, p in model.named_parameters()
        if p.requires_grad and not n.endswith((".lora_a", ".lora_b"))
    }
    want = {f"{n}.lora_{x}" for n in lora for x in "ab"} | set(full)
    if set(arrays) != want:
        extra, missing = sorted(set(arrays) - want), sorted(want - set(arrays))
        raise SystemExit(
            f"--init-from {d} does not match this run's trainable tensors (LoRA rank/targets or --top-k differ?): "
            f"missing {missing[:3]} ({len(missing)}), unexpected {extra[:3]} ({len(extra)})"
        )
    with torch.no_grad():
        for n, m in lora.items():
            A, B = arrays[f"{n}.lora_a"], arrays[f"{n}.lora_b"]
            if A.shape != tuple(m.lora_a.shape) or B.shape != tuple(m.lora_b.shape):
                raise SystemExit(
                    f"--init-from {d}: {n} has LoRA shapes {A.shape}, {B.shape}, here {tuple(m.lora_a.shape)}"
                )
            m.lora_a.copy_(torch.from_numpy(A.astype(np.float32)))
            m.lora_b.copy_(torch.from_numpy(B.astype(np.float32)) / m.scale)
        for n, p in full.items():
            if arrays[n].shape != tuple(p.shape):
                raise SystemExit(f"--init-from {d}: {n} has shape {arrays[n].shape}, here {tuple(p.shape)}")
            p.add_(torch.from_numpy(arrays[n].astype(np.float32)))
    sums = {k: tr.get(k, 0) or 0 for k in TRAINING_SUMS}
    runs = tr.get("runs") or ([{**sums, "hardware": tr.get("hardware")}] if sums["steps"] else [])
    return {"path": str(d), "name": meta.get("name"), **sums, "runs": runs}


class _Rows(torch.utils.data.IterableDataset):
    """Micro-batches (``to_torch`` on the CPU) built in DataLoader workers (``--workers``), each its own stream."""

    def __init__(self, docs: list[str], tok: Tokenizer, a: argparse.Namespace, seed: int, edits=None):
        self.docs, self.tok, self.a, self.seed, self.edits = docs, tok, a, seed, edits

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        torch.set_num_threads(1)
        stream = RowStream(self.docs, self.tok, self.a, self.seed + 7919 * (info.id if info else 0), self.edits)
        while True:
            yield to_torch([stream.row() for _ in range(self.a.rows)], "cpu")


RECIPE_KEYS = (
    "lora_r", "lora_alpha", "lora_targets", "top_k", "row_len", "max_ctx", "max_mid", "views",
    "complementary", "eps", "block_weights", "window_chars", "lr", "warmup", "schedule", "accum", "rows",
    "weight_decay", "seed", "val_holes", "edit_data", "edit_share", "edit_noop_share", "edit_block_weights",
)  # fmt: skip


def parse_train(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="block-diffusion adaptation of the base (see module docstring)")
    ap.add_argument("--out", type=Path, default=Path("runs/adapt"))
    ap.add_argument("--resume", action="store_true", help="require a checkpoint (a run always resumes from one)")
    ap.add_argument("--minutes", type=float, default=60.0, help="training time of this invocation")
    ap.add_argument("--max-steps", type=int, default=0, help="stop at this total step (0: no limit); cosine ends here")
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus.jsonl"))
    ap.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"), help="only read to exclude it")
    ap.add_argument("--gguf", type=Path, default=None, help="default: the cached base (fetch_base)")
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lora-alpha", type=float, default=32.0)
    ap.add_argument("--lora-targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    ap.add_argument("--top-k", type=int, default=0, help="train the last k layers fully instead of LoRA")
    ap.add_argument("--row-len", type=int, default=1024, help="tokens per packed row")
    ap.add_argument("--rows", type=int, default=1, help="rows per micro-batch")
    ap.add_argument("--accum", type=int, default=4, help="micro-batches per optimizer step")
    ap.add_argument("--max-ctx", type=int, default=384)
    ap.add_argument("--max-mid", type=int, default=64)
    ap.add_argument("--views", type=int, default=3, help="block sizes trained per hole (one shared context)")
    ap.add_argument("--complementary", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--block-weights", default=",".join(map(str, BLOCK_WEIGHTS)), help=f"for B in {BLOCK_SIZES}")
    ap.add_argument("--window-chars", type=int, default=6000)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--val-every", type=int, default=100, help="steps between validations")
    ap.add_argument("--val-holes", type=int, default=24)
    ap.add_argument("--log-every", type=int, default=1)
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader processes building rows (GPU runs)")
    ap.add_argument("--init-from", type=Path, default=None, help="an `export`ed model directory to start from")
    ap.add_argument("--edit-data", default=None, help="a release_edits `diff` folder: its train split as next edits")
    ap.add_argument("--edit-share", type=float, default=0.2, help="share of holes from --edit-data")
    ap.add_argument(
        "--edit-noop-share", type=float, default=0.25, help="share of those holes at a line the edit leaves alone"
    )
    ap.add_argument(
        "--edit-block-weights",
        default="1,0,0,0,0",
        help=f"one block size per next-edit hole, drawn by these weights for B in {BLOCK_SIZES} (the runtime decodes "
        "and scores proposals token by token: B=1)",
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def cpu_name() -> str:
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def train(a: argparse.Namespace, base=None, tok: Tokenizer | None = None, docs: list[str] | None = None) -> dict:
    """Train (or resume) the run in ``a.out``; ``base`` = (config, weights), ``tok``, ``docs`` replace the
    base GGUF, its tokenizer and the corpus (tests)."""
    from .base import fetch_base, read_gguf

    torch.set_num_threads(a.threads)
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "ckpt.pt"
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False) if ckpt_path.exists() else None
    if a.resume and state is None:
        raise SystemExit(f"--resume: no checkpoint at {ckpt_path}")
    if state:  # a resumed run keeps its recipe
        for k, v in state["recipe"].items():
            setattr(a, k, v)
    if a.precision == "auto":
        a.precision = "bf16" if (a.device != "cpu" or cpu_has_native_bf16()) else "fp32"
    amp_dtype = torch.bfloat16 if a.precision == "bf16" else None

    if base is None:
        gguf = a.gguf or fetch_base()
        tok = load_tokenizer(gguf)
        base = read_gguf(gguf)
    if docs is None:
        if not a.corpus.exists():
            print(f"building corpus -> {a.corpus}", flush=True)
            print(corpus_mod.build(a.corpus, a.eval_dir, corpus_mod.default_roots()), flush=True)
        docs = [d["text"] for d in corpus_mod.load(a.corpus)]
    val_docs = [d for d in docs if held_out(d)] or docs[:1]  # a tiny corpus still validates
    train_docs = [d for d in docs if not held_out(d)] or docs
    cfg, w = base
    torch.manual_seed(a.seed)
    model, names = build_model(cfg, w, a)
    del w
    init = state.get("init_from") if state else None
    if a.init_from and state:
        print(f"resuming {ckpt_path}: --init-from {a.init_from} is not read again", flush=True)
    elif a.init_from:
        init = init_from_export(model, a.init_from, a)
        print(
            f"initialised from {a.init_from} ({init['steps']} steps, {init['tokens']} tokens before); fresh optimizer"
        )
    model.to(a.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.95), weight_decay=a.weight_decay)
    edits = None
    if getattr(a, "edit_data", None):
        from .release_edits import iter_examples

        edits = list(iter_examples(Path(a.edit_data), "train"))  # held-out packages are never read
        print(f"{len(edits)} release-edit examples from {a.edit_data}, {a.edit_share:.0%} of the holes", flush=True)
    stream = RowStream(train_docs, tok, a, a.seed, edits)
    counters = {"step": 0, "tokens": 0, "supervised": 0, "seconds": 0.0, "rows": 0}
    if state:
        missing = set(state["trainable"]) ^ {n for n, p in model.named_parameters() if p.requires_grad}
        if missing:
            raise SystemExit(f"{ckpt_path} does not match the model: {sorted(missing)[:4]}")
        model.load_state_dict(state["trainable"], strict=False)
        opt.load_state_dict(state["opt"])
        counters = state["counters"]
        stream.set_state(state["data"])
        random.setstate(_tuple(state["rng"]["python"]))
        torch.set_rng_state(state["rng"]["torch"])
        print(f"resumed from {ckpt_path} at step {counters['step']}", flush=True)
    recipe = {k: getattr(a, k) for k in RECIPE_KEYS}
    meta = {
        "recipe": recipe,
        "precision": a.precision,
        "device": a.device,
        "threads": a.threads,
        "cpu": cpu_name(),
        "trainable": model.n_params(trainable=True),
        "params": model.n_params(),
        "adapted": names[:3] + ["..."] if len(names) > 3 else names,
        "n_train_docs": len(train_docs),
        "n_val_docs": len(val_docs),
        "n_edit_examples": len(edits or []),
        "init_from": {k: v for k, v in init.items() if k != "runs"} if init else None,
    }
    (out / "adapt_meta.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta), flush=True)

    val_rows = validation_rows(val_docs, tok, a)
    log = open(out / "log.jsonl", "a")

    def write(rec: dict) -> None:
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(json.dumps(rec), flush=True)

    def validate() -> dict[str, float]:
        model.eval()
        res = {}
        t0 = time.time()
        with torch.no_grad():
            for B, rows in val_rows.items():
                tot, n = 0.0, 0.0
                for r in rows:
                    b = to_torch([r], a.device)
                    _, per_b = loss_fn(model, b, amp_dtype)
                    tot += float(per_b.sum())
                    n += float(b["n_mid"].sum())
                res[str(B)] = round(tot / max(n, 1), 4)
        model.train()
        write({"step": counters["step"], "tokens": counters["tokens"], "val": res, "val_s": round(time.time() - t0, 1)})
        return res

    def save() -> None:
        save_atomic(
            {
                "recipe": recipe,
                "config": model.c.to_dict(),
                "trainable": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
                "opt": opt.state_dict(),
                "counters": counters,
                "data": stream.state(),
                "rng": {"python": random.getstate(), "torch": torch.get_rng_state()},
                "meta": meta,
                "init_from": init,
            },
            ckpt_path,
        )

    def lr_at(step: int) -> float:
        lr = a.lr * min(1.0, (step + 1) / max(1, a.warmup))
        if a.schedule == "cosine" and a.max_steps:
            p = min(1.0, max(0.0, (step - a.warmup) / max(1, a.max_steps - a.warmup)))
            lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))
        return lr

    if a.val_every and counters["step"] == 0 and not state:
        validate()  # the base before any training
    t_end = time.time() + a.minutes * 60
    last_ckpt = time.time()

    def window() -> dict:
        z = np.zeros(len(BLOCK_SIZES))
        return {"loss": 0.0, "n": 0, "tok": 0, "sup": 0, "t0": time.time(), "per_b": z, "mid_b": z.copy()}

    loader = None
    if a.workers:  # fresh streams seeded by the step (a resumed run draws new rows)
        rows = _Rows(train_docs, tok, a, a.seed * 100_003 + counters["step"], edits)
        dl = torch.utils.data.DataLoader(
            rows,
            batch_size=None,
            num_workers=a.workers,
            pin_memory=a.device.startswith("cuda"),
            prefetch_factor=4,
            persistent_workers=True,
        )
        loader = iter(dl)

    def micro_batch() -> dict:
        if loader is None:
            return to_torch([stream.row() for _ in range(a.rows)], a.device)
        b = next(loader)
        return {k: v.to(a.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in b.items()}

    win = window()
    model.train()
    while time.time() < t_end and not (a.max_steps and counters["step"] >= a.max_steps):
        t0 = time.time()
        lr = lr_at(counters["step"])
        for g in opt.param_groups:
            g["lr"] = lr
        batches = [micro_batch() for _ in range(a.accum)]
        norm = float(sum(float(b["n_mid"].sum()) for b in batches))
        step_loss = 0.0
        for b in batches:
            loss, per_b = loss_fn(model, b, amp_dtype, norm=norm)
            loss.backward()
            step_loss += loss.item()
            win["per_b"] += per_b.cpu().numpy()
            win["mid_b"] += b["n_mid"].cpu().numpy()
            win["tok"] += b["n_tok"]
            win["sup"] += b["n_sup"]
            counters["tokens"] += b["n_tok"]
            counters["supervised"] += b["n_sup"]
            counters["rows"] += a.rows
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        counters["step"] += 1
        counters["seconds"] += time.time() - t0
        win["loss"] += step_loss
        win["n"] += 1
        if counters["step"] % a.log_every == 0:
            dt = time.time() - win["t0"]
            per_b = {str(B): round(float(s / m), 4) for B, s, m in zip(BLOCK_SIZES, win["per_b"], win["mid_b"]) if m}
            write(
                {
                    "step": counters["step"],
                    "tokens": counters["tokens"],
                    "supervised": counters["supervised"],
                    "loss": round(win["loss"] / win["n"], 4),
                    "loss_per_block": per_b,
                    "tok_s": round(win["tok"] / dt, 1),
                    "sup_tok_s": round(win["sup"] / dt, 1),
                    "lr": lr,
                    "hours": round(counters["seconds"] / 3600, 4),
                }
            )
            win = window()
        if a.val_every and counters["step"] % a.val_every == 0:
            validate()
        if time.time() - last_ckpt > a.ckpt_minutes * 60:
            save()
            last_ckpt = time.time()
    save()
    log.close()
    return counters


# -- export ----------------------------------------------------------------------------------------
def export(run: Path, out: Path, name: str | None = None, base: dict[str, np.ndarray] | None = None) -> dict:
    """Write ``delta*.npz`` (float16, each <= 16 MB) and ``model.json`` for the runtime.

    ``base``: the base weights (read from the cached GGUF when fully trained tensors need them).
    """
    state = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=False)
    recipe, tr = state["recipe"], state["trainable"]
    arrays: dict[str, np.ndarray] = {}
    lora = [n for n in tr if n.endswith(".lora_a")]
    scale = recipe["lora_alpha"] / recipe["lora_r"]
    for n in lora:
        mod = n.removesuffix(".lora_a")
        arrays[f"{mod}.lora_a"] = tr[n].float().numpy()
        arrays[f"{mod}.lora_b"] = tr[f"{mod}.lora_b"].float().numpy() * scale
    full = [n for n in tr if not n.endswith((".lora_a", ".lora_b"))]
    if full and base is None:
        from .base import fetch_base, read_gguf

        _, base = read_gguf(fetch_base())
    if full:
        for n in full:
            key = n.removesuffix(".weight")
            arrays[key] = tr[n].float().numpy() - base[key]
    files = write_deltas(arrays, out)
    meta = default_meta()
    c = state["counters"]
    hardware = {k: state["meta"].get(k) for k in ("cpu", "device", "threads", "precision")}
    own = {
        "steps": c["step"],
        "tokens": c["tokens"],
        "supervised_tokens": c["supervised"],
        "hours": round(c["seconds"] / 3600, 3),
    }
    init = state.get("init_from")  # what the export this run started from had seen (--init-from)
    total = {k: round(own[k] + init[k], 3) if k == "hours" else own[k] + init[k] for k in own} if init else own
    meta["name"] = name or f"smollm2-135m-bd-{total['steps']}"
    meta["delta_files"] = files
    meta["training"] = {
        **total,
        "hardware": hardware,
        "recipe": {
            "objective": "block diffusion (BD3-LM / Fast-dLLM v2 layout, see engine/adapt.py): context causal, "
            "blocks bidirectional, token shift, MASK = specials.mask, 1/t-weighted CE on masked slots",
            "block_sizes": list(BLOCK_SIZES),
            **recipe,
        },
        "val": _last_val(run / "log.jsonl"),
    }
    if init:
        meta["training"]["init_from"] = {k: v for k, v in init.items() if k != "runs"}
        meta["training"]["runs"] = init["runs"] + [{**own, "hardware": hardware}]
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.json").write_text(json.dumps(meta, indent=1))
    return meta


def _last_val(log: Path) -> dict | None:
    last = None
    if log.exists():
        for ln in log.read_text().splitlines():
            try:
                rec = json.loads(ln)
            except json.JSONDecodeError:
                continue
            if "val" in rec:
                last = {"step": rec["step"], **rec["val"]}
    return last


def write_deltas(arrays: dict[str, np.ndarray], out: Path, limit: int = MAX_FILE) -> list[str]:
    """float16 npz files ``delta-0.npz`` ... each below ``limit`` bytes; a LoRA pair stays in one file."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("delta*.npz"):
        old.unlink()
    units: list[list[str]] = []
    for k in sorted(arrays):
        if k.endswith(".lora_b"):
            continue
        units.append([k, k.removesuffix(".lora_a") + ".lora_b"] if k.endswith(".lora_a") else [k])
    chunks: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for u in units:
        n = sum(arrays[k].size * 2 + 200 for k in u)
        if n > limit:
            raise ValueError(f"{u[0]} alone is {n} bytes, over the {limit} byte limit")
        if size + n > limit - 4096 and chunks[-1]:
            chunks.append({})
            size = 0
        for k in u:
            chunks[-1][k] = arrays[k].astype(np.float16)
        size += n
    names = ["delta.npz"] if len(chunks) == 1 else [f"delta-{i}.npz" for i in range(len(chunks))]
    for nm, ch in zip(names, chunks):
        np.savez(out / nm, **ch)
        if (out / nm).stat().st_size > limit:
            raise ValueError(f"{out / nm} is over {limit} bytes")
    return names


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        ap = argparse.ArgumentParser(description="export a block-diffusion adaptation run for the runtime")
        ap.add_argument("--run", type=Path, default=Path("runs/adapt"))
        ap.add_argument("--out", type=Path, required=True)
        ap.add_argument("--name", default=None)
        e = ap.parse_args(argv[1:])
        meta = export(e.run, e.out, e.name)
        print(json.dumps({"out": str(e.out), "delta_files": meta["delta_files"], "training": meta["training"]}))
        return
    c = train(parse_train(argv))
    print(
        f"done: step {c['step']}, {c['tokens'] / 1e6:.2f}M tokens, {c['supervised'] / 1e6:.3f}M supervised, "
        f"{c['seconds'] / 3600:.2f} h"
    )


if __name__ == "__main__":
    main()
