"""unmask.context: incremental documents, the workspace index, packing, the CLI, import boundaries."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unmask.context import (
    ContextConfig,
    IndexConfig,
    ParsedDocument,
    WorkspaceIndex,
    gather_context,
    language_for_id,
    language_for_path,
    select_span,
)
from unmask.context import cli as context_cli

PY = """import os


class Store:
    def __init__(self, root):
        self.root = root

    def get(self, key):
        return os.path.join(self.root, key)


def main():
    s = Store("/tmp")
    print(s.get("a"))
"""


# -- documents ----------------------------------------------------------------------------
def _lsp_pos(text: str, i: int) -> tuple[int, int]:
    line = text.count("\n", 0, i)
    head = text[text.rfind("\n", 0, i) + 1 : i]
    return line, len(head.encode("utf-16-le")) // 2


@pytest.mark.parametrize("lang", ["python", "javascript", "rust"])
def test_incremental_edits_match_a_full_parse(lang: str) -> None:
    rng = random.Random(lang)
    text = PY if lang == "python" else "function f(a) {\n  return a + 1; // é 😀\n}\n"
    doc = ParsedDocument(text, lang)
    pieces = ["x", "\n", "(", ")", "é", "😀", "def g():\n    pass\n", "{", "}", " ", ""]
    for _ in range(60):
        i = rng.randrange(len(text) + 1)
        j = min(len(text), i + rng.choice([0, 0, 1, 3]))
        new = rng.choice(pieces)
        doc.apply_edit(_lsp_pos(text, i), _lsp_pos(text, j), new)
        text = text[:i] + new + text[j:]
        assert doc.text == text
        if rng.random() < 0.3:  # several edits between parses, as between completions
            assert str(doc.tree.root_node) == str(doc.full_parse().root_node)
    assert str(doc.tree.root_node) == str(doc.full_parse().root_node)
    assert doc.line_count == text.count("\n") + 1
    assert all(doc.line_text(k) == ln for k, ln in enumerate(text.split("\n")))


def test_positions_utf16_and_edit_history() -> None:
    doc = ParsedDocument("a = '😀x'\nb = 1\n", "python", "m.py")
    off = doc.offset_at(0, 8)  # after the emoji (2 UTF-16 units) and x
    assert doc.src[:off].decode() == "a = '😀x"
    assert doc.position_at(off) == (0, 8)
    assert doc.position_at(off, "utf-32") == (0, 7)
    assert doc.offset_at(0, 7, "utf-32") == off and doc.offset_at(0, 10, "utf-8") == off
    assert doc.offset_at(5, 0) == len(doc.src)  # past the end clamps
    doc.apply_edit((1, 5), (1, 5), "2")
    doc.apply_edit((1, 6), (1, 6), "3")
    assert doc.text == "a = '😀x'\nb = 123\n" and doc.version == 2
    assert len(doc.edits) == 1 and doc.edits[0].line == 1  # keystrokes on one line coalesce
    doc.replace_text("a = 1\nb = 123\n")
    assert doc.edits[-1].line == 0 and not doc.tree.root_node.has_error


def test_plain_text_and_language_table() -> None:
    assert language_for_path("x/y.TSX") == "tsx" and language_for_path("a.hpp") == "cpp"
    assert language_for_path("notes.txt") is None
    assert language_for_id("typescriptreact") == "tsx" and language_for_id("plaintext", "a.go") == "go"
    doc = ParsedDocument("hello:\n", None)
    assert doc.tree is None
    assert select_span(doc, 0, 6).kind == "block"
    res = gather_context(doc, 0, 6)
    assert res.prefix.text == "hello:" and res.suffix.text == "\n"


def test_span_config_switches_suppression() -> None:
    from unmask.context import SpanConfig

    doc = ParsedDocument("# a comment\n", "python")
    assert select_span(doc, 0, 11).suppress_reason == "comment"
    assert select_span(doc, 0, 11, SpanConfig(in_comments=True)).suppress_reason is None
    assert select_span(doc, 0, 5, SpanConfig(in_comments=True)).suppress_reason == "mid-word"
    assert select_span(doc, 0, 5, SpanConfig(in_comments=True, mid_word=True)).suppress_reason is None


# -- the workspace index ------------------------------------------------------------------
@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    (tmp_path / ".gitignore").write_text("ignored/\n*.gen.py\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "store.py").write_text(
        "class Store:\n    def get(self, key):\n        return key\n\n\ndef open_store(path):\n    return Store()\n"
    )
    (tmp_path / "app.py").write_text(
        "from pkg.store import open_store\n\n\ndef run():\n    s = open_store('x')\n    s.\n"
    )
    (tmp_path / "ignored").mkdir()
    (tmp_path / "ignored" / "x.py").write_text("def hidden(): pass\n")
    (tmp_path / "a.gen.py").write_text("def generated(): pass\n")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "lib.js").write_text("function vendored() {}\n")
    (tmp_path / "blob.py").write_bytes(b"\x00\x01binary")
    (tmp_path / "huge.py").write_text("x = 1\n" * 2_000)
    (tmp_path / "main.go").write_text("package main\n\nfunc main() {}\n")
    (tmp_path / "README.md").write_text("# hi\n")
    return tmp_path


def test_index_respects_ignores_and_logs_skips(workspace: Path, caplog) -> None:
    caplog.set_level(logging.INFO, "unmask.context.index")
    seen = []
    ix = WorkspaceIndex(workspace, IndexConfig(workers=0, max_file_bytes=10_000))
    stats = ix.build(lambda done, total, msg: seen.append((done, total)))
    assert set(ix.files) == {"app.py", "main.go", "pkg/__init__.py", "pkg/store.py"}
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] == 6
    assert stats.skipped["gitignored"] == 2 and stats.skipped["vendored"] == 1
    assert stats.skipped["binary"] == 1 and stats.skipped["huge"] == 1
    assert (
        "blob.py: binary" in caplog.text and "huge.py: huge" in caplog.text and "node_modules/: vendored" in caplog.text
    )
    assert [d.path for d in ix.definitions("open_store")] == ["pkg/store.py"]
    assert ix.definitions("hidden") == [] and ix.names_with_prefix("open") == ["open_store"]
    assert ix.imported_files("app.py") == {"pkg/store.py"}
    assert ix.files_referencing("Store") == ["pkg/store.py"]
    ix.close()


def test_index_updates_on_save_and_watched_changes(workspace: Path) -> None:
    ix = WorkspaceIndex(workspace, IndexConfig(workers=0))
    ix.build()
    store = workspace / "pkg" / "store.py"
    store.write_text("def open_store(path, mode):\n    pass\n\n\ndef close_store(s):\n    pass\n")
    os.utime(store, ns=(time.time_ns(), time.time_ns() + 10**9))
    ix.update_file(str(store)).result(timeout=10)
    assert ix.definitions("Store") == [] and ix.definitions("close_store")[0].line == 4
    new = workspace / "pkg" / "extra.py"
    new.write_text("def extra():\n    pass\n")
    for f in ix.on_watched_files([(new.as_uri(), 1), (str(workspace / "main.go"), 3)]):
        f.result(timeout=10)
    assert ix.definitions("extra") and "main.go" not in ix.files and ix.definitions("main") == []
    ix.close()


def test_index_in_worker_processes(workspace: Path) -> None:
    with WorkspaceIndex(workspace, IndexConfig(workers=1, batch=1, max_file_bytes=10_000)) as ix:
        ix.start()
        assert ix.wait(60)
        assert ix.definitions("open_store") and ix.stats.files == 4


# -- packing --------------------------------------------------------------------------------
def test_pack_uses_imported_definitions_within_budget(workspace: Path) -> None:
    ix = WorkspaceIndex(workspace, IndexConfig(workers=0))
    ix.build()
    doc = ParsedDocument.from_path(workspace / "app.py")
    calls = []

    def count(s: str) -> int:
        calls.append(s)
        return len(s) // 4

    res = gather_context(doc, 5, 6, index=ix, count_tokens=count)
    assert calls and res.used <= res.budget == 384 - 1 - res.span.bucket
    assert res.prefix.text.endswith("    s.") and res.suffix.text == "\n"
    defs = [p for p in res.snippets if p.source == "definitions"]
    assert defs and defs[0].path == "pkg/store.py" and "def open_store(path):" in defs[0].text
    pieces, buckets = res.engine_pieces()
    assert pieces[0].endswith(res.prefix.text) and "open_store" in pieces[0] and buckets == [res.span.bucket]
    json.dumps(res.to_dict())
    for budget in (10, 40, 100, 367):  # a count that does not add up across lines still fits
        odd = gather_context(
            doc,
            5,
            6,
            index=ix,
            config=ContextConfig(budget=budget),
            count_tokens=lambda s: len(s) // 2 + s.count("\n") + 1,
        )
        pieces = [odd.prefix, odd.suffix, *odd.snippets]
        assert odd.used == sum(p.tokens for p in pieces) <= budget
    ablated = gather_context(doc, 5, 6, index=ix, config=ContextConfig().without("definitions", "similar"))
    assert not [p for p in ablated.snippets if p.source in ("definitions", "similar")]
    assert "definitions" not in ablated.timings
    ix.close()


def test_pack_scope_recent_and_open_documents() -> None:
    body = "\n".join(f"        x{i} = compute({i})" for i in range(200))
    doc = ParsedDocument(f"class Big:\n    def run(self, n):\n{body}\n        \n", "python", "big.py")
    near = "\n".join(f"    x{i} = compute({i})" for i in range(190, 200))
    other = ParsedDocument(f"def compute(v):\n{near}\n    return v * 2\n", "python", "other.py")
    doc.apply_edit((5, 0), (5, 0), "    # note\n")
    res = gather_context(doc, 203, 8, open_docs=[other], config=ContextConfig(budget=1000))
    by = {p.source for p in res.snippets}
    assert {"scope", "recent", "open"} <= by, res.to_dict()
    scope = next(p for p in res.snippets if p.source == "scope")
    assert "def run(self, n):" in scope.text
    assert res.used <= res.budget


# -- CLI and boundaries -------------------------------------------------------------------
def test_cli_json(workspace: Path, capsys) -> None:
    rc = context_cli.main(
        [str(workspace / "app.py"), "--line", "4", "--col", "24", "--json", "--root", str(workspace), "--workers", "0"]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["span"]["kind"] in ("args", "line", "infill")
    assert out["pieces"][0]["source"] == "prefix" and out["pieces"][-1]["source"] == "suffix"
    assert "total" in out["timings_ms"] and out["index"]["files"] == 5
    rc = context_cli.main([str(workspace / "app.py"), "--line", "4", "--col", "0", "--no-index"])
    assert rc == 0 and "span:" in capsys.readouterr().out


def test_context_never_imports_heavy_or_protocol_modules() -> None:
    code = (
        "import sys, unmask.context, unmask.context.cli\n"
        "bad = {'torch', 'onnxruntime', 'pygls', 'lsprotocol'} & {m.split('.')[0] for m in sys.modules}\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
