"""Many requests' model calls as one batched forward pass: their KV caches padded to one length.

A shared engine serves several users at once; each request decodes on its own thread and asks
the decoder for one call at a time (``encode``/``step``: new tokens over that request's KV
cache). :func:`forward_many` runs a list of such calls together. Calls of the same number of
new tokens (at most ``PAD_ROWS``: decoding steps, a keystroke's few new tokens) form a group;
a longer call (a prefill) runs alone. Each group is one ONNX Runtime run over a batch:

* past caches of different lengths are right-aligned in a cache of the longest length (slot
  order does not matter: positions are rotated into the keys); the slots a request does not
  have are masked out by its attention bias (they hold zeros), and its new cache is a view of
  the batch's output (past and new tokens are adjacent there: no copy);
* each request gets back exactly its own logits rows and its own cache (past + new), as if it
  had run alone. A group of one runs unpadded: the same call as without batching.

:class:`BatchedDecoder` is the decoder a request thread sees: its calls go to a ``submit``
function (the replica's ``@serve.batch`` method) and it blocks for the result.

It knows the decoder's call signature and array shapes; it knows nothing about Ray, HTTP,
prompts or users.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

NEG = -1e9
PAD_ROWS = 16  # calls of at most this many new tokens are batched (with calls of the same count); longer ones run alone


def _group(calls: list[tuple]) -> list[list[int]]:
    """Indices of ``calls`` in groups to run together: calls of the same number of new tokens, at most
    PAD_ROWS (decoding steps; a keystroke's few new tokens); every longer call alone (a prefill is
    compute-bound: batching it gains nothing). Padding rows is not worth it: one 12-token call in a
    batch of 1-token steps made every step cost 12 rows (measured: a batch of 2 cost 2x one call)."""
    by_t: dict[int, list[int]] = {}
    alone = []
    for i, c in enumerate(calls):
        if len(c[0]) <= PAD_ROWS:
            by_t.setdefault(len(c[0]), []).append(i)
        else:
            alone.append([i])
    return list(by_t.values()) + alone


def forward_many(decoder: Any, calls: list[tuple]) -> list[tuple]:
    """Run ``calls`` (each ``(ids, pos, bias, past, logits_from)``, as ``decoder.forward`` takes)
    and return each one's ``(logits, present)``, in order."""
    out: list[Any] = [None] * len(calls)
    for g in _group(calls):
        if len(g) == 1:
            out[g[0]] = decoder.forward(*calls[g[0]])
            continue
        for i, res in zip(g, _padded(decoder, [calls[i] for i in g])):
            out[i] = res
    return out


def _padded(decoder: Any, calls: list[tuple]) -> list[tuple]:
    n_layer, n_kv, hd = decoder.n_layer, decoder.n_kv, decoder.head_dim
    ps = [0 if not c[3] else int(c[3][0][0].shape[2]) for c in calls]
    T = len(calls[0][0])
    assert all(len(c[0]) == T for c in calls), "a group's calls have the same number of new tokens"
    B, P = len(calls), max(ps)
    lf = min(int(c[4]) for c in calls)
    ids = np.zeros((B, T), np.int64)
    pos = np.zeros((B, T), np.int64)
    bias = np.full((B, 1, T, P + T), NEG, np.float32)
    past_k = [np.empty((B, n_kv, P, hd), np.float32) for _ in range(n_layer)]  # filled below
    past_v = [np.empty((B, n_kv, P, hd), np.float32) for _ in range(n_layer)]
    for b, (c_ids, c_pos, c_bias, c_past, _) in enumerate(calls):
        p = ps[b]
        ids[b] = np.asarray(c_ids, np.int64)
        pos[b] = np.asarray(list(c_pos), np.int64)
        cb = np.asarray(c_bias, np.float32)
        bias[b, 0, :, P - p : P] = cb[:, :p]
        bias[b, 0, :, P:] = cb[:, p:]
        for i in range(n_layer):  # the slots this request does not have: zeros (masked out anyway)
            if p < P:
                past_k[i][b, :, : P - p] = 0.0
                past_v[i][b, :, : P - p] = 0.0
            if p:
                past_k[i][b, :, P - p :] = c_past[i][0][0]
                past_v[i][b, :, P - p :] = c_past[i][1][0]
    feed = {"input_ids": ids, "position_ids": pos, "attn_bias": bias, "logits_from": np.array(lf, np.int64)}
    for i in range(n_layer):
        feed[f"past_k.{i}"], feed[f"past_v.{i}"] = past_k[i], past_v[i]
    res = decoder.sess.run(None, feed)
    logits = res[0]
    results = []
    for b, c in enumerate(calls):
        t, p, own_lf = T, ps[b], int(c[4])
        rows = logits[b, own_lf - lf : t - lf]
        present = [
            (res[1 + 2 * i][b : b + 1, :, P - p : P + t], res[2 + 2 * i][b : b + 1, :, P - p : P + t])
            for i in range(n_layer)
        ]
        results.append((rows, present))
    return results


class BatchedDecoder:
    """The decoder as a request thread sees it: every call of at most PAD_ROWS new tokens goes through
    ``submit`` (which may batch it with other requests' calls), a longer one (a prefill) through
    ``alone``; either blocks until its own result is back."""

    name = "onnx-batched"

    def __init__(self, inner: Any, submit: Callable[[tuple], tuple], alone: Callable[[tuple], tuple] | None = None):
        self.inner, self._submit, self._alone = inner, submit, alone or submit
        self.n_layer, self.n_kv, self.head_dim = inner.n_layer, inner.n_kv, inner.head_dim

    def forward(self, ids, pos, bias, past, logits_from: int):
        call = (list(ids), list(pos), np.asarray(bias, np.float32), past, int(logits_from))
        return (self._submit if len(call[0]) <= PAD_ROWS else self._alone)(call)

    def encode(self, ids, pos, bias, past, logits_from):
        return self.forward(ids, pos, bias, past, logits_from)

    def step(self, ids, pos, bias, past, logits_from):
        return self.forward(ids, pos, bias, past, logits_from)
