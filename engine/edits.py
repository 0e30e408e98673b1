"""Edit-history context and synthetic edit-propagation training examples (next-edit prediction).

The model sees a recent edit as a short diff in front of the file, then the file with holes:

    <|edit|> -old line\\n+new line\\n <|file|> text hole text <|sep|> text hole ... text

``<|sep|>`` marks a gap: lines of the file left out between two excerpts (far-apart
candidates of one request are packed into one sequence this way, so every candidate of a
request is denoised in one model call). Positions run on through the whole sequence.
:func:`history_text` turns a unified diff into the diff body the model sees; the same
function serves training and inference, so the two formats cannot drift apart.

Training examples are synthesized from clean code (no commit history on this machine):
a name used several times in a window is renamed at one place (the *seed* edit, shown as
the history), the other uses become holes whose answer is the new name; holes over other
names keep their text (the model must learn when *not* to change anything), and a share
of examples carries an unrelated edit where every hole keeps its text. Signature changes
(:func:`synthesize_signature`): a parameter removed from a ``def`` drops that argument at
every call; a keyword parameter added is passed through by name at every call.

It knows token ids through the tokenizer passed in and plain text; nothing of LSP or syntax.
"""

from __future__ import annotations

import keyword
import random
import re
from dataclasses import dataclass

import numpy as np

from .tokenizer import Tokenizer

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SKIP = set(keyword.kwlist) | {"self", "cls", "True", "False", "None", "print", "len", "str", "int"}
HISTORY_TOKENS = 96  # the diff body is cut to this many tokens (its start is kept)
_SUFFIXES = ("new", "list", "id", "value", "name", "data", "obj", "count", "path", "key", "2", "info", "map", "cfg")
_PREFIXES = ("_", "new_", "old_", "my_", "is_", "get_", "raw_", "all_")


def history_text(diff: str, max_lines: int = 24) -> str:
    """The body of a unified diff as the model sees it: only the ``-``/``+`` lines, in order."""
    out = []
    for line in diff.splitlines(keepends=True):
        if line.startswith(("---", "+++", "@@")):
            continue
        if line.startswith(("-", "+")):
            out.append(line if line.endswith("\n") else line + "\n")
    return "".join(out[:max_lines])


@dataclass
class Hole:
    target: str  # training: the text the model should put here; inference: the text there now
    bucket: int | None = None  # slots; None: chosen by ``assemble``'s ``bucket_of``


@dataclass
class Gap:
    pass


Segment = str | Hole | Gap


def new_name(old: str, names: list[str], rng: random.Random) -> str:
    """A plausible rename of ``old`` (what a developer might change it to)."""
    r = rng.random()
    parts = [p for p in old.split("_") if p]
    if r < 0.2 and names:
        return rng.choice(names)
    if r < 0.35:
        return f"{old.rstrip('_')}_{rng.choice(_SUFFIXES)}"
    if r < 0.5:
        return old[1:] if old.startswith("_") else rng.choice(_PREFIXES) + old
    if r < 0.6:
        if len(parts) > 1:
            return parts[0] + "".join(p.title() for p in parts[1:])
        return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), old)
    if r < 0.7:
        return old[:-1] if old.endswith("s") and len(old) > 2 else old + "s"
    pool = [p for n in names for p in n.split("_") if len(p) > 1]
    if len(parts) > 1 and pool:
        k = rng.randrange(len(parts))
        parts[k] = rng.choice(pool)
        return "_".join(parts)
    return f"{old}_{rng.choice(_SUFFIXES)}"


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for i, c in enumerate(text):
        if c == "\n":
            starts.append(i + 1)
    return starts


def synthesize(text: str, rng: random.Random) -> tuple[str, list[Segment]] | None:
    """One synthetic (history, segments) pair from clean ``text``, or None if it has no usable name."""
    occ: dict[str, list[tuple[int, int]]] = {}
    for m in IDENT.finditer(text):
        w = m.group()
        if len(w) > 1 and w not in _SKIP:  # attributes and names in strings rename too
            occ.setdefault(w, []).append((m.start(), m.end()))
    starts = _line_starts(text)

    def line_of(pos: int) -> int:
        return int(np.searchsorted(starts, pos, side="right")) - 1

    multi = [w for w, v in occ.items() if len({line_of(a) for a, _ in v}) >= 2]
    if not multi:
        return None
    names = list(occ)
    related = rng.random() < 0.8
    if related:
        old = rng.choice(multi)
        new = new_name(old, names, rng)
        if new == old or not IDENT.fullmatch(new):
            return None
        uses = occ[old]
        seed_line = line_of(uses[0][0] if rng.random() < 0.6 else rng.choice(uses)[0])
    else:  # an unrelated edit: a line inserted somewhere; every hole keeps its text
        old = new = ""
        uses = []
        seed_line = rng.randrange(len(starts))
    a, b = starts[seed_line], starts[seed_line + 1] if seed_line + 1 < len(starts) else len(text)
    seed_old = text[a:b]
    if related:
        seed_new = re.sub(rf"\b{re.escape(old)}\b", new, seed_old)
        if seed_new == seed_old:
            return None
        history = "-" + seed_old.rstrip("\n") + "\n+" + seed_new.rstrip("\n") + "\n"
    else:
        if not seed_old.strip():
            return None
        history = "+" + seed_old.rstrip("\n") + "\n"
        seed_new = seed_old
    # holes: the other uses (answer: the new name), plus other names that keep their text
    holes: dict[int, tuple[int, str]] = {}
    others = [u for u in uses if line_of(u[0]) != seed_line]
    rng.shuffle(others)
    for s, e in others[: rng.randint(1, 6)]:
        holes[s] = (e, new)
    pool = [u for w, v in occ.items() if w != old for u in v if line_of(u[0]) != seed_line]
    rng.shuffle(pool)
    for s, e in pool[: rng.randint(0 if related else 1, 3)]:
        if all(e < hs or s > he for hs, (he, _) in holes.items()):
            holes[s] = (e, text[s:e])
    if rng.random() < 0.3:  # a whole line that keeps its text (the "line below" candidate)
        k = min(len(starts) - 1, seed_line + 1)
        s = starts[k]
        e = starts[k + 1] - 1 if k + 1 < len(starts) else len(text)
        if e > s and text[s:e].strip() and all(e < hs or s > he for hs, (he, _) in holes.items()):
            holes[s] = (e, text[s:e])
    if not holes:
        return None
    return history, _segments(text, starts, seed_line, seed_new, holes, rng)


def _segments(
    text: str, starts: list[int], seed_line: int, seed_new: str, holes: dict[int, tuple[int, str]], rng: random.Random
) -> list[Segment]:
    """The window as excerpts (half the time: all of it) with ``holes`` cut out and the seed line edited."""
    hole_lines = {int(np.searchsorted(starts, s, side="right")) - 1 for s in holes}
    if rng.random() < 0.5:
        keep = {i for c in hole_lines | {seed_line} for i in range(c - 2, c + 3) if 0 <= i < len(starts)}
    else:
        keep = set(range(len(starts)))
    segs: list[Segment] = []
    prev_kept = True
    for i, ls in enumerate(starts):
        le = starts[i + 1] if i + 1 < len(starts) else len(text)
        if i not in keep:
            if prev_kept and segs:
                segs.append(Gap())
            prev_kept = False
            continue
        prev_kept = True
        if i == seed_line:
            segs.append(seed_new)
            continue
        cur = ls
        for s in sorted(h for h in holes if ls <= h < le):
            e, tgt = holes[s]
            segs.append(text[cur:s])
            segs.append(Hole(tgt))
            cur = e
        segs.append(text[cur:le])
    return [s for s in segs if not (isinstance(s, str) and not s)]


_DEF = re.compile(r"^([ \t]*)(?:async[ \t]+)?def[ \t]+(\w+)[ \t]*\(([^()\n]*)\)", re.M)


def _split_args(s: str) -> list[str] | None:
    """Top-level comma split of a one-line argument list; None if brackets do not balance."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                return None
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        return None
    if cur.strip():
        out.append(cur)
    return out


def synthesize_signature(text: str, rng: random.Random) -> tuple[str, list[Segment]] | None:
    """A changed signature and its call sites: a parameter removed (each call drops that argument)
    or a parameter added that callers pass through by name (``f(a, b)`` -> ``f(a, b, name=name)``)."""
    defs = list(_DEF.finditer(text))
    rng.shuffle(defs)
    starts = _line_starts(text)
    for m in defs:
        name, params = m.group(2), _split_args(m.group(3))
        if not params or name.startswith("__"):
            continue
        calls = []
        for c in re.finditer(rf"(?<![\w.]def ){re.escape(name)}\(([^()\n]*)\)", text):
            if c.start() == m.start(2):
                continue
            args = _split_args(c.group(1))
            if args is not None:
                calls.append((c.start(1), c.end(1), args))
        if not calls:
            continue
        bound = params[0].strip() in ("self", "cls")
        seed_line = int(np.searchsorted(starts, m.start(), side="right")) - 1
        holes: dict[int, tuple[int, str]] = {}
        if rng.random() < 0.6 and len(params) > bound:  # remove a plain positional parameter
            k = rng.randrange(int(bound), len(params))
            if any(ch in params[k] for ch in "*=:"):
                continue
            new_params = params[:k] + params[k + 1 :]
            j = k - int(bound)
            for a, b, args in calls:
                if len(args) == len(params) - int(bound) and not any("=" in x or "*" in x for x in args):
                    holes[a] = (b, ",".join(args[:j] + args[j + 1 :]).strip())
        else:  # add a keyword parameter passed through by name
            pname = rng.choice(["timeout", "encoding", "verbose", "strict", "context", "limit", "callback", "key"])
            if pname in text:
                continue
            new_params = params + [f" {pname}=None"]
            for a, b, args in calls:
                holes[a] = (b, ",".join(args + [f" {pname}={pname}"]).strip() if args else f"{pname}={pname}")
        if not holes:
            continue
        old_line = text[starts[seed_line] : text.find("\n", m.start()) if "\n" in text[m.start() :] else len(text)]
        new_line = old_line.replace(
            m.group(0), m.group(0)[: m.start(3) - m.start()] + ",".join(new_params).strip() + ")"
        )
        if new_line == old_line:
            continue
        history = f"-{old_line}\n+{new_line}\n"
        return history, _segments(text, starts, seed_line, new_line + "\n", holes, rng)
    return None


def assemble(
    tok: Tokenizer, history: str, segs: list[Segment], seq_len: int, bucket_of, targets: bool = True
) -> tuple[list[int], list[int], list[int], list[int], list[int]] | None:
    """Token layout of an edit request: (ctx_ids, ctx_pos, slot_pos, slot_target, span_of).

    ``bucket_of(n_tokens) -> slots or None``; holes that no longer fit end the sequence.
    """
    sp = tok.specials
    texts = [history] + [s if isinstance(s, str) else s.target for s in segs if not isinstance(s, Gap)]
    enc = iter(tok.encode_batch(texts))
    hist = next(enc)[:HISTORY_TOKENS]
    ctx = [sp.edit, *hist, sp.file]
    ctx_pos = list(range(len(ctx)))
    slot_pos: list[int] = []
    slot_tgt: list[int] = []
    span_of: list[int] = []
    p = len(ctx)
    budget = seq_len - p
    n_holes = 0
    for s in segs:
        if isinstance(s, Gap):
            if budget < 1:
                break
            ctx.append(sp.sep)
            ctx_pos.append(p)
            p += 1
            budget -= 1
            continue
        ids = next(enc)
        if isinstance(s, Hole):
            bk = s.bucket or bucket_of(len(ids))
            if bk is None or bk > budget:
                break
            slot_tgt += ids + [sp.eos] * (bk - len(ids))
            slot_pos += range(p, p + bk)
            span_of += [n_holes] * bk
            n_holes += 1
            p += bk
            budget -= bk
            continue
        take = ids[:budget]
        ctx += take
        ctx_pos += range(p, p + len(take))
        p += len(take)
        budget -= len(take)
        if budget <= 0:
            break
    if not slot_tgt:
        return None
    return ctx, ctx_pos, slot_pos, slot_tgt, span_of
