"""The denoising sampler: one generator over (model call, slots, budget) that yields drafts.

Masked-diffusion decoding (MDLM, Sahoo et al. 2024; LLaDA, Nie et al. 2025, Alg. "low
confidence remasking"): all span slots start as ``mask``. Each step calls the model once on
the current slots and, for every still-masked slot, takes the most likely token and its
probability (its *confidence*). Slots whose confidence is at least ``threshold`` are
committed in parallel (at least one per span per step, the most confident, so every step
makes progress: Fast-dLLM's threshold rule, Wu et al. 2025). With a step cap ``max_steps``
the per-step quota is raised so all slots are committed by the last step.

Semi-autoregressive order (``block``, LLaDA's block decoding): only the leftmost ``block``
still-masked slots of a span are candidates in a step. A weak model is most confident about
*end-of-span* at the far slots; committing those first makes it shrink every span toward
empty (each committed eos raises the next one's probability). Left-to-right blocks make
the span end where the text ends. For the same reason ``eos`` is only ever committed at
the leftmost open slot of its span, in any order mode.

Span ends: a slot committed as ``eos`` ends its span, so every later slot of that span is
committed as ``eos`` too (pad propagation); the span's text is what precedes the first
``eos``.

Anytime: each step yields a :class:`Draft` where still-masked slots are filled with their
current best guess, so the caller always holds a complete answer. When another step (timed
like the last one) would end past ``deadline`` (a ``time.perf_counter()`` value), the
sampler commits every remaining slot from the last model call and stops.

Re-masking (optional, ``remask`` > 0): after all slots are committed, committed slots whose
confidence under the latest model call is below ``remask`` are masked again and refined,
while the step cap and deadline allow.

Several spans are denoised as one batch: the slots of all spans form one row and the
model call sees them together; ``span_of`` says which span each slot belongs to.

It knows nothing about tokenizers, models or text: token ids and a callable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

ModelCall = Callable[[np.ndarray], np.ndarray]  # slots (S,) int64 -> logits (S, V) float32


@dataclass
class Draft:
    step: int  # model calls so far
    tokens: np.ndarray  # (S,) best tokens, committed or not
    confidence: np.ndarray  # (S,) probability of each token when it was chosen
    committed: np.ndarray  # (S,) bool
    done: bool  # all slots committed (and no re-masking pending)
    elapsed: float  # seconds since the sampler started


def _best(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R, V) logits, overwritten -> (best token, its probability, softmax normaliser) per row.

    ``logits`` is left holding ``exp(logit - max)``, so the probability of token t in row r is
    ``logits[r, t] / z[r]``. The best token's probability is ``1 / z``: no (R, V) division.
    """
    best = logits.argmax(axis=-1)
    logits -= logits[np.arange(len(best)), best][:, None]
    np.exp(logits, out=logits)
    z = logits.sum(axis=-1)
    return best, (1.0 / z).astype(np.float32), z


def denoise(
    model: ModelCall,
    span_of: np.ndarray,
    mask_id: int,
    eos_id: int,
    *,
    threshold: float = 0.9,
    max_steps: int = 64,
    deadline: float | None = None,
    remask: float = 0.0,
    min_len: np.ndarray | None = None,
    forbid: list[int] | None = None,
    block: int | None = None,
) -> Iterator[Draft]:
    """Denoise the slots of one or more spans; yield a Draft after every model call.

    span_of: (S,) int, the span index of each slot; slots of a span are contiguous and in
    document order. min_len: per span, slots that may not be ``eos`` (oracle length: set it
    to the span's slot count). forbid: token ids never to produce (e.g. mask, pad).
    block: semi-autoregressive decoding; only the leftmost ``block`` open slots of a span
    may be committed in a step (None: any slot).
    """
    t0 = time.perf_counter()
    S = len(span_of)
    n_spans = int(span_of.max()) + 1 if S else 0
    slots = np.full(S, mask_id, dtype=np.int64)
    conf = np.zeros(S, dtype=np.float32)
    committed = np.zeros(S, dtype=bool)
    idx_in_span = np.zeros(S, dtype=np.int64)
    starts = {}
    for i, s in enumerate(span_of):
        starts.setdefault(int(s), i)
        idx_in_span[i] = i - starts[int(s)]
    no_eos = np.zeros(S, dtype=bool) if min_len is None else idx_in_span < np.asarray(min_len)[span_of]
    banned = [mask_id] + list(forbid or [])
    step = 0
    if S == 0:
        yield Draft(0, slots, conf, committed, True, 0.0)
        return
    while True:
        t_call = time.perf_counter()
        out = model(slots)  # (S, V)
        step += 1
        remasking = bool(committed.all())
        # the softmax over the vocabulary is the sampler's main cost: only the rows that are
        # still open need it, except when re-masking rescores every committed token
        rows = np.arange(S) if remasking else np.flatnonzero(~committed)
        logits = np.asarray(out, dtype=np.float32)[rows]  # (R, V): indexing copies, the model's output stays
        logits[:, banned] = -np.inf
        logits[no_eos[rows], eos_id] = -np.inf
        best_r, p_r, z = _best(logits)
        best = np.zeros(S, dtype=np.int64)
        p = np.zeros(S, dtype=np.float32)
        best[rows], p[rows] = best_r, p_r
        now = time.perf_counter()
        # out of time when another step would end past the deadline: commit this draft now
        out_of_time = deadline is not None and now + (now - t_call) >= deadline
        last_step = step >= max_steps
        if remasking:  # re-masking phase: confidence of each committed token now
            conf = (logits[np.arange(S), slots] / z).astype(np.float32)
            weak = conf < remask
            if weak.any() and not (out_of_time or last_step):
                slots[weak] = mask_id
                committed[weak] = False
                yield Draft(
                    step,
                    np.where(committed, slots, best),
                    conf.copy(),
                    committed.copy(),
                    False,
                    time.perf_counter() - t0,
                )
                continue
            yield Draft(step, slots.copy(), conf.copy(), committed.copy(), True, time.perf_counter() - t0)
            return
        open_ = ~committed
        if out_of_time or last_step:
            take = open_.copy()
        else:
            take = np.zeros(S, dtype=bool)
            steps_left = max(1, max_steps - step + 1)
            for s in range(n_spans):
                open_s = np.where(open_ & (span_of == s))[0]  # in slot order
                if len(open_s) == 0:
                    continue
                # at least one slot per span, more if the step cap demands it
                quota = max(1, -(-len(open_s) // steps_left))
                # semi-autoregressive: only the leftmost `block` open slots may be committed
                eligible = open_s if block is None else open_s[: max(block, quota)]
                # end-of-span only at the leftmost open slot: a span ends where its text ends
                eligible = eligible[(best[eligible] != eos_id) | (eligible == open_s[0])]
                chosen = eligible[p[eligible] >= threshold]
                if len(chosen) < quota:
                    rest = eligible[p[eligible] < threshold]
                    chosen = np.concatenate([chosen, rest[np.argsort(-p[rest])][: quota - len(chosen)]])
                take[chosen] = True
        slots[take] = best[take]
        conf[take] = p[take]
        committed |= take
        # pad propagation: a committed eos ends its span
        for s in range(n_spans):
            in_s = np.where(span_of == s)[0]
            eos_at = in_s[committed[in_s] & (slots[in_s] == eos_id)]
            if len(eos_at):
                after = in_s[in_s > eos_at.min()]
                newly = after[~committed[after] | (slots[after] != eos_id)]
                slots[newly] = eos_id
                conf[newly] = np.maximum(conf[newly], conf[eos_at.min()])
                committed[newly] = True
        done = bool(committed.all()) and (remask <= 0 or out_of_time or last_step)
        tokens = np.where(committed, slots, best)
        yield Draft(step, tokens, conf.copy(), committed.copy(), done, time.perf_counter() - t0)
        if done:
            return


def span_tokens(tokens: np.ndarray, span_of: np.ndarray, span: int, eos_id: int) -> list[int]:
    """The tokens of one span up to its first eos."""
    out = []
    for t in tokens[span_of == span]:
        if int(t) == eos_id:
            break
        out.append(int(t))
    return out
