"""Sampler tests with a scripted fake model: no weights, exact expectations."""

from __future__ import annotations

import time

import numpy as np
import pytest

from unmask.engine.sampler import denoise, span_tokens

V = 16
MASK, EOS = 1, 2


def scripted(target: list[int], conf: list[float], calls: list | None = None, sleep: float = 0.0):
    """A model that always predicts ``target[i]`` at slot i with probability ``conf[i]``."""
    target_a = np.array(target)
    conf_a = np.array(conf, dtype=np.float64)

    def model(slots: np.ndarray) -> np.ndarray:
        if calls is not None:
            calls.append(slots.copy())
        if sleep:
            time.sleep(sleep)
        S = len(slots)
        rest = (1 - conf_a) / (V - 1)
        probs = np.tile(rest[:, None], (1, V))
        probs[np.arange(S), target_a] = conf_a
        return np.log(probs).astype(np.float32)

    return model


def run(model, span_of, **kw):
    return list(denoise(model, np.array(span_of), MASK, EOS, **kw))


def test_confident_slots_commit_in_parallel():
    target = [5, 6, 7, 8]
    drafts = run(scripted(target, [0.99, 0.95, 0.5, 0.4]), [0, 0, 0, 0], threshold=0.9, max_steps=10)
    first = drafts[0]
    assert first.committed.tolist() == [True, True, False, False]
    assert drafts[-1].done and drafts[-1].tokens.tolist() == target
    assert len(drafts) == 3  # two confident at once, then one per step
    c = np.array([0.99, 0.95, 0.5, 0.4])
    renorm = c / (1 - (1 - c) / (V - 1))  # the mask token is never a candidate
    np.testing.assert_allclose(drafts[-1].confidence, renorm, rtol=1e-5)


def test_every_draft_is_complete_and_masked_slots_are_refed():
    calls: list = []
    drafts = run(scripted([5, 6, 7], [0.3, 0.2, 0.1], calls), [0, 0, 0], threshold=0.9, max_steps=10)
    assert all(MASK not in d.tokens for d in drafts)  # anytime: always a full draft
    assert calls[0].tolist() == [MASK, MASK, MASK]
    assert calls[1].tolist() == [5, MASK, MASK]  # most confident committed first


def test_step_cap_raises_quota():
    target = list(range(3, 11))
    drafts = run(scripted(target, [0.1] * 8), [0] * 8, threshold=0.99, max_steps=2)
    assert len(drafts) == 2 and drafts[-1].done
    assert drafts[0].committed.sum() == 4


def test_deadline_commits_everything():
    drafts = run(
        scripted([5, 6, 7, 8], [0.1] * 4, sleep=0.02),
        [0] * 4,
        threshold=0.99,
        max_steps=100,
        deadline=time.perf_counter() + 0.03,
    )
    assert drafts[-1].done and drafts[-1].committed.all()
    assert len(drafts) <= 3


def test_eos_propagates_to_end_of_span():
    # slot 1 predicts eos confidently; slots 2-3 would predict tokens, but the span has ended
    drafts = run(scripted([5, EOS, 7, 8], [0.5, 0.99, 0.5, 0.5]), [0] * 4, threshold=0.9, max_steps=10)
    assert not drafts[0].committed[1], "eos waits until the slots before it are decided"
    assert drafts[1].tokens.tolist() == [5, EOS, EOS, EOS] and drafts[1].committed.all()
    assert span_tokens(drafts[-1].tokens, np.array([0] * 4), 0, EOS) == [5]


def test_confident_far_eos_does_not_empty_the_span():
    # a weak model: unsure of the text, sure the far slots are end-of-span
    drafts = run(scripted([5, 6, EOS, EOS], [0.3, 0.3, 0.99, 0.99]), [0] * 4, threshold=0.9, max_steps=10)
    assert drafts[0].committed.tolist() == [True, False, False, False]
    assert span_tokens(drafts[-1].tokens, np.array([0] * 4), 0, EOS) == [5, 6]


def test_several_spans_one_batch_each_progresses():
    calls: list = []
    span_of = [0, 0, 1, 1, 1]
    drafts = run(scripted([5, 6, 7, 8, 9], [0.2, 0.1, 0.3, 0.2, 0.1], calls), span_of, threshold=0.9, max_steps=10)
    assert len(calls[0]) == 5  # one model call covers both spans
    assert drafts[0].committed.tolist() == [True, False, True, False, False]
    assert span_tokens(drafts[-1].tokens, np.array(span_of), 1, EOS) == [7, 8, 9]


def test_min_len_forbids_eos_and_forbid_list():
    drafts = run(
        scripted([EOS, EOS, 4], [0.99, 0.99, 0.99]),
        [0, 0, 0],
        threshold=0.9,
        max_steps=10,
        min_len=np.array([2]),
        forbid=[4],
    )
    toks = drafts[-1].tokens.tolist()
    assert toks[0] != EOS and toks[1] != EOS and toks[2] != 4 and MASK not in toks


def test_remask_refines_weak_tokens():
    calls: list = []
    drafts = run(scripted([5, 6], [0.95, 0.3], calls), [0, 0], threshold=0.9, max_steps=6, remask=0.5)
    # slot 1 stays weak under the model, so it is re-masked until the step cap
    assert len(calls) == 6
    assert any(c.tolist() == [5, MASK] for c in calls[2:])
    assert drafts[-1].done and drafts[-1].tokens.tolist() == [5, 6]


@pytest.mark.parametrize("S", [0])
def test_empty(S):
    drafts = list(denoise(scripted([], []), np.zeros(S, dtype=int), MASK, EOS))
    assert drafts[-1].done


def test_block_decoding_commits_left_to_right():
    target = [5, 6, 7, 8]
    drafts = run(scripted(target, [0.3, 0.3, 0.99, 0.99]), [0] * 4, threshold=0.9, max_steps=10, block=1)
    assert drafts[0].committed.tolist() == [True, False, False, False]
    assert drafts[-1].tokens.tolist() == target and len(drafts) == 4  # one slot per step, in order
    free = run(scripted(target, [0.3, 0.3, 0.99, 0.99]), [0] * 4, threshold=0.9, max_steps=10)
    assert free[0].committed.tolist() == [False, False, True, True]  # confident slots anywhere
