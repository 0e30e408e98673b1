"""The denoiser engine (the from-scratch model in engine/models/denoiser): windowing, several holes in one batch,
oracle length, deadlines."""

from __future__ import annotations

import pytest

from unmask.engine.infill import Engine
from unmask.engine.runtime import model_dir


@pytest.fixture(scope="module")
def eng():
    e = Engine({"path": str(model_dir("denoiser"))})
    e.warmup()
    return e


def test_stream_yields_complete_drafts_until_done(eng):
    drafts = list(eng.stream("def add(a, b):\n    return ", "\n", bucket=16, steps=6))
    assert 1 <= len(drafts) <= 6 and drafts[-1].done and not any(d.done for d in drafts[:-1])
    assert [d.step for d in drafts] == list(range(1, len(drafts) + 1))
    last = drafts[-1]
    # one confidence per generated text token, within the bucket (re-encoding the text need not give the
    # same count: a model may emit a non-canonical BPE split)
    assert (0 < len(last.token_confidence[0]) <= 16) or last.text == ""
    assert all(0.0 < c <= 1.0 for c in last.token_confidence[0])


def test_window_keeps_text_nearest_the_hole(eng):
    prefix = "".join(f"v{i} = {i}\n" for i in range(3000))
    suffix = "".join(f"w{i} = {i}\n" for i in range(3000))
    prep = eng.prepare([prefix, suffix], [32])
    assert len(prep.ctx_ids) + 32 <= eng.window
    ctx_text = eng.tok.decode(prep.ctx_ids.tolist())
    assert "v2999 = 2999\n" in ctx_text and "w0 = 0\n" in ctx_text and "v0 = 0\n" not in ctx_text
    # slots sit at the hole's document position, between prefix and suffix
    pre_n = int((prep.ctx_pos < prep.slot_pos[0]).sum())
    assert prep.ctx_pos[pre_n - 1] + 1 == prep.slot_pos[0] and prep.ctx_pos[pre_n] == prep.slot_pos[-1] + 1


def test_several_holes_are_filled_in_one_pass(eng):
    calls = []
    step = eng.backend.step

    def counting(ids, pos, kv):
        calls.append(ids.shape)
        return step(ids, pos, kv)

    eng.backend.step = counting
    try:
        pieces = ["import os\n\n\ndef a(x):\n    return ", "\n\n\ndef b(y):\n    return ", "\n"]
        drafts = list(eng.stream_holes(pieces, [8, 16], steps=4))
    finally:
        eng.backend.step = step
    assert len(drafts[-1].texts) == 2
    assert all(shape == (1, 24) for shape in calls[-len(drafts) :]), "both holes' slots go in one model call"


def test_oracle_length_fills_exactly_n_tokens(eng):
    d = eng.infill("def add(a, b):\n", "\n", oracle_length=5, steps=5)
    assert len(eng.tok.encode(d.text)) in (4, 5, 6)  # re-tokenizing may merge/split at most at edges
    assert d.text != ""


def test_one_line_mode_stops_at_newline(eng):
    d = eng.infill("def f(items):\n", "", bucket=64, steps=8, one_line=True)
    assert d.text.count("\n") <= 1 and (d.text.endswith("\n") or "\n" not in d.text)


def test_deadline_returns_a_draft_in_time(eng):
    # threshold > 1 means one slot per step: 64 steps unless the deadline stops it
    d = eng.infill("x = [\n" * 50, "]\n" * 50, bucket=64, steps=64, threshold=1.01, budget_ms=40)
    assert d.done and d.step < 64  # stopped early, with a complete answer


def test_identical_context_is_encoded_once(eng):
    n = []
    enc = eng.backend.encode
    eng.backend.encode = lambda *a: (n.append(1), enc(*a))[1]
    try:
        eng.infill("print(", ")\n", bucket=8, steps=2)
        eng.infill("print(", ")\n", bucket=8, steps=4, threshold=0.5)
    finally:
        eng.backend.encode = enc
    assert len(n) <= 1
