"""Per-language fixtures (tests/fixtures/<lang>/): span selection and tag extraction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unmask.context import LANGUAGES, ParsedDocument, extract_tags, select_span

FIXTURES = Path(__file__).parent / "fixtures"
CURSOR = "‸"


def span_cases(lang: str) -> list[tuple[str, str, dict]]:
    """(name, text with cursor, expectations) from fixtures/<lang>/spans.txt."""
    cases = []
    text = (FIXTURES / lang / "spans.txt").read_text(encoding="utf-8")
    for block in text.split("=== ")[1:]:
        name, rest = block.split("\n", 1)
        body, expect = rest.rsplit("--- ", 1)
        want = dict(kv.split("=", 1) for kv in expect.split())
        cases.append((name.strip(), body.rstrip("\n") + "\n", want))
    return cases


def at_cursor(text: str) -> tuple[str, int, int]:
    i = text.index(CURSOR)
    clean = text.replace(CURSOR, "", 1)
    line = text.count("\n", 0, i)
    col = len(text[text.rfind("\n", 0, i) + 1 : i].encode("utf-16-le")) // 2
    return clean, line, col


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_spans(lang: str) -> None:
    cases = span_cases(lang)
    assert len(cases) >= 6
    kinds = set()
    for name, text, want in cases:
        clean, line, col = at_cursor(text)
        got = select_span(ParsedDocument(clean, lang), line, col)
        where = f"{lang}: {name}: {got}"
        if "suppress" in want:
            assert got.suppress_reason == want["suppress"], where
            continue
        assert got.suppress_reason is None, where
        assert got.kind == want["kind"], where
        kinds.add(got.kind)
        if "bucket" in want:
            assert got.bucket == int(want["bucket"]), where
        assert got.bucket in (8, 16, 32, 64), where
        if "multiline" in want:
            assert got.multiline == (want["multiline"] == "true"), where
    assert {"block", "statement", "args", "literal"} <= kinds or lang == "tsx"


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_tags(lang: str) -> None:
    src = next(p for p in (FIXTURES / lang).glob("tags.*") if p.suffix != ".json")
    want = json.loads((FIXTURES / lang / "tags.json").read_text())
    doc = ParsedDocument.from_path(src, lang)
    assert not doc.tree.root_node.has_error
    tags = extract_tags(lang, doc.src, doc.tree, src.name)
    assert [[d.name, d.kind, d.line] for d in tags.definitions] == want["definitions"]
    assert set(want["references"]) <= tags.references
    assert set(want["imports"]) <= set(tags.imports)
    for d in tags.definitions:  # headers are signatures, not bodies
        assert d.text and len(d.text) <= 1000 and d.path == src.name
