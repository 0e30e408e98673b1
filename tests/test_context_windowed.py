"""Context work on bad input is windowed: what a completion reads of the current document is bounded by
a window around the cursor or by what changed since the last request, never the whole file.

* the names the ``definitions`` and ``open`` sources look for come from bytes near the cursor, even on a
  2 MB minified line (before, every identifier of the line: definitions from 1 MB away were shown);
* a definition's header in minified code is its own signature, not the first 400 characters of its line;
* the current document's tags are kept per top-level node and updated from the edits
  (``context/doctags.py``): after a keystroke only the nodes it touched are queried again, and the
  result equals a whole-file extraction (random edits on every fixture);
* on an ordinary file, the context is exactly what it was (``fixtures/real``: a golden file first
  written by the code at fe92d04, written again when the prefix's cut moved to anchor lines,
  engine/anchor.py: 12 of its 40 contexts changed, each prefix giving up 6-41 tokens to snippets);
* typing at the end of a line longer than the window leaves the prefix's start in place.

Timings are in ``bench/bad_input_context.py`` and RELIABILITY.md, not asserted here.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from unmask.context import (
    LANGUAGES,
    IndexConfig,
    ParsedDocument,
    WorkspaceIndex,
    extract_tags,
    gather_context,
)
from unmask.context.doctags import DocumentTags

FIXTURES = Path(__file__).parent / "fixtures"
REAL = FIXTURES / "real" / "sources.py.txt"
GOLDEN = FIXTURES / "real" / "sources.context.json"
MINIFIED = "var a=" + "{b:[1,2,3],c:function(x){return x*2}}," * 52_632 + "z="  # as tests/test_bad_input.py


def real_contexts() -> list[dict]:
    """The context at every 9th line of a real 356-line file, after a keystroke there, with another document open."""
    other = ParsedDocument((FIXTURES / "python" / "tags.py").read_text(), "python", "/w/other.py")
    doc = ParsedDocument(REAL.read_text(), "python", "/w/sources.py")
    out = []
    for line in range(3, doc.line_count, 9):
        text = doc.line_text(line)
        col = len(text) if line % 2 else len(text) // 2
        doc.apply_edit((line, col), (line, col), "x")
        res = gather_context(doc, line, col + 1, open_docs=[other])
        d = res.to_dict()
        d.pop("timings_ms")
        for piece in d["pieces"]:
            piece.pop("text")  # the engine's pieces below hold it
        d["engine"] = res.engine_pieces()
        out.append(d)
    return out


def test_the_context_of_an_ordinary_file_is_unchanged():
    want = json.loads(GOLDEN.read_text())
    got = json.loads(json.dumps(real_contexts()))
    assert len(got) == len(want) > 30
    for g, w in zip(got, want):
        assert g == w


def test_a_minified_line_is_read_only_near_the_cursor(tmp_path: Path):
    """Names 1 MB away on the same line are not looked up; the context is bounded and ends at the cursor."""
    lib = "function farAwayName(a) {\n  return a;\n}\nfunction nearName(b) {\n  return b;\n}\n"
    (tmp_path / "lib.js").write_text(lib)
    ix = WorkspaceIndex(tmp_path, IndexConfig(workers=0))
    ix.build()
    text = "farAwayName(1);" + MINIFIED + "nearName(2);q="
    doc = ParsedDocument(text, None, str(tmp_path / "app.js"))  # over 1 MB: plain text, as the server keeps it
    res = gather_context(doc, 0, len(text), index=ix)
    shown = "".join(res.engine_pieces()[0])
    assert res.prefix.text.endswith("nearName(2);q=") and len(shown) < 20_000
    assert "function nearName(b)" in shown and "farAwayName" not in shown
    ix.close()


def minified_line(n: int, seed: int = 0) -> str:
    """``n`` characters of JavaScript on one line that do not repeat (a bundler's output, roughly)."""
    rng = random.Random(seed)
    out, size = [], 0
    while size < n:
        s = f"v{rng.randrange(10**4)}=f{rng.randrange(999)}(a{rng.randrange(99)},{rng.randrange(10**6)})"
        out.append(s)
        size += len(s) + 1
    return ";".join(out)[:n]


@pytest.mark.parametrize("text", [minified_line(60_000), MINIFIED[:60_000]], ids=["bundle", "repeating"])
def test_the_prefix_of_one_long_line_starts_in_place_while_typing(text: str):
    """Typing at the end of a line longer than the window: the prefix's start stays put (at a content-
    defined anchor: engine/anchor.py), so the model's cached context holds. Counted back from the cursor,
    it moved with every keystroke (20 starts for 20 keystrokes) and each one prefilled the whole window."""
    starts = set()
    for k in range(20):
        typed = text + "q" * k
        res = gather_context(ParsedDocument(typed, None), 0, len(typed))
        assert res.prefix.text and typed.endswith(res.prefix.text)
        starts.add(len(typed) - len(res.prefix.text))
    assert len(starts) <= 2, sorted(starts)


def test_a_header_in_minified_code_is_its_own_signature():
    src = "var a=1;" * 1000 + "function target(x, y){return x+y}"
    doc = ParsedDocument(src, "javascript")
    (d,) = [d for d in extract_tags("javascript", doc.src, doc.tree).definitions if d.name == "target"]
    assert "function target(x, y)" in d.text and len(d.text) <= 400


@pytest.mark.parametrize("text", ["", "\n", "\n\n", " "])
def test_document_tags_of_an_empty_document(text: str):
    """A module without children: py-tree-sitter's ``first_child_for_byte`` crashed the server on "\n"."""
    doc = ParsedDocument(text, "python")
    same_as_full(doc, DocumentTags())
    assert gather_context(doc, doc.line_count - 1, 0).prefix.text == text[: text.rfind("\n") + 1]


def same_as_full(doc: ParsedDocument, tags: DocumentTags) -> None:
    tags.refresh(doc)
    full = extract_tags(doc.language, doc.src, doc.tree, "p")
    for name in {d.name for d in full.definitions} | set(tags.by_name):
        assert tags.lookup(name, "p") == [d for d in full.definitions if d.name == name], name
    assert set(tags.imports) == set(full.imports)


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_document_tags_follow_edits_like_a_full_extraction(lang: str):
    rng = random.Random(lang)
    src = next(p for p in (FIXTURES / lang).glob("tags.*") if p.suffix != ".json")
    doc = ParsedDocument(src.read_text() * 3, lang)
    tags = DocumentTags()
    same_as_full(doc, tags)
    pieces = ["x", "\n", "(", ")", "{", "}", " ", "", '"', "def g():\n    pass\n", "import os\n", "function h() {}\n"]
    i = 0
    for step in range(60):
        n = len(doc.src)
        i = rng.randrange(n + 1) if step % 8 == 0 else min(n, max(0, i + rng.randrange(-20, 20)))
        j = min(n, i + rng.choice([0, 0, 1, 3, 30]))
        doc.apply_byte_edit(i, j, rng.choice(pieces))
        if rng.random() < 0.5:
            same_as_full(doc, tags)
    same_as_full(doc, tags)


@pytest.mark.parametrize(
    "lang, text",
    [
        ("javascript", "f(" * 5000 + ")" * 5000 + ";\nvar y = "),
        ("python", "x = " + "[" * 5000 + "]" * 5000 + "\ny = "),
        ("python", "".join("    " * i + "if x:\n" for i in range(300)) + "    " * 300 + "y = "),
        ("python", (FIXTURES / "python" / "tags.py").read_text() * 200 + "y = "),
    ],
    ids=["calls nested 5,000 deep", "brackets nested 5,000 deep", "blocks nested 300 deep", "4,400 lines"],
)
def test_a_keystroke_requeries_only_what_it_touched(lang: str, text: str):
    doc = ParsedDocument(text, lang, "/w/deep")
    tags = DocumentTags()
    tags.refresh(doc)
    first = tags.queried
    line, col = doc.line_count - 1, len(doc.line_text(doc.line_count - 1))
    for k, ch in enumerate("abc"):
        doc.apply_edit((line, col + k), (line, col + k), ch)
        res = gather_context(doc, line, col + k + 1)  # no RecursionError, an answer
        assert res.prefix.text.endswith("abc"[: k + 1])
        tags.refresh(doc)
    assert tags.rebuilds == 1 and tags.queried - first <= 3 * 3
    same_as_full(doc, tags)
