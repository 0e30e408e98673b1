"""Next-edit suggestions through the language server: a real LSP client (pytest-lsp) against
``unmask serve`` with the shipped model, asking ``textDocument/copilotInlineEdit`` after edits
typed as keystrokes (``didChange``, one change per key).

Most tests run with ``nextEdit.minConfidence`` 0 so that the server proposes whatever the model
says: they check the protocol (shape, versions, supersede, cancellation, silence without an
edit history) whatever the model's quality. :func:`test_rename_propagates_to_every_use` checks
the model's answer itself, with the default gate.
"""

from __future__ import annotations

import asyncio
import itertools
import sys

import pytest
import pytest_lsp
import samples
from conftest import proposing_model_dir, skip_unless_ci
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcRequestCancelled
from pygls.workspace import TextDocument
from pytest_lsp import ClientServerConfig, LanguageClient

from unmask.lsp import config, convert
from unmask.lsp import protocol as ext
from unmask.lsp.nes import DEFAULT_MIN_CONFIDENCE, DEFAULT_RENAME_RULE, DEFAULT_REPLAY_RULE, apply_edits
from unmask.lsp.next_edit import EditOutcome, EditRequest

# the model's own proposals are off in the shipped model.json: these tests exercise the model path too
SERVER = [sys.executable, "-m", "unmask.lsp.cli", "serve", "--log-file", "", "--model", proposing_model_dir()]
ASYNC = pytest.mark.asyncio(loop_scope="module")
CONTENT_MODIFIED = -32801

# the rename scenario (tests/samples.py): "total" renamed at its first use by typing "_count" after it
RENAME_BEFORE, RENAME_EXPECTED = samples.RENAME_BEFORE, samples.RENAME_EXPECTED
RENAME_LINE, RENAME_COL, RENAME_TYPED = samples.RENAME_LINE, samples.RENAME_COL, samples.RENAME_TYPED

_uris = itertools.count()


def new_uri() -> str:
    return f"file:///tmp/unmask-nes-test/doc{next(_uris)}.py"


class Buffer:
    """The client's copy of one open document: every change goes to the server as one didChange."""

    def __init__(self, client: LanguageClient, text: str):
        self.client, self.uri, self.text, self.version = client, new_uri(), text, 1
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=self.uri, language_id="python", version=1, text=text)
            )
        )

    def replace(self, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
        """Replace the range (UTF-16 positions, all ASCII here) with ``text``."""
        rng = {"start": {"line": start[0], "character": start[1]}, "end": {"line": end[0], "character": end[1]}}
        self.text = apply_edits(self.text, [{"range": rng, "text": text}])
        self.version += 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(version=self.version, uri=self.uri),
                [
                    types.TextDocumentContentChangePartial(
                        range=types.Range(types.Position(*start), types.Position(*end)), text=text
                    )
                ],
            )
        )

    def type(self, line: int, col: int, keys: str) -> tuple[int, int]:
        """Type ``keys`` one by one at (line, col); returns the cursor after them."""
        for ch in keys:
            self.replace((line, col), (line, col), ch)
            col += 1
        return line, col

    def params(self, cursor: tuple[int, int], version: int | None | str = "current") -> dict:
        doc: dict = {"uri": self.uri}
        if version == "current":
            doc["version"] = self.version
        elif version is not None:
            doc["version"] = version
        return {"textDocument": doc, "position": {"line": cursor[0], "character": cursor[1]}}


def ask(client: LanguageClient, params: dict, msg_id=None) -> asyncio.Future:
    """Send a next-edit request right away; the future holds the plain JSON answer."""
    return asyncio.wrap_future(client.protocol.send_request(ext.INLINE_EDIT, params, msg_id=msg_id))


def plain(result) -> dict:
    return ext.plain(result)


async def stats(client: LanguageClient) -> dict:
    return (await client.protocol.send_request_async(ext.STATS, {}))._asdict()


async def configure(client: LanguageClient, **settings) -> None:
    base = {
        "nextEdit.enabled": True,
        "nextEdit.budgetMs": 1000,
        "nextEdit.minConfidence": 0,
        "nextEdit.renameRule": True,
    }
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={**base, **settings}))
    await stats(client)  # a round trip: the notification has been handled


def content_modified(e: object) -> bool:
    return isinstance(e, JsonRpcException) and e.code == CONTENT_MODIFIED


def renamed(client: LanguageClient) -> tuple[Buffer, tuple[int, int]]:
    """A buffer with the rename scenario typed in; the cursor after the typed keys."""
    buf = Buffer(client, RENAME_BEFORE)
    return buf, buf.type(RENAME_LINE, RENAME_COL, RENAME_TYPED)


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient):
    lsp_client.init_result = await lsp_client.initialize_session(
        types.InitializeParams(capabilities=types.ClientCapabilities(), initialization_options={})
    )
    yield
    await lsp_client.shutdown_session()


# -- protocol -------------------------------------------------------------------------------------
@ASYNC
async def test_advertised_in_experimental_capabilities(client: LanguageClient):
    caps = client.init_result.capabilities
    assert plain(caps.experimental)[ext.INLINE_EDIT_CAPABILITY] is True
    assert ext.ACCEPT_EDIT_COMMAND in caps.execute_command_provider.commands


@ASYNC
async def test_answer_shape_and_accept_feedback(client: LanguageClient):
    await configure(client)
    buf, cursor = renamed(client)
    before = await stats(client)
    res = plain(await ask(client, buf.params(cursor)))
    assert set(res) == {"edits"} and isinstance(res["edits"], list)
    after = await stats(client)
    assert after["nextEditRequests"] - before["nextEditRequests"] == 1
    assert after["nextEditModelCalls"] - before["nextEditModelCalls"] == 1
    if not res["edits"]:
        skip_unless_ci(f"the model {after['model']} proposed nothing for the rename, even ungated")
    starts = []
    for e in res["edits"]:
        assert set(e) == {"text", "textDocument", "range", "command"}, e
        assert e["textDocument"] == {"uri": buf.uri, "version": buf.version}
        assert e["command"]["command"] == ext.ACCEPT_EDIT_COMMAND and e["command"]["arguments"]
        starts.append((e["range"]["start"]["line"], e["range"]["start"]["character"]))
        assert e["range"]["start"]["line"] != RENAME_LINE  # never the edit the user just made
    assert starts == sorted(starts)
    for a, b in itertools.pairwise(res["edits"]):  # non-overlapping
        end, start = a["range"]["end"], b["range"]["start"]
        assert (end["line"], end["character"]) <= (start["line"], start["character"])
    assert after["nextEditAnswered"] - before["nextEditAnswered"] == 1
    # the client applies one and runs its command: counted as accepted
    cmd = res["edits"][0]["command"]
    await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=cmd["command"], arguments=cmd["arguments"])
    )
    assert (await stats(client))["nextEditAccepted"] - after["nextEditAccepted"] == 1


@ASYNC
async def test_silent_without_an_edit_history(client: LanguageClient):
    await configure(client)
    buf = Buffer(client, RENAME_BEFORE)
    before = await stats(client)
    assert plain(await ask(client, buf.params((1, 4)))) == {"edits": []}
    # typed and deleted again: the document is as it was, no edit to carry on
    buf.type(3, 13, "x")
    buf.replace((3, 13), (3, 14), "")
    assert plain(await ask(client, buf.params((3, 13)))) == {"edits": []}
    after = await stats(client)
    assert after["nextEditModelCalls"] == before["nextEditModelCalls"]  # answered without the model
    assert after["nextEditEmpty"] - before["nextEditEmpty"] == 2


@ASYNC
async def test_disabled_by_setting(client: LanguageClient):
    await configure(client, **{"nextEdit.enabled": False})
    buf, cursor = renamed(client)
    before = await stats(client)
    assert plain(await ask(client, buf.params(cursor))) == {"edits": []}
    assert (await stats(client))["nextEditModelCalls"] == before["nextEditModelCalls"]
    await configure(client)


@ASYNC
async def test_never_answers_for_an_older_version(client: LanguageClient):
    await configure(client)
    buf, cursor = renamed(client)
    before = await stats(client)
    # the client asks about a version the document has already left
    with pytest.raises(JsonRpcException) as e:
        await ask(client, buf.params(cursor, version=buf.version - 1))
    assert e.value.code == CONTENT_MODIFIED
    # the document changes while the model works: the answer would be for the older version
    fut = ask(client, buf.params(cursor))
    buf.type(6, 16, " ")
    with pytest.raises(JsonRpcException) as e:
        await fut
    assert e.value.code == CONTENT_MODIFIED
    after = await stats(client)
    assert after["nextEditStale"] - before["nextEditStale"] == 2
    # without a version in the params the server answers for the version it has
    res = plain(await ask(client, buf.params(cursor, version=None)))
    assert all(e["textDocument"]["version"] == buf.version for e in res["edits"])


@ASYNC
async def test_newest_request_wins(client: LanguageClient):
    await configure(client)
    buf, cursor = renamed(client)
    other, other_cursor = renamed(client)  # another document: not superseded
    before = await stats(client)
    futures = [ask(client, buf.params(cursor)) for _ in range(4)] + [ask(client, other.params(other_cursor))]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(content_modified(r) for r in results[:3]), results
    assert isinstance(plain(results[3]), dict) and isinstance(plain(results[4]), dict), results
    after = await stats(client)
    assert after["nextEditSuperseded"] - before["nextEditSuperseded"] == 3
    assert after["nextEditModelCalls"] - before["nextEditModelCalls"] <= 3  # superseded queued work never starts


@ASYNC
async def test_cancel_request_honoured(client: LanguageClient):
    await configure(client)
    buf, cursor = renamed(client)
    before = await stats(client)
    fut = ask(client, buf.params(cursor), msg_id="nes-cancel-me")
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="nes-cancel-me"))
    with pytest.raises(JsonRpcRequestCancelled):
        await fut
    after = await stats(client)
    assert after["nextEditCancelled"] - before["nextEditCancelled"] == 1
    assert after["cancelled"] == before["cancelled"]  # inline completions' counter is not touched
    assert isinstance(plain(await ask(client, buf.params(cursor))), dict)  # still serving


@ASYNC
async def test_malformed_and_unopened(client: LanguageClient):
    for params in [{"textDocument": {"uri": 3}}, {"textDocument": {"uri": new_uri()}, "position": {"line": 0}}]:
        with pytest.raises(JsonRpcException) as e:
            await ask(client, params)
        assert e.value.code == -32602  # InvalidParams
    not_open = {"textDocument": {"uri": new_uri()}, "position": {"line": 0, "character": 0}}
    with pytest.raises(JsonRpcException) as e:
        await ask(client, not_open)
    assert e.value.code == -32602


@ASYNC
async def test_applied_answer_is_what_the_server_holds(client: LanguageClient):
    """The client applies the whole answer as one didChange: the server's copy equals the answer applied."""
    await configure(client)
    buf, cursor = renamed(client)
    res = plain(await ask(client, buf.params(cursor)))
    if not res["edits"]:
        skip_unless_ci("the model proposed nothing for the rename, even ungated")
    expected = apply_edits(buf.text, res["edits"])
    for e in sorted(res["edits"], key=lambda e: (e["range"]["start"]["line"], e["range"]["start"]["character"]))[::-1]:
        r = e["range"]
        buf.replace((r["start"]["line"], r["start"]["character"]), (r["end"]["line"], r["end"]["character"]), e["text"])
    assert buf.text == expected
    doc = plain(await client.protocol.send_request_async(ext.DOCUMENT, {"textDocument": {"uri": buf.uri}}))
    assert doc["text"] == expected and doc["version"] == buf.version


# -- the model's answer ---------------------------------------------------------------------------
async def follow_up(client: LanguageClient, buf: Buffer, cursor: tuple[int, int], rounds: int = 5) -> list[dict]:
    """Ask, apply every proposed edit, ask again (as an editor does after each accept) until silence."""
    answers = []
    for _ in range(rounds):
        res = plain(await ask(client, buf.params(cursor)))
        answers.append({"version": buf.version, "edits": res["edits"]})
        if not res["edits"]:
            break
        for e in sorted(res["edits"], key=lambda e: (e["range"]["start"]["line"], e["range"]["start"]["character"]))[
            ::-1
        ]:
            r = e["range"]
            buf.replace(
                (r["start"]["line"], r["start"]["character"]), (r["end"]["line"], r["end"]["character"]), e["text"]
            )
    return answers


@ASYNC
async def test_rename_propagates_to_every_use(client: LanguageClient):
    """Rename a local variable at its first use (typed), accept what the server proposes: all uses renamed.

    The server's defaults: renamed words follow by rule (``nextEdit.renameRule``), the model decides
    the other candidates under the default gate (and must not spoil the result)."""
    await configure(client, **{"nextEdit.minConfidence": config.DEFAULTS.next_edit_min_confidence})
    buf, cursor = renamed(client)
    answers = await follow_up(client, buf, cursor)
    model = (await stats(client))["model"]
    assert buf.text == RENAME_EXPECTED, f"model {model} answered {answers}"


OPTIONS = """import argparse


def parser():
    p = argparse.ArgumentParser()
    p.add_argument("--host")
    p.add_argument("--port")
    p.add_argument("--user")
    return p
"""


@ASYNC
async def test_an_added_argument_is_carried_to_the_sibling_calls(client: LanguageClient):
    """Type ``, default=None`` into one of three ``add_argument`` calls, accept what the server
    proposes: all three have it (the replay rule, under the default settings)."""
    await configure(client, **{"nextEdit.minConfidence": config.DEFAULTS.next_edit_min_confidence})
    buf = Buffer(client, OPTIONS)
    cursor = buf.type(5, len('    p.add_argument("--host"'), ", default=None")
    answers = await follow_up(client, buf, cursor)
    assert buf.text == OPTIONS.replace('")', '", default=None)'), answers
    assert answers[-1]["edits"] == []  # then silence


LOADER = """def load(path, mode="r"):
    return open(path, mode)


def main():
    a = load("a.txt")
    b = load("b.txt", "w")
    return a, b
"""


@ASYNC
async def test_a_new_parameter_is_passed_at_the_calls(client: LanguageClient):
    """Type a new required parameter into a ``def`` header, accept what the server proposes: every
    call passes it (the signature rule, under the default settings)."""
    await configure(client, **{"nextEdit.minConfidence": config.DEFAULTS.next_edit_min_confidence})
    buf = Buffer(client, LOADER)
    cursor = buf.type(0, len("def load(path"), ", encoding")
    answers = await follow_up(client, buf, cursor)
    want = LOADER.replace("load(path,", "load(path, encoding,").replace('.txt"', '.txt", encoding')
    assert buf.text == want, answers
    assert answers[-1]["edits"] == []


@ASYNC
@pytest.mark.xfail(
    strict=True,
    reason="the shipped model (engine/models/default) does not follow the edit history (bench/nes_probe.py: "
    "the diff moves the new-vs-old word margin by +0.04 nats) and fills the renamed word's other uses with "
    "other text; no edit passes the gate",
)
async def test_model_alone_propagates_the_rename(client: LanguageClient):
    """The same with the rename rule off: the model itself must carry the new name to every use."""
    await configure(
        client,
        **{"nextEdit.minConfidence": config.DEFAULTS.next_edit_min_confidence, "nextEdit.renameRule": False},
    )
    buf, cursor = renamed(client)
    answers = await follow_up(client, buf, cursor)
    model = (await stats(client))["model"]
    await configure(client)
    assert buf.text == RENAME_EXPECTED, f"model {model} answered {answers}"


# -- conversion (no server) -----------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
def test_edit_positions_in_the_client_encoding(encoding):
    from pygls.workspace.position_codec import PositionCodec

    text = 'x = "😀é"; total = 1\nprint("😀", total)\n'
    doc = TextDocument("file:///a.py", text, 3, position_codec=PositionCodec(types.PositionEncodingKind(encoding)))
    # the cursor after "total" on line 0, in the client's units
    col = {"utf-16": 16, "utf-8": 19, "utf-32": 15}[encoding]
    req = convert.edit_request(doc, types.Position(0, col), 3, 7, [])
    assert req.cursor == (0, 16)  # nes works in UTF-16
    # an edit of the second "total" (UTF-16 columns 12..17 on line 1) goes back in the client's units
    out = EditOutcome(
        [{"range": {"start": {"line": 1, "character": 12}, "end": {"line": 1, "character": 17}}, "text": "n"}], "e1"
    )
    res = ext.to_wire(convert.inline_edits(doc, req, out))
    start = {"utf-16": 12, "utf-8": 14, "utf-32": 11}[encoding]
    (edit,) = res["edits"]
    assert edit["range"] == {"start": {"line": 1, "character": start}, "end": {"line": 1, "character": start + 5}}
    assert edit["textDocument"] == {"uri": "file:///a.py", "version": 3}
    assert edit["command"] == {
        "title": "unmask: next edit accepted",
        "command": ext.ACCEPT_EDIT_COMMAND,
        "arguments": ["e1"],
    }
    assert isinstance(req, EditRequest) and req.asked_version == 3 and req.request_id == 7


def test_inline_edit_params_checked():
    ok = convert.inline_edit_target(
        {"textDocument": {"uri": "file:///a.py", "version": 2}, "position": {"line": 1, "character": 0}}
    )
    assert ok == ("file:///a.py", 2, types.Position(1, 0))
    for bad in [
        {},
        {"textDocument": {"uri": "u", "version": "2"}, "position": {"line": 0, "character": 0}},
        {"textDocument": {"uri": "u"}, "position": {"line": -1, "character": 0}},
    ]:
        with pytest.raises(convert.BadParams):
            convert.inline_edit_target(bad)


def test_next_edit_settings_flat_nested_and_invalid():
    s, problems, _ = config.merge(config.Settings(), {"nextEdit": {"minConfidence": 0, "budgetMs": 400}})
    assert (s.next_edit_min_confidence, s.next_edit_budget_ms, s.next_edit_enabled) == (0.0, 400, True)
    s, problems, _ = config.merge(s, {"nextEdit.enabled": "yes", "nextEdit.budgetMs": 5})
    assert s.next_edit_enabled is True and s.next_edit_budget_ms == config.DEFAULTS.next_edit_budget_ms
    assert len(problems) == 2 and all("nextEdit." in p for p in problems)
    assert config.DEFAULTS.next_edit_min_confidence == DEFAULT_MIN_CONFIDENCE  # the gate bench/nes_dev.py picked
    assert config.DEFAULTS.next_edit_rename_rule == DEFAULT_RENAME_RULE
    assert config.DEFAULTS.next_edit_replay_rule == DEFAULT_REPLAY_RULE
    s, problems, _ = config.merge(s, {"nextEdit": {"replayRule": False, "signatureRule": False}})
    assert s.next_edit_replay_rule is False and s.next_edit_signature_rule is False and not problems
