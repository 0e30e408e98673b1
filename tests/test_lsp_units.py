"""The server's pure parts, no model and no subprocess: shaping, type-through, settings, conversion."""

from __future__ import annotations

import asyncio
import time

import pytest
from lsprotocol import types
from pygls.workspace import TextDocument

from unmask.engine.infill import BLOCK_BUCKET, LINE_BUCKET
from unmask.lsp import config, convert, worker
from unmask.lsp import protocol as ext
from unmask.lsp.shape import Suggestion, automatic_allowed, choose_span, shape


# -- shape ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw,suffix,multiline,want",
    [
        ("x + 1\n    return y", "\n", False, "x + 1"),  # single line: cut at the first newline
        ("a, b)", ")\n", False, "a, b"),  # the tail equals the rest of the line
        ("foo(x)", ")", False, "foo(x"),
        ("size", "e = 1\n", False, "size"),  # a word-character overlap is not trimmed
        ("   \n", "\n", False, None),  # whitespace only: nothing
        ("", "\n", True, None),
        ("\n    x = 1\n    return x", "\n    return x\n", True, "\n    x = 1"),  # stops before the suffix
        ("value  ", "\n", False, "value"),  # no trailing whitespace at the end of a line
    ],
)
def test_shape(raw, suffix, multiline, want):
    assert shape(raw, suffix, multiline) == want


def test_choose_span_line_or_block():
    assert choose_span("def f(x):", "\n").bucket == BLOCK_BUCKET
    assert choose_span("    return f(", ")\n").bucket == LINE_BUCKET
    assert choose_span("x = ", "\n").multiline is False


def test_automatic_not_inside_a_word():
    assert automatic_allowed("x = fo", "\n")
    assert automatic_allowed("f(", ")\n")
    assert not automatic_allowed("x = fo", "o(1)\n")


def test_type_through():
    s = Suggestion("c1", "x = ", "\nend", "compute(1)", False)
    assert s.continue_at("x = com", "\nend") == "pute(1)"
    assert s.continue_at("x = cx", "\nend") is None  # typed something else
    assert s.continue_at("x = com", "\nother") is None  # the suffix changed
    assert s.continue_at("x = compute(1)", "\nend") is None  # all typed: nothing left
    assert s.continue_at("y = ", "\nend") is None


# -- settings -------------------------------------------------------------------------------------
def test_settings_merge_and_fallback():
    s, problems, unknown = config.merge(config.Settings(), {"latencyBudgetMs": 120, "foo": 1})
    assert s.latency_budget_ms == 120 and problems == [] and unknown == ["foo"]
    s2, problems, _ = config.merge(s, {"unmask": {"minConfidence": 2, "enabledLanguages": ["python"]}})
    assert s2.min_confidence == config.DEFAULTS.min_confidence and len(problems) == 1
    assert s2.latency_budget_ms == 120  # keys not given keep their value
    assert s2.language_enabled("python") and not s2.language_enabled("rust")
    s3, problems, _ = config.merge(s2, {"latencyBudgetMs": True, "streamDrafts": 1, "modelPath": 3})
    assert s3.latency_budget_ms == 250 and not s3.stream_drafts and s3.model_path is None
    assert len(problems) == 3 and all("unmask: invalid" in p for p in problems)
    assert config.merge(s3, None)[0] == s3
    assert config.merge(s3, [1])[1]


# -- conversion -----------------------------------------------------------------------------------
def doc(text: str) -> TextDocument:
    return TextDocument("file:///t.py", text, version=3, language_id="python")


def params(line: int, char: int, invoked=False) -> types.InlineCompletionParams:
    kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
    return types.InlineCompletionParams(
        context=types.InlineCompletionContext(trigger_kind=kind),
        text_document=types.TextDocumentIdentifier(uri="file:///t.py"),
        position=types.Position(line, char),
    )


def test_request_uses_utf16_positions():
    d = doc('a = "😋"\nb = "😋" + ')
    req = convert.request(d, params(1, 11), 7)  # the emoji is 2 UTF-16 units
    assert req.prefix.endswith('b = "😋" + ') and req.suffix == ""
    assert req.version == 3 and req.language_id == "python" and req.request_id == 7 and not req.invoked


def test_inline_list_range_and_text():
    d = doc('a = 1\nb = "😋" + \n')
    p = params(1, 11)
    req = convert.request(d, p, 1)
    out = convert.inline_list(d, p.position, req, "a", "c9")
    (item,) = out.items
    assert item.insert_text == 'b = "😋" + a'
    assert item.range == types.Range(types.Position(1, 0), types.Position(1, 11))
    assert ext.item_id(item) == "c9"
    assert convert.inline_list(d, p.position, req, None, None).items == []


def test_edit_record_keeps_removed_text():
    d = doc("hello world\n")
    change = types.TextDocumentContentChangePartial(
        range=types.Range(types.Position(0, 6), types.Position(0, 11)), text="there"
    )
    e = convert.edit(d, change, 4)
    assert (e.removed, e.inserted, e.offset, e.start, e.end, e.version) == ("world", "there", 6, (0, 6), (0, 11), 4)


# -- wire format ----------------------------------------------------------------------------------
def test_feedback_and_stats_wire_format():
    item = {"insertText": "x", "command": {"title": "t", "command": ext.ACCEPT_COMMAND, "arguments": ["c3"]}}
    fb = ext.feedback_from_wire({"item": item, "acceptedLength": 1})
    assert ext.item_id(fb.item) == "c3" and fb.accepted_length == 1
    wire = ext.to_wire(ext.Stats())
    assert wire["modelCalls"] == 0 and wire["partiallyAccepted"] == 0 and wire["typeThrough"] == 0


def test_edit_record_across_lines_in_utf16():
    d = doc('a = "😋x"\nbb\ncc\n')
    change = types.TextDocumentContentChangePartial(
        range=types.Range(types.Position(0, 7), types.Position(2, 1)), text="Y"
    )  # from just before "x" (the emoji counts 2 UTF-16 units) to just after the first "c"
    e = convert.edit(d, change, 5)
    assert e.removed == 'x"\nbb\nc' and e.offset == 6


# -- repository context ---------------------------------------------------------------------------
def test_context_settings_flat_nested_and_invalid():
    from unmask.context import SOURCES

    assert set(config.CONTEXT_SOURCES) == set(SOURCES)  # the setting names what the context layer has
    s, problems, unknown = config.merge(
        config.Settings(), {"context": {"enabled": False, "sources": ["open", "scope"]}}
    )
    assert not s.context_enabled and s.context_sources == ("scope", "open") and not problems and not unknown
    s, _, _ = config.merge(s, {"context.sources": ["*"]})
    assert s.context_sources == config.CONTEXT_SOURCES and not s.context_enabled  # keys not given keep their value
    s, problems, unknown = config.merge(s, {"context": {"sources": ["prefix"], "bogus": 1}})
    assert (
        s.context_sources == config.CONTEXT_SOURCES
        and "context.sources" in problems[0]
        and unknown == ["context.bogus"]
    )


def test_choose_span_from_the_syntax_tree():
    from unmask.context import ParsedDocument

    text = "def f(x):\n    # add one to\n    return g(x, )\n"
    doc = ParsedDocument(text, "python")
    lines = text.split("\n")

    def at(line: int, char: int):
        off = sum(len(ln) + 1 for ln in lines[:line]) + char
        return choose_span(text[:off], text[off:], doc, (line, char))

    assert at(0, 9).multiline and at(0, 9).kind == "block" and at(0, 9).choice is not None
    assert at(1, len(lines[1])).suppress_reason == "comment"  # the end of a line comment
    assert at(2, len(lines[2]) - 1).kind == "args" and not at(2, len(lines[2]) - 1).multiline
    plain = ParsedDocument(text, None)  # no grammar: the text decides
    span = choose_span(text[:9], text[9:], plain, (0, 9))
    assert span.bucket == BLOCK_BUCKET and span.choice is None and span.suppress_reason is None


def test_tree_outline_and_uri_path():
    from unmask.context import ParsedDocument
    from unmask.lsp.repo import tree_outline, uri_path

    doc = ParsedDocument("x = (1)\n", "python")
    out = tree_outline(doc.tree)
    assert out.startswith("(module [0-8] (expression_statement [0-7] (assignment [0-7]") and "(( [4-5])" in out
    doc.apply_edit((0, 5), (0, 6), "22")
    assert tree_outline(doc.tree) == tree_outline(ParsedDocument("x = (22)\n", "python").tree)
    assert tree_outline(None) is None
    assert uri_path("file:///tmp/a%20b/c.py") == "/tmp/a b/c.py" and uri_path("untitled:Untitled-1") == ""


def test_timings_ring():
    from unmask.lsp.timings import Timings

    t = Timings(keep=2)
    for i in range(3):
        tr = t.begin(i, "file:///x", 1)
        tr.add("parse", 1.0)
        tr.add("parse", 0.5)
        t.finish(i, 0.25, error=i == 1)
    t.finish(99, 1.0, error=False)  # no trace: ignored
    got = t.recent()
    assert [x.request_id for x in got] == [1, 2] and [x.outcome for x in got] == ["error", "empty"]
    assert got[0].stages["parse"] == 1.5 and got[0].stages["serialize"] == 0.25 and got[0].stages["server"] >= 0
    assert [x.request_id for x in t.recent(1)] == [2]


# -- memory ---------------------------------------------------------------------------------------
def test_model_thread_returns_free_memory_when_idle_and_while_busy(monkeypatch):
    """IDLE_RELEASE_S after the last work the heap's free pages go back, ARENA_RELEASE_S after it the
    backend's runtime arena too (none without work since); between jobs, while the model thread stays
    busy for BUSY_RELEASE_S, the heap's free pages only (RELIABILITY.md, Typing storm)."""
    trims: list[int] = []
    shrinks: list[int] = []

    class Engine:
        backend = worker.TimedBackend(
            type("Backend", (), {"name": "fake", "release_memory": lambda self: shrinks.append(1)})()
        )

    monkeypatch.setattr(worker, "_malloc_trim", lambda pad: trims.append(pad) or 1)
    monkeypatch.setattr(worker, "IDLE_RELEASE_S", 0.05)
    monkeypatch.setattr(worker, "ARENA_RELEASE_S", 1.5)  # wide margins: a loaded CI machine stalls
    monkeypatch.setattr(worker, "BUSY_RELEASE_S", 60.0)

    async def run() -> None:
        w = worker.ModelWorker()
        w.engine = Engine()  # calls only: no model needed
        w.release_when_idle(asyncio.get_running_loop())
        for _ in range(3):  # back to back: one trim, after the last
            await asyncio.wrap_future(w.call(worker.Call(lambda eng: None)))
        await asyncio.sleep(0.6)
        assert (trims, w.releases, len(shrinks)) == ([0], 1, 0)  # a pause between words: the heap only
        await asyncio.sleep(1.5)
        assert (w.releases, len(shrinks)) == (2, 1)  # stopped typing: the runtime's arena too
        await asyncio.sleep(0.6)
        assert w.releases == 2  # idle without work: nothing more
        await asyncio.wrap_future(w.call(worker.Call(lambda eng: None)))
        await asyncio.sleep(1.0)
        await asyncio.wrap_future(w.call(worker.Call(lambda eng: None)))  # work again before the arena timer
        await asyncio.sleep(1.0)
        assert len(shrinks) == 1  # 2 s after the first call, 1 s after the second: the timer restarted
        monkeypatch.setattr(worker, "BUSY_RELEASE_S", 0.0)
        before = w.releases
        futs = [w.call(worker.Call(lambda eng: time.sleep(0.01))) for _ in range(3)]
        await asyncio.wrap_future(futs[-1])
        await asyncio.sleep(0.5)
        assert w.releases >= before + 3  # one after each of the three (queued behind the work)
        assert len(shrinks) == 1  # the runtime's arena only after ARENA_RELEASE_S idle
        w.close()

    asyncio.run(run())
