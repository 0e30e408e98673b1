"""The engine's public API: fill one or more holes in a text with the shipped model.

    eng = Engine()                                   # default model, ONNX Runtime
    for d in eng.stream("def add(a, b):\\n", "\\n"):  # a draft per denoising step
        print(d.step, d.texts[0])
    eng.infill(prefix, suffix, budget_ms=250).text

A request is a document cut into ``pieces`` around ``holes``: the text is
``pieces[0] + hole_0 + pieces[1] + hole_1 + ... + pieces[-1]``. The context the model sees
is the text around the holes, truncated to the model's window (prefix side cut on the
left, suffix side cut on the right); each hole gets a number of slots (its *bucket*: the
longest answer it can hold). The context is encoded once (cached for identical
contexts), then :func:`unmask.engine.sampler.denoise` runs the steps under the deadline.

It knows tokens, the model window and buckets; it knows nothing about editors, LSP or
syntax (callers choose the bucket: a line or a block).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .runtime import Backend, ModelError, load_backend
from .sampler import denoise, span_tokens
from .tokenizer import Tokenizer

LINE_BUCKET = 32  # a rest-of-line / single-line completion
BLOCK_BUCKET = 64  # a multi-line completion
# The window keeps room for this many hole slots whatever a hole's bucket, so the context (its cut, and the
# model's cache of it) does not change when the bucket does: a new line's first keystrokes take it from a block
# (64) to a line (32, then 16), and a context sized by the bucket was prefilled again at each
# (bench/window_start.py). The causal engine's room and the daemon's context budget (lsp/repo.py) both use it.
ROOM_SLOTS = BLOCK_BUCKET
DEFAULT_BLOCK: int | None = None  # semi-autoregressive window (see sampler); chosen by bench/decode_study.py


@dataclass
class InfillDraft:
    step: int
    texts: list[str]  # one per hole
    confidence: list[float]  # per hole: mean token confidence (eos included)
    min_confidence: list[float]  # per hole: the weakest token
    token_confidence: list[list[float]]  # per hole, per text token (0 while a slot is uncommitted)
    ms: float  # since the request started (tokenize + encode + steps)
    encode_ms: float
    done: bool

    @property
    def text(self) -> str:
        return self.texts[0]


@dataclass
class Prepared:
    ctx_ids: np.ndarray  # (C,)
    ctx_pos: np.ndarray  # (C,)
    slot_pos: np.ndarray  # (S,)
    span_of: np.ndarray  # (S,)
    buckets: list[int]
    key: tuple = field(default=(), repr=False)


KINDS = (None, "denoiser", "causal-base")  # model.json "kind" values this version runs (None: the denoiser)


def Engine(backend: dict | None = None, cache_size: int = 8, cache_mb: float = 96):  # noqa: N802 - used like a class
    """The engine for the model that ``backend`` (a tagged config, see ``runtime``) names.

    ``model.json``'s ``kind`` picks it: ``causal-base`` is the pretrained base over a cached
    causal context (:class:`unmask.engine.causal.CausalEngine`, its context caches bounded by
    ``cache_mb``), anything else the project's own denoiser (:class:`DenoiserEngine`). A
    ``{"type": "remote", "url": ..., "token": ..., "fallback": <backend or None>}`` config is a
    team engine over HTTP (:class:`unmask.engine.remote.RemoteEngine`). All have the same public API.
    """
    from .runtime import ModelInfo

    cfg = dict(backend or {})
    if cfg.get("type") == "remote":
        from .remote import RemoteEngine

        local = cfg.get("fallback")
        fallback = Engine(local, cache_size, cache_mb) if local is not None else None
        return RemoteEngine(cfg["url"], token=cfg.get("token"), fallback=fallback)
    info = ModelInfo.load(cfg.get("path"))
    kind = info.meta.get("kind")
    if kind not in KINDS:
        raise ModelError(
            f"{info.path / 'model.json'} is a model of kind {kind!r}, which this version of unmask cannot run "
            "(it runs 'causal-base' and 'denoiser' models): upgrade unmask, or point "
            "modelPath/--model at another model"
        )
    if kind == "causal-base":
        from .causal import CausalEngine

        return CausalEngine(info, backend, cache_mb=cache_mb)
    return DenoiserEngine(backend, cache_size)


class DenoiserEngine:
    """Loads a model once; thread-compatible (one request at a time per Engine)."""

    def __init__(self, backend: dict | None = None, cache_size: int = 8):
        self.backend: Backend
        self.backend, self.info = load_backend(backend)
        self.meta = self.info.meta
        self.tokenizer_path = self.info.file("tokenizer.json")
        self.tok = Tokenizer.from_file(self.tokenizer_path)
        want = self.meta.get("specials", {})
        if want and want != self.tok.specials.as_dict():
            from .runtime import ModelError

            raise ModelError(f"tokenizer special ids {self.tok.specials.as_dict()} differ from model.json {want}")
        self.window = int(self.meta.get("window", 384))
        self.buckets = list(self.meta.get("buckets", [8, 16, 32, 64]))
        self._cache: OrderedDict[tuple, object] = OrderedDict()
        self._cache_size = cache_size

    # -- context packing -------------------------------------------------------------------
    def prepare(self, pieces: list[str], buckets: list[int]) -> Prepared:
        """Tokenize pieces, fit them with the holes' slots into the window, assign positions."""
        assert len(pieces) == len(buckets) + 1, "pieces must surround the holes"
        sp = self.tok.specials
        room = self.window - 1 - sum(buckets)
        if room < 8:
            raise ValueError(f"holes need {sum(buckets)} slots; the window is {self.window}")
        # only tokenize what can fit: a generous character cap per side
        cap = room * 8
        first = pieces[0][-cap:] if len(pieces[0]) > cap else pieces[0]
        last = pieces[-1][:cap]
        texts = [first, *pieces[1:-1], last] if len(pieces) > 1 else [first]
        toks = self.tok.encode_batch(texts)
        if len(pieces[0]) > cap and toks[0]:
            toks[0] = toks[0][1:]  # first token may be cut mid-way
        inner = sum(len(t) for t in toks[1:-1])
        if inner > room:  # inner pieces too long: keep each one's edges
            raise ValueError("holes are too far apart for the model window")
        side = room - inner
        n_pre, n_suf = len(toks[0]), len(toks[-1]) if len(toks) > 1 else 0
        keep_suf = min(n_suf, max(side // 3, side - n_pre))
        keep_pre = min(n_pre, side - keep_suf)
        toks[0] = toks[0][n_pre - keep_pre :]
        if len(toks) > 1:
            toks[-1] = toks[-1][:keep_suf]
        ctx_ids, ctx_pos, slot_pos, span_of = [sp.file], [0], [], []
        p = 1
        for i, t in enumerate(toks):
            ctx_ids += t
            ctx_pos += range(p, p + len(t))
            p += len(t)
            if i < len(buckets):
                slot_pos += range(p, p + buckets[i])
                span_of += [i] * buckets[i]
                p += buckets[i]
        return Prepared(
            np.array(ctx_ids, np.int64),
            np.array(ctx_pos, np.int64),
            np.array(slot_pos, np.int64),
            np.array(span_of, np.int64),
            list(buckets),
            (tuple(ctx_ids), tuple(ctx_pos)),
        )

    def _encode(self, prep: Prepared):
        kv = self._cache.get(prep.key)
        if kv is None:
            kv = self.backend.encode(prep.ctx_ids, prep.ctx_pos)
            self._cache[prep.key] = kv
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(prep.key)
        return kv

    # -- decoding --------------------------------------------------------------------------
    def stream_holes(
        self,
        pieces: list[str],
        buckets: list[int] | None = None,
        *,
        budget_ms: float | None = None,
        steps: int = 32,
        threshold: float = 0.9,
        remask: float = 0.0,
        oracle_lengths: list[int] | None = None,
        one_line: bool = False,
        block: int | None = DEFAULT_BLOCK,
        comment: str | None = None,
        cache: str | None = None,
    ) -> Iterator[InfillDraft]:
        """Yield a draft per step for every hole of ``pieces`` (see module docstring).

        comment: the language's line comment; unused here (the denoiser sees the suffix as it is).
        cache: a context cache namespace; unused here (one shared cache).

        oracle_lengths: exact token counts of the answers (evaluation with given length):
        each hole gets exactly that many slots and no end-of-span.
        one_line: a single-line suggestion: each text ends after its first newline.
        """
        t0 = time.perf_counter()
        n = len(pieces) - 1
        if oracle_lengths is not None:
            buckets = [max(1, int(x)) for x in oracle_lengths]
        buckets = buckets or [LINE_BUCKET] * n
        prep = self.prepare(pieces, buckets)
        min_len = np.array(buckets) if oracle_lengths is not None else None
        return self._decode(
            prep,
            t0,
            budget_ms=budget_ms,
            steps=steps,
            threshold=threshold,
            remask=remask,
            min_len=min_len,
            one_line=one_line,
            block=block,
        )

    def prepare_edit(self, history: str, segments: list) -> Prepared:
        """Layout of a next-edit request: the edit history, then file excerpts with holes (see ``edits``).

        Holes that do not fit the window are left out: ``len(result.buckets)`` says how many fitted
        (the first ones, in order).
        """
        from .edits import assemble

        lay = assemble(self.tok, history, segments, self.window, lambda n: LINE_BUCKET)
        if lay is None:
            raise ValueError("no hole fits the model window")
        ctx_ids, ctx_pos, slot_pos, _, span_of = lay
        n = span_of[-1] + 1
        buckets = [span_of.count(h) for h in range(n)]
        return Prepared(
            np.array(ctx_ids, np.int64),
            np.array(ctx_pos, np.int64),
            np.array(slot_pos, np.int64),
            np.array(span_of, np.int64),
            buckets,
            (tuple(ctx_ids), tuple(ctx_pos)),
        )

    def stream_edit(self, history: str, segments: list, **kw) -> Iterator[InfillDraft]:
        """Drafts for every hole of a next-edit request (:meth:`prepare_edit`); options as in ``stream_holes``."""
        return self.stream_prepared(self.prepare_edit(history, segments), **kw)

    def stream_prepared(self, prep: Prepared, **kw) -> Iterator[InfillDraft]:
        """Drafts for an already prepared request (options as in ``stream_holes``, no oracle lengths)."""
        return self._decode(prep, time.perf_counter(), **kw)

    def _decode(
        self,
        prep: Prepared,
        t0: float,
        *,
        budget_ms: float | None = None,
        steps: int = 32,
        threshold: float = 0.9,
        remask: float = 0.0,
        min_len: np.ndarray | None = None,
        one_line: bool = False,
        block: int | None = DEFAULT_BLOCK,
    ) -> Iterator[InfillDraft]:
        n = len(prep.buckets)
        kv = self._encode(prep)
        t_enc = time.perf_counter()
        sp = self.tok.specials
        deadline = t0 + budget_ms / 1000 if budget_ms else None

        def call(slots: np.ndarray) -> np.ndarray:
            return self.backend.step(slots[None], prep.slot_pos[None], kv)[0]

        for d in denoise(
            call,
            prep.span_of,
            sp.mask,
            sp.eos,
            threshold=threshold,
            max_steps=steps,
            deadline=deadline,
            remask=remask,
            min_len=min_len,
            forbid=[sp.pad, sp.file, sp.sep, sp.edit],
            block=block,
        ):
            texts, confs, mins, per_tok = [], [], [], []
            for h in range(n):
                ids = span_tokens(d.tokens, prep.span_of, h, sp.eos)
                text = self.tok.decode(ids)
                if one_line and "\n" in text:  # keep the tokens up to the one holding the newline
                    k = next(i for i in range(1, len(ids) + 1) if "\n" in self.tok.decode(ids[:i]))
                    ids, text = ids[:k], text[: text.index("\n") + 1]
                texts.append(text)
                c = d.confidence[prep.span_of == h][: len(ids) + 1]
                per_tok.append([round(float(x), 4) for x in c[: len(ids)]])
                confs.append(float(c.mean()) if len(c) else 1.0)
                mins.append(float(c.min()) if len(c) else 1.0)
            ms = (time.perf_counter() - t0) * 1000
            yield InfillDraft(d.step, texts, confs, mins, per_tok, ms, (t_enc - t0) * 1000, d.done)

    def stream(self, prefix: str, suffix: str, bucket: int = LINE_BUCKET, **kw) -> Iterator[InfillDraft]:
        oracle = kw.pop("oracle_length", None)
        return self.stream_holes([prefix, suffix], [bucket], oracle_lengths=[oracle] if oracle else None, **kw)

    def infill(self, prefix: str, suffix: str, bucket: int = LINE_BUCKET, **kw) -> InfillDraft:
        drafts = list(self.stream(prefix, suffix, bucket, **kw))
        return drafts[-1]

    def warmup(self) -> None:
        self.infill("def f(x):\n    return", "\n", steps=2)
