"""The shipped tokenizer round-trips any text exactly and exposes its special ids by name."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from unmask.engine.runtime import ModelInfo, model_dir
from unmask.engine.tokenizer import SPECIAL_TOKENS, Tokenizer

TOK = Tokenizer.from_file(ModelInfo.load(model_dir("denoiser")).file("tokenizer.json"))

code_alphabet = st.sampled_from(list("abcdefxyz_0123456789 \t\r\n()[]{}:;,.'\"#=+-*/\\<>|&%$@!?`~^"))
code_like = st.lists(st.one_of(code_alphabet, st.characters()), max_size=300).map("".join)


@settings(max_examples=300, deadline=None)
@given(code_like)
def test_round_trip_any_text(s: str):
    # lone surrogates cannot be encoded as UTF-8 by anyone; everything else must survive
    s = s.encode("utf-8", "replace").decode("utf-8")
    assert TOK.decode(TOK.encode(s)) == s


def test_round_trip_whitespace_and_unicode():
    for s in ["\tif x:\r\n\t\treturn 1\r\n", "    café = '→ 世界 😀'\n", "\n\n\n", " " * 17 + "x", ""]:
        assert TOK.decode(TOK.encode(s)) == s


def test_specials_resolved_by_name_and_dropped_on_decode():
    sp = TOK.specials
    ids = {sp.pad, sp.mask, sp.eos, sp.file, sp.sep, sp.edit}
    assert len(ids) == 6
    assert TOK.hf.id_to_token(sp.mask) == "<|mask|>"
    assert TOK.decode([sp.file] + TOK.encode("x = 1") + [sp.eos, sp.eos]) == "x = 1"
    # special strings in source text are plain text, not special tokens
    assert not set(TOK.encode(SPECIAL_TOKENS[1])) & ids
