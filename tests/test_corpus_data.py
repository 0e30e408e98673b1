"""Corpus exclusion/decontamination rules and the training-example layout."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from unmask.engine import corpus
from unmask.engine.data import BUCKETS, make_example
from unmask.engine.runtime import ModelInfo, model_dir
from unmask.engine.tokenizer import Tokenizer

TOK = Tokenizer.from_file(ModelInfo.load(model_dir("denoiser")).file("tokenizer.json"))
CODE = "".join(f"def f{i}(x):\n    y = x * {i}\n    if y > 3:\n        return y\n    return -y\n\n" for i in range(30))


def test_eval_packages_and_vendored_copies_are_excluded():
    for p in [
        "site-packages/requests/api.py",
        "site-packages/pip/_vendor/requests/models.py",
        "site-packages/flask/app.py",
        "site-packages/click/core.py",
        "site-packages/flask_cors/core.py",
        "site-packages/requests-2.0.dist-info/x.py",
    ]:
        assert corpus.is_excluded_path(Path(p)), p
    for p in ["lib/python3.11/json/decoder.py", "site-packages/clickhouse/x.py", "site-packages/urllib3/util.py"]:
        assert not corpus.is_excluded_path(Path(p)), p


def test_shingle_decontamination_catches_copied_code():
    body = "\n".join(f"    value_{i} = compute_something({i}, other_argument)" for i in range(6))
    assert corpus.shingles("def f():\n" + body) & corpus.shingles("# copied\nimport x\n" + body + "\n")
    assert not corpus.shingles(CODE) & corpus.shingles(body)


def test_filters():
    assert corpus.keep_text(CODE) is None
    assert corpus.keep_text("x = 1\n") == "size"
    assert corpus.keep_text("print 'py2'\n" * 40) == "syntax"
    assert corpus.keep_text("x = '" + "a" * 1000 + "'\n") == "long-line"


def test_span_example_layout():
    rng = random.Random(3)
    sp = TOK.specials
    for _ in range(50):
        ex = make_example(CODE, TOK, rng, 256, max_spans=4, p_whole=0.0, t=0.5)
        L = int(ex.valid.sum())
        ctx = ex.is_ctx[:L]
        C = int(ctx.sum())
        assert ctx[:C].all() and not ctx[C:].any(), "context first, then slots"
        assert ex.ids[0] == sp.file and ex.pos[0] == 0
        assert (ex.target[:C] == -1).all(), "context is never noised"
        assert not (ex.ids[:C] == sp.mask).any()
        masked = ex.ids[C:L] == sp.mask
        assert ((ex.target[C:L] >= 0) == masked).all()
        np.testing.assert_allclose(ex.weight[C:L][masked], 2.0)
        assert len(set(ex.pos[:L].tolist())) == L, "every token has its own document position"
        assert ex.n_slots == L - C and ex.n_slots >= 1


def test_slots_end_with_eos_and_bucket_sizes():
    rng = random.Random(0)
    sp = TOK.specials
    C = 1
    while C == 1:  # skip the whole-window fallback (a span too long for any bucket)
        ex = make_example(CODE, TOK, rng, 256, max_spans=1, p_whole=0.0, t=1.0)  # all slots masked
        C = int(ex.is_ctx[: int(ex.valid.sum())].sum())
    tgt = ex.target[C : C + ex.n_slots].tolist()
    assert ex.n_slots in BUCKETS
    first_eos = tgt.index(sp.eos) if sp.eos in tgt else len(tgt)
    assert all(t == sp.eos for t in tgt[first_eos:]), "eos fills the slots after the span"
    text = TOK.decode(tgt[:first_eos])
    assert text and text in CODE


def test_whole_window_mode_supervises_most_positions():
    rng = random.Random(1)
    ex = make_example(CODE, TOK, rng, 256, p_whole=1.0, t=0.9)
    assert (ex.target >= 0).sum() > 0.7 * ex.valid.sum()
