"""The completer on the pretrained base: SmolLM2-135M over a cached causal context.

The floor of the model issue: the base decodes the hole left to right, one slot per step
(block size 1), which is exactly its pretraining behaviour. What makes it a good infiller
without any training:

* **Token healing.** The prefix's last token is taken back and the first generated tokens
  must spell it out again (any token whose bytes agree with what was taken back). This BPE
  merges a newline with the next line's indentation and a word with its continuation, so a
  prefix that ends in ``"\\n"`` or mid-word otherwise forces an unnatural split (HumanEval
  single-line: 3% -> 29% pass@1 measured on 300 tasks).
* **The suffix in the context.** A causal model cannot look right, so the code after the
  hole is shown *before* the prefix, as line comments (``# ...``): suffix first, then prefix
  (SPM order). Typing only appends to the prefix, so the context's KV cache stays valid.
* **Stopping.** A single-line hole ends at its first newline (the rest of the cursor's line is
  never repeated); a block ends at a control token, at a line that dedents below the block,
  at a line that repeats one of the next lines after the hole, or, for a hole ending inside a
  line, where the generated line reaches that line's rest.

The context's KV cache is kept across requests (a few entries, least recently used out):
a new request reuses the longest cached token prefix of its context and prefills only the
rest, so a keystroke costs the few new tokens, not the whole context. ``stats`` counts hits.

**Block diffusion** (``block`` > 1, the adaptation's target; layout in :mod:`.adapt`): slots are
decoded a block at a time, a block's first slot from the logits before it and slot i from the
block's row i - 1 (token shift), committing in parallel the slots that clear ``threshold``;
``block = 1`` is exactly left-to-right decoding.

Every model call yields a complete :class:`~unmask.engine.infill.InfillDraft` (anytime); a
deadline stops before a call that would overrun, once there is text to show. Next-edit
requests are one left-to-right pass over the edit history (as comments) and the file excerpts,
their holes generated where they stand; a proposal counts only as sure as it is likelier than
the text there now.

It knows tokens, prompts and the stop rules; it knows nothing about editors, LSP or syntax.
The runtime graph is built on first use from the base GGUF (:mod:`.base`,
:mod:`.llama_onnx`) into the user's cache: no torch at run time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .anchor import stable_line_start, stable_start
from .base import BasePin, cache_dir, fetch_base, read_gguf, tokenizer_json
from .infill import BLOCK_BUCKET, LINE_BUCKET, ROOM_SLOTS, InfillDraft
from .runtime import ModelError, ModelInfo
from .tokenizer import Specials, Tokenizer

NEG = -1e9
# a next-edit proposal's confidence is 1 - exp(-gain / scale), gain = log P(proposal) - log P(text there
# now), nats: at scale 3 the default gate (0.75) asks for 4.2 nats. At scale 1 (gate at 1.4 nats) the
# untrained base's proposals on shared/eval/nes were all wrong (21 hunks, 0 right, 15 no-op cases spoken).
NES_GAIN_SCALE = 3.0


# -- runtime preparation -------------------------------------------------------------------------
def runtime_dir(info: ModelInfo) -> Path:
    """Where the runtime graph for this model version lives (keyed by base, delta and graph version)."""
    from .llama_onnx import GRAPH_VERSION

    pin = BasePin.from_meta(info.meta.get("base"))
    h = hashlib.sha256(json.dumps([pin.sha256, info.meta.get("quant", "q8"), GRAPH_VERSION], sort_keys=True).encode())
    for f in info.meta.get("delta_files", []):
        h.update(info.file(f).read_bytes())
    return cache_dir() / "runtime" / f"{info.meta.get('name', 'model')}-{h.hexdigest()[:12]}"


def prepare_runtime(info: ModelInfo, *, quiet: bool = False) -> Path:
    """The runtime model directory (``model.onnx``, ``tokenizer.json``), built on first use."""
    out = runtime_dir(info)
    if all((out / f).is_file() for f in ("model.onnx", "tokenizer.json", "config.json")):
        return out
    from .base import BaseModelError

    try:
        gguf = fetch_base(BasePin.from_meta(info.meta.get("base")), quiet=quiet)
        t0 = time.perf_counter()
        if not quiet:
            import sys

            print(f"unmask: preparing the runtime model in {out} (once)", file=sys.stderr)
        cfg, weights = read_gguf(gguf)
        _apply_delta(info, weights)
        from .llama_onnx import build

        model = build(cfg, weights, info.meta.get("quant", "q8"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "tokenizer.json").write_text(tokenizer_json(gguf))
        (out / "config.json").write_text(json.dumps({"config": cfg.to_dict(), "seconds": time.perf_counter() - t0}))
        tmp = out / f"model.onnx.{os.getpid()}.part"
        tmp.write_bytes(model.SerializeToString())
        os.replace(tmp, out / "model.onnx")  # last: its presence means the directory is complete
    except BaseModelError as e:
        raise ModelError(str(e)) from e
    except ImportError as e:
        raise ModelError(f"preparing the runtime model needs {e.name}: pip install 'unmask' again") from e
    return out


def _apply_delta(info: ModelInfo, weights: dict[str, np.ndarray]) -> None:
    """Add the trained deltas shipped with the model (``delta_files``, npz files).

    A key ``name`` holds a full delta for weight ``name``; keys ``name.lora_a`` (r, in) and
    ``name.lora_b`` (out, r), scale folded into ``b``, a low-rank one (``b @ a`` is added).
    """
    for f in info.meta.get("delta_files", []):
        path = info.file(f)
        with np.load(path) as z:
            for k in z.files:
                if k.endswith(".lora_b"):
                    continue
                name = k.removesuffix(".lora_a")
                if name not in weights:
                    raise ModelError(f"{path}: delta for unknown tensor {name}")
                if k.endswith(".lora_a"):
                    d = z[name + ".lora_b"].astype(np.float32) @ z[k].astype(np.float32)
                else:
                    d = z[k].astype(np.float32)
                if d.shape != weights[name].shape:
                    raise ModelError(f"{path}: delta for {name} has shape {d.shape}, not {weights[name].shape}")
                weights[name] = weights[name] + d


# -- the decoder -------------------------------------------------------------------------------
class OnnxDecoder:
    """The runtime graph in ONNX Runtime: ``forward(ids, pos, bias, past, logits_from)``."""

    name = "onnx"

    def __init__(self, path: Path, n_layer: int, n_kv: int, head_dim: int, device: str = "auto", threads: int = 0):
        import onnxruntime as ort

        from .runtime import ort_options

        so, providers = ort_options(device, threads)
        self.providers = providers
        try:
            self.sess = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load {path}: {e}. Delete {path.parent} to rebuild it.") from e
        self.n_layer, self.n_kv, self.head_dim = n_layer, n_kv, head_dim
        self.empty = np.zeros((1, n_kv, 0, head_dim), np.float32)

    @classmethod
    def load(cls, runtime: Path, device: str = "auto", threads: int = 0) -> OnnxDecoder:
        """The decoder of a prepared runtime directory (its ``config.json`` gives the cache's shape)."""
        try:
            c = json.loads((runtime / "config.json").read_text())["config"]
            shape = c["n_layer"], c["n_kv_head"], c["d_model"] // c["n_head"]
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as e:
            raise ModelError(f"cannot read {runtime / 'config.json'}: {e!r}. Delete {runtime} to rebuild it.") from e
        return cls(runtime / "model.onnx", *shape, device, threads)

    def forward(self, ids, pos, bias, past, logits_from: int, run_options=None):
        """ids/pos (T,), bias (T, P+T), past [(k, v)] * layers or None -> (logits (T-from, V), present)."""
        feed = {
            "input_ids": np.asarray(ids, np.int64)[None],
            "position_ids": np.asarray(pos, np.int64)[None],
            "attn_bias": np.asarray(bias, np.float32)[None, None],
            "logits_from": np.array(logits_from, np.int64),
        }
        for i in range(self.n_layer):
            k, v = past[i] if past else (self.empty, self.empty)
            feed[f"past_k.{i}"], feed[f"past_v.{i}"] = k, v
        out = self.sess.run(None, feed, run_options)
        return out[0][0], [(out[1 + 2 * i], out[2 + 2 * i]) for i in range(self.n_layer)]

    def release_memory(self) -> None:
        """Hand the unused regions of ONNX Runtime's CPU memory arena back to malloc: a one-token run that
        shrinks the arena. The arena keeps every region it grew by (doubling: a 64 MB one came early in a
        typing storm) until a run asks it to shrink (RELIABILITY.md, Typing storm). Takes about 20 ms, and the
        next cold request is about 6% slower while the arena grows again (``bench/memory_release.py``)."""
        import onnxruntime as ort

        opts = ort.RunOptions()
        opts.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.forward([0], [0], np.zeros((1, 1), np.float32), None, 0, opts)

    # the names TimedBackend times: a prefill is an "encode", a decode call a "step"
    def encode(self, ids, pos, bias, past, logits_from):
        return self.forward(ids, pos, bias, past, logits_from)

    def step(self, ids, pos, bias, past, logits_from):
        return self.forward(ids, pos, bias, past, logits_from)


def causal_bias(n_past: int, n_new: int) -> np.ndarray:
    """(T, P+T): every new position sees the cache and the new positions up to itself."""
    return np.triu(np.full((n_new, n_past + n_new), NEG, np.float32), k=n_past + 1)


# -- prompts -----------------------------------------------------------------------------------
def suffix_as_comments(suffix: str, comment: str = "#", max_lines: int = 12) -> str:
    """The code after the hole as line comments, shown before the prefix (SPM for a causal model)."""
    lines = suffix.split("\n")[:max_lines]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return ""
    return "".join(f"{comment} {ln}\n" if ln.strip() else f"{comment}\n" for ln in lines) + "\n"


@dataclass
class CacheStats:
    requests: int = 0
    hits: int = 0  # a cached prefix was reused
    reused_tokens: int = 0
    prefilled_tokens: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class CausalPrepared:
    """A next-edit request for the causal engine (see ``prepare_edit``)."""

    buckets: list[int]  # one per hole that fitted the window
    parts: list[str | None] = field(default_factory=list)  # the text in order; None where a hole is
    now: list[str] = field(default_factory=list)  # each hole's current text


class ContextCache:
    """KV caches of recent contexts, thread-safe, least recently used out.

    Entries live in namespaces (one per document or user on a shared engine; ``None`` for the
    in-process engine): a lookup reuses the longest cached token prefix within its namespace
    only. At most ``per_ns`` entries per namespace, and at most ``max_mb`` megabytes in all
    (0: no byte bound); the least recently used entry goes first.
    """

    def __init__(self, per_ns: int = 4, max_mb: float = 0):
        self.per_ns, self.max_bytes = per_ns, int(max_mb * 2**20)
        self.lock = threading.Lock()
        self._entries: OrderedDict[tuple, tuple[list, int]] = OrderedDict()  # (ns, tokens) -> (present, bytes)
        self.bytes = 0
        self.evicted = 0
        self._prefill_locks: dict = {}

    def __len__(self) -> int:
        return len(self._entries)

    def prefilling(self, ns):
        """A lock held while a namespace's context is prefilled (``None``, the single user: none).

        On a shared engine a document's next request often arrives while the previous one is still
        prefilling (a cold context under load); it waits and reuses that prefill instead of repeating it."""
        if ns is None:
            return contextlib.nullcontext()
        with self.lock:
            lk = self._prefill_locks.get(ns)
            if lk is None:
                if len(self._prefill_locks) > 4096:  # forget idle documents' locks
                    for k in [k for k, v in self._prefill_locks.items() if not v.locked()]:
                        del self._prefill_locks[k]
                lk = self._prefill_locks[ns] = threading.Lock()
            return lk

    def lookup(self, ns, ids: list[int]):
        """(n, past): the longest cached prefix of ``ids`` in ``ns`` (at most len - 1 tokens), or (0, None)."""
        key = tuple(ids)
        with self.lock:
            best, best_n = None, 0
            for e in self._entries:
                if e[0] == ns:
                    n = _common_prefix(e[1], key)
                    if n > best_n:
                        best, best_n = e, n
            if best is None:
                return 0, None
            self._entries.move_to_end(best)
            present = self._entries[best][0]
        n = min(best_n, len(ids) - 1)
        if n <= 0:
            return 0, None
        past = [(k[:, :, :n], v[:, :, :n]) for k, v in present]
        if n < len(best[1]):
            past = [(np.ascontiguousarray(k), np.ascontiguousarray(v)) for k, v in past]
        return n, past

    def store(self, ns, ids: list[int], present: list) -> None:
        """Keep ``present`` for ``ids`` in ``ns``; entries it extends (prefixes of ``ids``) go."""
        key = tuple(ids)
        if any(k.base is not None for k, _ in present):  # a view of a batched run: keep only this request's part
            present = [(np.array(k, order="C"), np.array(v, order="C")) for k, v in present]
        size = sum(k.nbytes + v.nbytes for k, v in present)
        with self.lock:
            for e in [e for e in self._entries if e[0] == ns and key[: len(e[1])] == e[1]]:
                self.bytes -= self._entries.pop(e)[1]  # superseded by this longer context (or the same one)
            self._entries[(ns, key)] = (present, size)
            self.bytes += size
            mine = [e for e in self._entries if e[0] == ns]
            for e in mine[: max(0, len(mine) - self.per_ns)]:
                self.bytes -= self._entries.pop(e)[1]
                self.evicted += 1
            while self.max_bytes and self.bytes > self.max_bytes and len(self._entries) > 1:
                self.bytes -= self._entries.popitem(last=False)[1][1]
                self.evicted += 1

    def as_dict(self) -> dict:
        with self.lock:
            return {
                "entries": len(self._entries),
                "namespaces": len({e[0] for e in self._entries}),
                "mb": round(self.bytes / 2**20, 1),
                "evicted": self.evicted,
            }


class CausalEngine:
    """The base model behind the engine API (``stream_holes``, ``infill``, ``stream_edit``...)."""

    def __init__(self, info: ModelInfo, backend: dict | None = None, cache_size: int = 4, cache_mb: float = 0):
        cfg = dict(backend or {})
        kind = cfg.pop("type", "onnx")
        if kind != "onnx":
            raise ModelError(f"the {info.meta.get('name')} model runs on the onnx backend only, not {kind!r}")
        cfg.pop("path", None)
        self.info, self.meta = info, info.meta
        rt = prepare_runtime(info)
        self.tokenizer_path = rt / "tokenizer.json"
        try:
            self.tok = Tokenizer.from_file(self.tokenizer_path, specials=Specials(**self.meta["specials"]))
        except Exception as e:  # the tokenizers library raises a bare Exception for a broken file
            raise ModelError(f"cannot read {self.tokenizer_path}: {e}. Delete {rt} to rebuild it.") from e
        self.backend = OnnxDecoder.load(rt, **cfg)
        self.window = int(self.meta.get("window", 512))
        self.buckets = list(self.meta.get("buckets", [8, 16, 32, 64]))
        self.long_bucket = int(self.meta.get("long_bucket", 128))  # tokens for a multi-line hole in batch use
        # whether the server asks this model for next-edit proposals beyond the rules (model.json "next_edit")
        self.proposes_edits = bool(self.meta.get("next_edit", {}).get("model_proposals", False))
        self.comment = self.meta.get("prompt", {}).get("comment", "#")
        self.suffix_style = os.environ.get("UNMASK_SUFFIX_STYLE") or self.meta.get("prompt", {}).get(
            "suffix", "comments"
        )
        self._cache = ContextCache(cache_size, cache_mb)  # context tokens -> their KV cache, per namespace
        self._local = threading.local()  # per request thread: cache namespace and last_cache (the engine is shared)
        self._heal_cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self.stats = CacheStats()
        vocab = self.tok.hf.get_vocab_size()
        self._bytes = [self._token_bytes(i) for i in range(vocab)]

    @property
    def last_cache(self) -> dict:
        """Context tokens of this thread's latest request: from the cache / run."""
        d = getattr(self._local, "cache", None)
        if d is None:
            d = self._local.cache = {"reused": 0, "prefilled": 0}
        return d

    @last_cache.setter
    def last_cache(self, value: dict) -> None:
        self._local.cache = value

    def _token_bytes(self, i: int) -> bytes:
        if i in self.tok.control_ids:
            return b""
        s = self.tok.hf.id_to_token(i)
        return bytes(_BYTE_DECODER.get(ch, 0) for ch in s)

    # -- context and cache ------------------------------------------------------------------
    def _context(self, before: str, after: str, room: int, comment: str | None = None) -> tuple[list[int], bytes]:
        """Token ids of the context (suffix comments, then the prefix minus its healed last token)."""
        comment = comment or self.comment
        head = suffix_as_comments(after, comment) if after and self.suffix_style == "comments" else ""
        cap = room * 8
        before = before[-cap:] if len(before) > cap else before
        h_ids = self.tok.encode(head) if head else []
        if len(h_ids) > room // 3:
            h_ids = self.tok.encode(suffix_as_comments(after, comment, max_lines=3))[: room // 3]
        p_ids = self.tok.encode(before)
        keep = room - len(h_ids)
        if len(p_ids) > keep:  # cut on the left where typing does not move the cut (engine/anchor.py)
            cut = len(before) - len(self.tok.decode(p_ids[-keep:]))
            at = stable_line_start(before, cut)  # an anchor line: typing below it does not move it
            before = before[at:] if at is not None else before[stable_start(before, cut) :]  # else one long line
            p_ids = self.tok.encode(before)[-keep:]
        heal = b""
        if p_ids:
            heal = self._bytes[p_ids[-1]]
            p_ids = p_ids[:-1]
        ids = h_ids + p_ids
        # an empty file (or one token, healed away): start from the document boundary the base knows
        return ids or [self.tok.specials.eos], heal

    def _prefill(self, ids: list[int]):
        """Logits after ``ids`` and the cache; reuses the longest cached prefix (of this thread's cache namespace)."""
        ns = getattr(self._local, "ns", None)
        with self._cache.prefilling(ns):  # a second request of a document waits for the first one's prefill
            return self._prefill_in(ns, ids)

    def _prefill_in(self, ns, ids: list[int]):
        n, past = self._cache.lookup(ns, ids)
        new = ids[n:]
        with self._cache.lock:
            self.stats.requests += 1
            if n:
                self.stats.hits += 1
                self.stats.reused_tokens += n
            self.stats.prefilled_tokens += len(new)
        self.last_cache["reused"] += n
        self.last_cache["prefilled"] += len(new)
        logits, present = self.backend.encode(new, range(n, len(ids)), causal_bias(n, len(new)), past, len(new) - 1)
        self._cache.store(ns, ids, present)
        return logits[-1], present

    def _allowed(self, rest: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Tokens that agree with the healed bytes ``rest``: (ids, bytes consumed by each)."""
        hit = self._heal_cache.get(rest)
        if hit is None:
            ids, used = [], []
            for i, b in enumerate(self._bytes):
                if b and (b.startswith(rest) or rest.startswith(b)):
                    ids.append(i)
                    used.append(min(len(b), len(rest)))
            hit = (np.array(ids, np.int64), np.array(used, np.int64))
            if len(self._heal_cache) < 512:
                self._heal_cache[rest] = hit
        return hit

    # -- decoding ----------------------------------------------------------------------------
    def _pick(self, logits: np.ndarray, rest: bytes, blank: bool, one_line: bool) -> tuple[int, float]:
        """The best token for a slot and its probability, given the healed bytes still to spell
        (``rest``) and whether the text so far is blank (a one-line answer does not start with a
        newline)."""
        lg = logits.astype(np.float64)
        lg -= lg.max()
        p = np.exp(lg)
        p /= p.sum()
        cand, used = self._allowed(rest) if rest else (None, None)
        q = p if cand is None else p[cand]
        norm = float(q.sum()) or 1.0
        top = int(np.argmax(q))
        order = [top]
        if one_line and blank:  # the first text token may be rejected below: rank more
            k = min(64, len(q) - 1)
            part = np.argpartition(-q, k)[:k]
            order += [int(x) for x in part[np.argsort(-q[part])] if x != top]
        for j in order:
            t = int(j if cand is None else cand[j])
            tail = self._bytes[t][int(used[j]) :] if cand is not None else self._bytes[t]
            if one_line and blank and b"\n" in tail:
                continue  # a one-line suggestion is not an empty line
            return t, float(q[j]) / norm
        return int(np.argmax(p)), float(p.max())

    def _generate(
        self,
        before: str,
        after: str,
        max_new: int,
        *,
        one_line: bool,
        deadline: float | None,
        t0: float,
        room: int | None = None,
        step0: int = 0,
        block: int = 1,
        block_steps: int | None = None,
        threshold: float = 0.9,
        suffix: bool = True,
        max_calls: int | None = None,
        comment: str | None = None,
    ) -> Iterator[tuple[int, str, list[float], bool, float, bool]]:
        """Yield (step, text, token confidences, last, encode ms, late) after every model call.

        ``last``: no more tokens come: the text is complete, or (``late``) the deadline leaves no
        time for another step. Decoding goes in blocks of ``block`` slots (see the module
        docstring; 1 = one token per step, the base's own behaviour): a block's first slot comes
        from the logits before it, every other slot i from the block's row i - 1; each step
        commits the slots at least ``threshold`` likely (at least one, and enough to finish the
        block in ``block_steps`` steps), a control token only at the leftmost open slot, healed
        bytes left to right. A finished block is run once more to extend the cache.
        """
        room = room or self.window - max(max_new, ROOM_SLOTS) - 1
        ids, heal = self._context(before, after if suffix else "", room, comment)
        logits, past = self._prefill(ids)
        enc_ms = (time.perf_counter() - t0) * 1000
        pos = len(ids)
        B = max(1, int(block))
        k_steps = max(1, int(block_steps or B))
        mask = self.tok.specials.mask
        confs: list[float] = []
        raw = b""
        rest = heal
        next_lines = [ln.strip() for ln in after.split("\n")[:12] if ln.strip()][:3] if after else []
        last_call = 0.0
        step = step0
        cur_line = before[before.rfind("\n") + 1 :]
        rest_of_line = after.split("\n", 1)[0].strip() if after else ""
        text = ""
        while True:
            slots = [mask] * B
            slot_conf = [0.0] * B
            done = [False] * B
            rows = None  # (B, V): row i predicts slot i + 1
            n_used = 0  # slots of this block already appended to the text
            rounds = 0
            while not all(done):
                rounds += 1
                open_ = [i for i in range(B) if not done[i] and (i == 0 or rows is not None)]
                leftmost = min(i for i in range(B) if not done[i])
                if rest:  # healing: strictly left to right
                    open_ = [leftmost]
                picks = {}
                for i in open_:
                    lg = logits if i == 0 else rows[i - 1]
                    blank = i == leftmost and not text.strip()
                    picks[i] = self._pick(lg, rest if i == leftmost else b"", blank, one_line)
                picks = {i: tc for i, tc in picks.items() if tc[0] not in self.tok.control_ids or i == leftmost}
                quota = -(-sum(not d for d in done) // max(1, k_steps - rounds + 1))
                ranked = sorted(picks, key=lambda i: -picks[i][1])
                chosen = [i for i in ranked if picks[i][1] >= threshold]
                for i in ranked:
                    if len(chosen) >= max(1, quota):
                        break
                    if i not in chosen:
                        chosen.append(i)
                for i in chosen:
                    slots[i], slot_conf[i] = picks[i]
                    done[i] = True
                # the text grows by the contiguous committed slots
                stop = False
                while n_used < B and done[n_used]:
                    tok = slots[n_used]
                    n_used += 1
                    if tok in self.tok.control_ids:
                        stop = True
                        break
                    b = self._bytes[tok]
                    if rest:
                        rest = rest[min(len(b), len(rest)) :]
                    raw += b
                    if len(raw) > len(heal):
                        confs.append(slot_conf[n_used - 1])
                    text = _text(raw, heal)
                    stop, text = _stop(text, cur_line, one_line, next_lines, len(confs) >= max_new, rest_of_line)
                    if stop:
                        break
                step += 1
                # the deadline ends decoding once there is text to show (a cold prefill may have eaten the budget)
                late = (
                    not stop
                    and deadline is not None
                    and bool(text.strip())
                    and time.perf_counter() + last_call > deadline
                )
                capped = max_calls is not None and step - step0 >= max_calls
                yield step, text, confs, stop or late or capped, enc_ms, late
                if stop or late or capped:
                    return
                t = time.perf_counter()
                if all(done):  # the finished block into the cache; its last row predicts the next slot
                    lgs, past = self.backend.step(
                        slots, range(pos, pos + B), np.zeros((B, pos + B), np.float32), past, B - 1
                    )
                    logits = lgs[-1]
                    pos += B
                else:  # a denoising step: the block's rows over the cache (the cache is not extended)
                    rows, _ = self.backend.step(slots, range(pos, pos + B), np.zeros((B, pos + B), np.float32), past, 0)
                last_call = time.perf_counter() - t

    def stream_holes(
        self,
        pieces: list[str],
        buckets: list[int] | None = None,
        *,
        budget_ms: float | None = None,
        steps: int = 64,
        threshold: float = 0.9,
        remask: float = 0.0,
        oracle_lengths: list[int] | None = None,
        one_line: bool = False,
        block: int | None = None,
        block_steps: int | None = None,
        comment: str | None = None,
        cache: str | None = None,
    ) -> Iterator[InfillDraft]:
        """Drafts, one per model call, for the hole(s) of ``pieces`` (holes filled in order).

        buckets: each hole's token cap (below BLOCK_BUCKET: one line, a block of lines otherwise).
        steps: the most model calls per hole (1 = one token left to right);
        block: slots decoded together (default: the model's ``decoding.block``; 1 = left to right);
        block_steps: model calls per block (default: the model's, else ``block``);
        threshold: a slot is committed once at least this likely (at least one per step).
        comment: the document language's line comment (the suffix is shown as comments; default ``#``).
        cache: the context cache namespace (a document on a shared engine); only its entries are reused.
        remask does not apply.
        """
        del remask
        self._local.ns = cache
        dec = self.meta.get("decoding", {})
        block = int(block or dec.get("block", 1))
        block_steps = int(block_steps or dec.get("block_steps", block))
        t0 = time.perf_counter()
        n = len(pieces) - 1
        buckets = list(buckets or [LINE_BUCKET] * n)
        if oracle_lengths is not None:
            buckets = [max(1, int(x)) for x in oracle_lengths]
        deadline = t0 + budget_ms / 1000 if budget_ms else None
        yield from self._holes(
            [("".join(pieces[: h + 1]), "".join(pieces[h + 1 :])) for h in range(n)],
            buckets,
            deadline,
            t0,
            one_line or None,
            block=block,
            block_steps=block_steps,
            threshold=threshold,
            max_calls=steps or None,
            comment=comment,
        )

    def _holes(self, prompts, buckets, deadline, t0, one_line, **dec) -> Iterator[InfillDraft]:
        self.last_cache = {"reused": 0, "prefilled": 0}
        n = len(prompts)
        texts, confs = [""] * n, [[] for _ in range(n)]
        step, enc_ms = 0, 0.0
        for h, ((before, after), bucket) in enumerate(zip(prompts, buckets)):
            single = one_line if one_line is not None else bucket < BLOCK_BUCKET
            start = step
            for step, text, c, last, e, late in self._generate(
                before, after, bucket, one_line=single, deadline=deadline, t0=t0, step0=start, **dec
            ):
                enc_ms = enc_ms or e
                texts[h], confs[h] = text, list(c)
                yield _draft(step, texts, confs, t0, enc_ms, last and (h == n - 1 or late))
                if late:  # the drafts so far are the answer; later holes stay empty
                    return

    def stream(self, prefix: str, suffix: str, bucket: int = LINE_BUCKET, **kw) -> Iterator[InfillDraft]:
        oracle = kw.pop("oracle_length", None)
        return self.stream_holes([prefix, suffix], [bucket], oracle_lengths=[oracle] if oracle else None, **kw)

    def infill(self, prefix: str, suffix: str, bucket: int = LINE_BUCKET, **kw) -> InfillDraft:
        drafts = list(self.stream(prefix, suffix, bucket, **kw))
        return drafts[-1]

    def warmup(self) -> None:
        self.infill("def f(x):\n    return", "\n", steps=2)

    # -- next edits ------------------------------------------------------------------------------
    def prepare_edit(self, history: str, segments: list) -> CausalPrepared:
        """A next-edit request as one left-to-right pass: the edit history as comments, then the
        file excerpts, each hole generated where it stands (earlier holes' answers stay in the
        text before later ones, so the context cache carries over from hole to hole).

        Holes that do not fit the window are left out (``len(result.buckets)``: the first ones).
        """
        from .edits import Gap, Hole

        head = "".join(f"{self.comment} {ln}\n" for ln in history.splitlines()) if history.strip() else ""
        if head:
            head = f"{self.comment} Recent edit:\n{head}\n"
        parts: list[str | None] = [head]  # text, or None for a hole
        now: list[str] = []  # each hole's current text
        for sg in segments:
            if isinstance(sg, Hole):
                parts.append(None)
                now.append(sg.target)
            else:
                parts.append("\n...\n" if isinstance(sg, Gap) else sg)
        if None not in parts:
            raise ValueError("no hole in the request")
        used, holes = 0, 0
        for i, part in enumerate(parts):
            used += LINE_BUCKET if part is None else len(self.tok.encode(part))
            if used > self.window:
                parts = parts[:i]
                break
            holes += part is None
        if not holes:
            raise ValueError("no hole fits the model window")
        return CausalPrepared([LINE_BUCKET] * holes, parts, now[:holes])

    def stream_prepared(
        self, prep, *, budget_ms: float | None = None, steps: int = 32, cache: str | None = None, **_
    ) -> Iterator[InfillDraft]:
        """Drafts for a prepared next-edit request: holes filled left to right, one line each."""
        t0 = time.perf_counter()
        self._local.ns = cache
        deadline = t0 + budget_ms / 1000 if budget_ms else None
        self.last_cache = {"reused": 0, "prefilled": 0}
        n = len(prep.buckets)
        texts, confs = [""] * n, [[] for _ in range(n)]
        step, enc_ms, h, before = 0, 0.0, 0, ""
        parts = prep.parts
        for i, part in enumerate(parts):
            if part is not None:
                before += part
                continue
            nxt = next((p for p in parts[i + 1 :] if p is not None), "")
            rest_of_line = nxt.split("\n", 1)[0]
            start = step
            for step, text, c, last, e, late in self._generate(
                before, rest_of_line, LINE_BUCKET, one_line=True, deadline=deadline, t0=t0, step0=start, suffix=False
            ):
                enc_ms = enc_ms or e
                texts[h], confs[h] = text, list(c)
                if last and not late and prep.now and text.strip() != prep.now[h].strip():
                    # a change is only as sure as it is likelier than the text that is there now
                    gain = self._logprob(before, text) - self._logprob(before, prep.now[h])
                    sure = 1.0 - float(np.exp(-max(0.0, gain) / NES_GAIN_SCALE))
                    confs[h] = [min(x, sure) for x in c] or [sure]
                yield _draft(step, texts, confs, t0, enc_ms, last and (h == n - 1 or late))
                if late:
                    return
            before += texts[h].rstrip("\n") if rest_of_line.strip() else texts[h]
            h += 1

    def _logprob(self, before: str, text: str) -> float:
        """log P(text | before) under the model (teacher-forced; the context cache is reused)."""
        ids_b = self.tok.encode(before)
        ids = self.tok.encode(before + text)
        k = _common_prefix(tuple(ids_b), tuple(ids))
        k = max(1, min(k, len(ids) - 1)) if len(ids) > 1 else 0
        if not ids or k >= len(ids):
            return 0.0
        logits, past = self._prefill(ids[:k])
        rows, _ = self.backend.step(ids[k:], range(k, len(ids)), causal_bias(k, len(ids) - k), past, 0)
        lps = 0.0
        for j, t in enumerate(ids[k:]):
            lg = (logits if j == 0 else rows[j - 1]).astype(np.float64)
            m = lg.max()
            lps += float(lg[t] - m - np.log(np.exp(lg - m).sum()))
        return lps

    def stream_edit(self, history: str, segments: list, **kw) -> Iterator[InfillDraft]:
        return self.stream_prepared(self.prepare_edit(history, segments), **kw)


def _draft(step, texts, confs, t0, enc_ms, done) -> InfillDraft:
    mean = [float(np.mean(c)) if c else 0.0 for c in confs]
    mins = [float(np.min(c)) if c else 0.0 for c in confs]
    per = [[round(float(x), 4) for x in c] for c in confs]
    return InfillDraft(step, list(texts), mean, mins, per, (time.perf_counter() - t0) * 1000, enc_ms, done)


def _text(raw: bytes, heal: bytes) -> str:
    return raw[len(heal) :].decode("utf-8", "ignore") if len(raw) > len(heal) else ""


def _before_rest(text: str, rest: str) -> str:
    """A one-line text for a hole with code after it on its line: no newline, the repeated rest cut off."""
    line = text.split("\n", 1)[0]
    stripped = line.rstrip()
    if stripped.endswith(rest):
        return stripped[: len(stripped) - len(rest)]
    return line


def _rest_reached(text: str, rest: str) -> str | None:
    """The text up to where it writes ``rest`` (the code after the hole on its line) at a line's
    end, or None: complete lines always count, the line being written once ``rest`` is 3+ chars."""
    lines = text.split("\n")
    for i, ln in enumerate(lines):
        complete = i < len(lines) - 1
        stripped = ln.rstrip()
        if (complete or len(rest) >= 3) and stripped.endswith(rest) and len(stripped) > len(rest):
            return "\n".join(lines[:i] + [stripped[: len(stripped) - len(rest)]])
    return None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _stop(
    text: str, cur_line: str, one_line: bool, next_lines: list[str], full: bool, rest: str = ""
) -> tuple[bool, str]:
    """Whether the text is complete, and the text cut where it ends: the line and block rules
    (:func:`_line_stop`), then the code after the hole on its line (``rest``, stripped): a
    one-line text ends where it writes that rest (cut off, no newline); a block ends where one
    of its lines reaches it."""
    stop, text = _line_stop(text, cur_line, one_line, next_lines, full)
    if one_line and rest and (stop or text.endswith(rest)):
        return True, _before_rest(text, rest)
    if rest and not one_line:
        cut = _rest_reached(text, rest)
        if cut is not None:
            return True, cut
    return stop, text


def _line_stop(text: str, cur_line: str, one_line: bool, next_lines: list[str], full: bool) -> tuple[bool, str]:
    """``cur_line``: the text of the cursor's line before the hole. One line: ends at its newline.
    A block: ends before a complete line that dedents below the block (at or below the cursor
    line when that line opens a block with ``:``/``{``, below the first line otherwise), that
    repeats the first line after the hole (or the second or third, when at least 8 characters
    long: the model is writing what already follows), or at two blank lines.
    """
    if one_line:
        if "\n" in text:
            return True, text[: text.index("\n") + 1]
        return full, text
    lines = text.split("\n")
    first = cur_line + lines[0]
    opens = not lines[0].strip() and first.rstrip().endswith((":", "{", "(", "["))  # the user's line opened it
    base = None if not first.strip() else _indent(first) + (1 if opens else 0)
    for i, ln in enumerate(lines[1:-1], start=1):  # complete lines after the cursor's
        if not ln.strip():
            continue
        if base is None:
            base = _indent(ln)
        st = ln.strip()
        repeats = next_lines and (st == next_lines[0] or (len(st) >= 8 and st in next_lines[1:]))
        if _indent(ln) < base or repeats:
            return True, "\n".join(lines[:i]) + "\n"
    if "\n\n\n" in text:
        return True, text[: text.index("\n\n\n") + 1]
    return full, text


def _common_prefix(a: tuple, b: tuple) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n
    while lo < hi:  # binary search on the first difference
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte <-> printable character table (byte-level BPE vocabularies are written in it)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


_BYTE_DECODER = {c: b for b, c in _bytes_to_unicode().items()}


def main(argv: list[str] | None = None) -> None:
    """``python -m unmask.engine.causal [--model DIR]``: fetch the base and build the runtime model now."""
    import argparse

    ap = argparse.ArgumentParser(description="prepare the runtime model (fetch the base once, build the graph)")
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    args = ap.parse_args(argv)
    info = ModelInfo.load(args.model)
    if info.meta.get("kind") != "causal-base":
        raise SystemExit(f"{info.path} is not a pretrained-base model: nothing to prepare")
    print(prepare_runtime(info))


if __name__ == "__main__":
    main()
