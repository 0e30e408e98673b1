"""The repository context in the language server, end to end: a real LSP client (pytest-lsp)
against ``unmask serve`` with the shipped model and a workspace folder on disk. Checks what the
engine was sent (``unmask/timings`` and the debug log), index progress, suppression in comments,
that the server's parsed copy of a document follows didChange exactly, and the stage timings."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

import pytest
import pytest_asyncio
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from unmask.context import ParsedDocument
from unmask.lsp import protocol as ext
from unmask.lsp.repo import tree_outline

ASYNC = pytest.mark.asyncio(loop_scope="module")

HELPERS = '''"""Helpers for records."""


def normalize_record_name(record, separator="-"):
    """Lower-case the record's name and join its words with ``separator``."""
    return separator.join(record["name"].lower().split())


class RecordStore:
    def __init__(self):
        self.items = []
'''

MAIN = """from helpers import normalize_record_name


def process(records):
    out = []
    for record in records:
        name = normalize_record_name(record)
        \n"""
CURSOR = (7, 8)  # the blank line inside the loop

COMMENTED = """def total(values):
    # add up the values and return the
    return sum(values)
"""


def workspace(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "helpers.py").write_text(HELPERS)
    (root / "pkg" / "main.py").write_text(MAIN)
    return root / "pkg"


def capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        window=types.WindowClientCapabilities(work_done_progress=True),
        workspace=types.WorkspaceClientCapabilities(
            configuration=True,
            did_change_watched_files=types.DidChangeWatchedFilesClientCapabilities(dynamic_registration=True),
        ),
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities()
        ),
    )


async def start(tmp: Path, root: Path | None) -> LanguageClient:
    """``unmask serve`` with a debug log in ``tmp``, initialized with ``root`` as its workspace folder."""
    client = pytest_lsp.make_test_lsp_client()
    client.registrations = []

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register(params: types.RegistrationParams):
        client.registrations.extend(params.registrations)

    client.log_file = tmp / "server.log"
    cmd = [sys.executable, "-m", "unmask.lsp.cli", "serve", "--log-file", str(client.log_file), "--log-level", "debug"]
    await client.start_io(*cmd)
    folders = [types.WorkspaceFolder(uri=root.as_uri(), name=root.name)] if root else None
    await client.initialize_session(
        types.InitializeParams(
            capabilities=capabilities(),
            root_uri=root.as_uri() if root else None,
            workspace_folders=folders,
            initialization_options={"minConfidence": 0},
        )
    )
    return client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ws(tmp_path_factory):
    """One server for the module, on a workspace of two files, after its index is built."""
    tmp = tmp_path_factory.mktemp("ctx")
    root = workspace(tmp / "ws")
    client = await start(tmp, root)
    client.root = root
    for _ in range(400):
        if any(isinstance(v, types.WorkDoneProgressEnd) for vs in client.progress_reports.values() for v in vs):
            break
        await asyncio.sleep(0.05)
    yield client
    await client.shutdown_session()
    await client.stop()


# -- helpers ------------------------------------------------------------------------------------
def open_doc(client: LanguageClient, path: Path | str, text: str, language: str = "python") -> str:
    """didOpen (again): the server starts the document afresh, without a suggestion to type through."""
    uri = path.as_uri() if isinstance(path, Path) else path
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text))
    )
    return uri


async def complete(client: LanguageClient, uri: str, line: int, char: int, invoked: bool = True, msg_id=None):
    kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
    params = types.InlineCompletionParams(
        context=types.InlineCompletionContext(trigger_kind=kind),
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line, char),
    )
    res = await asyncio.wrap_future(
        client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
    )
    return list(res.items) if res else []


async def request(client: LanguageClient, method: str, params: dict):
    return ext.plain(await client.protocol.send_request_async(method, params))


async def timing(client: LanguageClient, msg_id: str) -> dict:
    got = await request(client, ext.TIMINGS, {})
    return next(t for t in got["requests"] if t["requestId"] == msg_id)


async def configure(client: LanguageClient, **settings) -> None:
    base = {"minConfidence": 0, "context": {"enabled": True, "sources": ["*"]}}
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={**base, **settings}))
    await request(client, ext.STATS, {})  # a round trip: the notification has been handled


# -- tests --------------------------------------------------------------------------------------
@ASYNC
async def test_index_progress_reported(ws: LanguageClient):
    reports = [vs for vs in ws.progress_reports.values() if vs]
    assert len(reports) == 1, ws.progress_reports
    (values,) = reports
    assert isinstance(values[0], types.WorkDoneProgressBegin) and values[0].title == "unmask: indexing"
    assert isinstance(values[-1], types.WorkDoneProgressEnd) and "indexed 2 files" in values[-1].message
    assert all(isinstance(v, types.WorkDoneProgressReport) for v in values[1:-1])
    stats = await request(ws, ext.STATS, {})
    assert stats["indexedFiles"] == 2 and stats["indexing"] is False


@ASYNC
async def test_watched_files_registered_and_followed(ws: LanguageClient):
    (reg,) = [r for r in ws.registrations if r.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES]
    watchers = ext.plain(reg.register_options)["watchers"]
    patterns = [w["globPattern"] if isinstance(w, dict) else w.glob_pattern for w in watchers]
    assert any(".py" in p or "py," in p for p in patterns) and "**/.gitignore" in patterns
    extra = ws.root / "extra.py"
    extra.write_text("def brand_new_helper():\n    return 1\n")
    ws.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams([types.FileEvent(uri=extra.as_uri(), type=types.FileChangeType.Created)])
    )
    for _ in range(200):
        if (await request(ws, ext.STATS, {}))["indexedFiles"] == 3:
            break
        await asyncio.sleep(0.05)
    assert (await request(ws, ext.STATS, {}))["indexedFiles"] == 3
    extra.unlink()
    ws.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams([types.FileEvent(uri=extra.as_uri(), type=types.FileChangeType.Deleted)])
    )
    for _ in range(200):
        if (await request(ws, ext.STATS, {}))["indexedFiles"] == 2:
            break
        await asyncio.sleep(0.05)
    assert (await request(ws, ext.STATS, {}))["indexedFiles"] == 2


@ASYNC
async def test_definition_from_another_file_reaches_the_engine(ws: LanguageClient):
    await configure(ws)
    uri = open_doc(ws, ws.root / "main.py", MAIN)
    await complete(ws, uri, *CURSOR, msg_id="ctx-1")
    t = await timing(ws, "ctx-1")
    assert t["outcome"] in ("items", "empty")
    defs = [p for p in t["context"]["pieces"] if p["source"] == "definitions"]
    assert any(p["path"] == "helpers.py" and p["line"] == 3 and p["tokens"] > 0 for p in defs), t["context"]
    assert t["context"]["used"] <= t["context"]["budget"]
    # what the engine itself received (the model thread logs its pieces at debug level)
    sent = [ln for ln in ws.log_file.read_text().splitlines() if "engine pieces" in ln and "request ctx-1" in ln]
    assert len(sent) == 1 and "def normalize_record_name(record, separator=" in sent[0]
    assert "# helpers.py:4" in sent[0]  # the snippet's label: path and 1-based line


@ASYNC
async def test_context_settings(ws: LanguageClient):
    uri = open_doc(ws, ws.root / "main.py", MAIN)
    await configure(ws, context={"enabled": True, "sources": ["scope"]})
    await complete(ws, uri, *CURSOR, msg_id="ctx-scope")
    sources = {p["source"] for p in (await timing(ws, "ctx-scope"))["context"]["pieces"]}
    assert "definitions" not in sources and {"prefix", "suffix"} <= sources
    await configure(ws, context={"enabled": False})
    uri = open_doc(ws, ws.root / "main.py", MAIN)  # reopened: a fresh state, so no type-through
    await complete(ws, uri, *CURSOR, msg_id="ctx-off")
    t = await timing(ws, "ctx-off")
    assert t.get("context") is None and "context" not in t["stages"]
    sent = [ln for ln in ws.log_file.read_text().splitlines() if "engine pieces" in ln and "request ctx-off" in ln]
    assert len(sent) == 1 and "normalize_record_name(record, separator=" not in sent[0]  # the bare document
    await configure(ws)


@ASYNC
async def test_saved_file_reindexed(ws: LanguageClient):
    await configure(ws)
    helpers = ws.root / "helpers.py"
    saved = HELPERS + "\n\ndef summarize_records(records):\n    return len(records)\n"
    line = saved.split("\n").index("def summarize_records(records):")
    helpers.write_text(saved)
    ws.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri=helpers.as_uri())))
    text = MAIN.replace("        \n", "        total = summarize_records(records)\n        \n")
    for i in range(40):  # the index updates in the background
        uri = open_doc(ws, ws.root / "main.py", text)
        await complete(ws, uri, 8, 8, msg_id=f"save-{i}")
        pieces = (await timing(ws, f"save-{i}"))["context"]["pieces"]
        if any(p["source"] == "definitions" and p["path"] == "helpers.py" and p["line"] == line for p in pieces):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail(f"the saved definition never reached the context: {pieces}")
    helpers.write_text(HELPERS)
    ws.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri=helpers.as_uri())))


@ASYNC
async def test_comment_automatic_trigger_gets_no_model_call(ws: LanguageClient):
    await configure(ws)
    uri = open_doc(ws, ws.root / "commented.py", COMMENTED)
    line, char = 1, len(COMMENTED.split("\n")[1])  # the end of the comment line
    before = await request(ws, ext.STATS, {})
    assert await complete(ws, uri, line, char, invoked=False, msg_id="in-comment") == []
    after = await request(ws, ext.STATS, {})
    assert after["modelCalls"] == before["modelCalls"]
    assert after["suppressed"] - before["suppressed"] == 1
    assert (await timing(ws, "in-comment"))["outcome"] == "comment"
    await complete(ws, uri, line, char, invoked=True)  # asked for explicitly: the model runs
    assert (await request(ws, ext.STATS, {}))["modelCalls"] == after["modelCalls"] + 1


@ASYNC
async def test_stage_timings(ws: LanguageClient):
    await configure(ws)
    uri = open_doc(ws, ws.root / "main.py", MAIN)
    await complete(ws, uri, *CURSOR, msg_id="timed")
    t = await timing(ws, "timed")
    s = t["stages"]
    for stage in ("wait", "parse", "span", "context", "queue", "tokenize", "encode", "denoise", "engine", "model"):
        assert stage in s, (stage, s)
    for stage in ("engineOverhead", "shape", "serialize", "server"):
        assert stage in s, (stage, s)
    assert len(t["steps"]) == len(t["stepForward"]) >= 1
    assert s["model"] <= s["engine"] <= s["server"]
    assert abs(s["engineOverhead"] - (s["engine"] - s["model"])) < 0.01
    assert s["model"] == pytest.approx(s["encode"] + sum(t["stepForward"]), abs=0.05)
    assert all(f <= w + 0.01 for f, w in zip(t["stepForward"], t["steps"], strict=True))
    got = await request(ws, ext.TIMINGS, {"limit": 1})
    assert len(got["requests"]) == 1


REAL = Path(__file__).parent / "fixtures" / "real" / "sources.py.txt"  # a real 356-line module


@ASYNC
@pytest.mark.parametrize("sources", [[], None], ids=["packed prefix and suffix", "bare document"])
async def test_typing_a_new_line_keeps_the_models_cached_context(ws: LanguageClient, sources):
    """A new line typed at line 300 of a real 356-line module, an automatic completion on arriving there
    and after each keystroke: no keystroke's completion prefills more than a few tokens (each adds one
    or two; the rest comes from the model's cache). Before, the
    context was sized by the span's bucket (a new line's first keystrokes take it from 64 slots to 32 and
    16) and cut at the first line that fit: it moved 2-4 times per typed line, and each move prefilled
    the whole window again (~400 tokens, ~300 ms on 2 cores). Both ways the server cuts are checked: the
    context packer (prefix and suffix, no snippets: they may change as names are typed) and, with
    context off, the engine's own cut of the bare document."""
    await configure(ws, context={"enabled": True, "sources": sources} if sources is not None else {"enabled": False})
    lines = REAL.read_text().split("\n")
    text = "\n".join(lines[:300]) + "\n\n" + "\n".join(lines[300:])
    uri = open_doc(ws, ws.root / f"typing_{sources is None}.py", text)
    ed = Editor(ws, uri, text)
    at = len("\n".join(lines[:300])) + 1  # the new, empty line 300
    typed = "    merged = sorted(set(names) | set(extra))"
    await complete(ws, uri, 300, 0, invoked=False, msg_id=f"newline-{sources is None}")  # arriving on the line
    prefilled = []
    for k, ch in enumerate(typed):
        ed.replace(at + k, at + k, ch)
        await complete(ws, uri, 300, k + 1, invoked=False, msg_id=f"newline-{sources is None}-{k}")
        cache = (await timing(ws, f"newline-{sources is None}-{k}")).get("cache")
        if cache is not None:  # None: answered without the model (typed through the suggestion)
            prefilled.append(cache["prefilled"])
    await configure(ws)
    assert len(prefilled) >= 5 and max(prefilled) <= 16, prefilled  # others typed through (model-dependent)


EDITS_TEXT = '''import os


def find(root):
    """Files below root: 😋 é."""
    out = []
    for d, _, names in os.walk(root):
        out += [os.path.join(d, n) for n in names]
    return out
'''

TYPED = """

def count(paths, suffix="😋.py"):
    total = 0
    for p in paths:
        if p.endswith(suffix):
            total += 1
    return total
"""


def utf16_position(text: str, off: int) -> types.Position:
    line = text.count("\n", 0, off)
    col = text[text.rfind("\n", 0, off) + 1 : off]
    return types.Position(line, len(col.encode("utf-16-le")) // 2)


def _random_edit(rng: random.Random, text: str) -> tuple[int, int, str]:
    """A random change of ``text``: replace [a, b) by a snippet (may break the syntax)."""
    a = rng.randrange(len(text) + 1)
    b = min(len(text), a + rng.choice([0, 0, 1, 3, 12, 40]))
    new = rng.choice(["x", "(", ")", ":", "\n    ", "def g():\n    pass\n", '"', "😋", "", "    return 1\n", "é"])
    return a, b, new


class Editor:
    """The client's side of one document: its text, its version and didChange with UTF-16 ranges."""

    def __init__(self, client: LanguageClient, uri: str, text: str):
        self.client, self.uri, self.text, self.version = client, uri, text, 1
        self.exact = 0  # checks where the trees were compared exactly

    def replace(self, a: int, b: int, new: str) -> None:
        rng = types.Range(utf16_position(self.text, a), utf16_position(self.text, b))
        self.text = self.text[:a] + new + self.text[b:]
        self.send(types.TextDocumentContentChangePartial(range=rng, text=new))

    def send(self, change) -> None:
        self.version += 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(version=self.version, uri=self.uri), [change]
            )
        )

    async def check(self) -> None:
        """The server's copy has this text and version, and (where the code parses cleanly) the very
        tree a fresh parse gives. In broken code tree-sitter's error recovery may legitimately build
        different ERROR nodes incrementally than from scratch, so there only the text is compared."""
        got = await request(self.client, ext.DOCUMENT, {"textDocument": {"uri": self.uri}})
        assert got["version"] == self.version and got["language"] == "python"
        assert got["text"] == self.text
        fresh = ParsedDocument(self.text, "python").tree
        if not fresh.root_node.has_error:
            assert got["tree"] == tree_outline(fresh)
            self.exact += 1


@ASYNC
async def test_did_change_keeps_the_parsed_document_identical_to_a_fresh_parse(ws: LanguageClient):
    ed = Editor(ws, open_doc(ws, ws.root / "edited.py", EDITS_TEXT), EDITS_TEXT)
    rng = random.Random(7)
    # typing a function at the end, a keystroke per change, with typos taken back, checked at each line end
    for ch in TYPED:
        if rng.random() < 0.1:
            ed.replace(len(ed.text), len(ed.text), "q")
            ed.replace(len(ed.text) - 1, len(ed.text), "")
        ed.replace(len(ed.text), len(ed.text), ch)
        if ch == "\n":
            await ed.check()
    # editing in the middle: a line deleted, one pasted back, a rename across a multi-line range
    body = ed.text.index("    out = []")
    ed.replace(body, body + len("    out = []\n"), "")
    await ed.check()
    ed.replace(body, body, "    out = []\n")
    await ed.check()
    start, end = ed.text.index("(root)") + 1, ed.text.index("root)", ed.text.index("walk")) + 4
    ed.replace(start, end, 'top):\n    """😋"""\n    for d, _, names in os.walk(top')
    await ed.check()
    # random edits that break and mend the code, several between two checks
    for n in [1, 1, 5, 25, 3, 25, 2, 40]:
        for _ in range(n):
            ed.replace(*_random_edit(rng, ed.text))
        await ed.check()
    # a whole-document change, then edits on top of it
    ed.text = EDITS_TEXT.replace("os", "sys")
    ed.send(types.TextDocumentContentChangeWholeDocument(text=ed.text))
    await ed.check()
    ed.replace(len(ed.text), len(ed.text), "print(find('.'))\n")
    await ed.check()
    assert ed.exact >= 8, ed.exact


@pytest.mark.asyncio
async def test_server_without_a_root_folder(tmp_path):
    client = await start(tmp_path, None)
    try:
        uri = open_doc(client, "untitled:Untitled-1", MAIN)
        await complete(client, uri, *CURSOR, msg_id="no-root")
        t = await timing(client, "no-root")
        assert t["outcome"] in ("items", "empty") and t["context"]["pieces"][0]["source"] == "prefix"
        stats = await request(client, ext.STATS, {})
        assert stats["indexedFiles"] == 0 and stats["indexing"] is False
        assert client.progress_reports == {}
        plain = open_doc(client, "untitled:notes", "some notes\nmore ", language="plaintext")
        await complete(client, plain, 1, 5, msg_id="plain")
        assert (await timing(client, "plain"))["outcome"] in ("items", "empty")
        got = await request(client, ext.DOCUMENT, {"textDocument": {"uri": plain}})
        assert got["language"] is None and got["tree"] is None
    finally:
        await client.shutdown_session()
        await client.stop()


@pytest.mark.asyncio
async def test_a_completion_asked_while_the_model_loads_is_packed_for_its_window(tmp_path):
    """The first request, sent right after initialize while the model is still loading: its context is
    packed for the model's window with the model's tokenizer once the load is done. Before, it was packed
    at once for a default window (384 tokens, the model has 512) with an approximate token count, and its
    prefix came out empty."""
    from unmask.lsp.repo import context_budget

    client = await start(tmp_path, None)
    try:
        uri = open_doc(client, "untitled:Untitled-1", MAIN)
        await complete(client, uri, *CURSOR, msg_id="while-loading")
        t = await timing(client, "while-loading")
        ctx = t["context"]
        model_json = Path(__file__).parent.parent / "engine" / "models" / "default" / "model.json"
        window = json.loads(model_json.read_text())["window"]
        assert ctx["budget"] == context_budget(window, ctx["bucket"]), ctx
        assert ctx["pieces"][0]["source"] == "prefix" and ctx["pieces"][0]["tokens"] > 10, ctx
    finally:
        await client.shutdown_session()
        await client.stop()
