"""Document sync, property-based: generated didChange sessions against a reference client.

The reference client (:class:`Client`) keeps the document the way the LSP specification says
a client does: lines end at ``\\n``, ``\\r\\n`` or ``\\r`` and at nothing else (not at form feed,
U+2028, NEL...); ``character`` counts UTF-16 code units; a ``character`` past the end of a line
means the end of the line. Each generated session opens a document, applies a sequence of
content changes (inserts, deletions across lines, edits at line ends, CRLF and lone CR,
multi-byte and astral characters, full-text replacements) with versions that usually go up but
sometimes go down or repeat, and checks after every change that the server's copy has the
client's text, lines and version, and (at generated points, and at the end) that the
incrementally edited syntax tree equals the tree the client gets by making the same edits itself
(offsets and points computed independently), and a fresh parse of the same text, except where
tree-sitter's own incremental parse differs from its fresh one (see :class:`Client`).

* :func:`test_parsed_document_follows_the_client` runs 10,000 sessions on
  :class:`~unmask.context.ParsedDocument` directly (the server's parsed copy).
* :func:`test_server_document_follows_the_client` runs 50 sessions through the real server
  (``unmask serve`` over pytest-lsp), reads the parsed copy back with ``unmask/document``, and
  checks with a completion that pygls' copy (what completions read) agrees with it.

Out-of-order versions: LSP says versions only go up, and a JSON-RPC connection delivers
notifications in order, so a change always applies to the text as the previous change left it.
The server applies every change in the order it arrives, whatever its version number, and
takes the version as sent: dropping or reordering a change by its version would desync the text.
"""

from __future__ import annotations

import bisect
import os
import random
import re
import sys

import pytest
import pytest_lsp
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from lsprotocol import types
from pygls.workspace import TextDocument
from pytest_lsp import ClientServerConfig, LanguageClient

from unmask.context import ParsedDocument, languages, ts
from unmask.lsp import convert
from unmask.lsp import protocol as ext
from unmask.lsp.repo import tree_outline
from unmask.lsp.server import as_lsp_document

# -- the reference client -------------------------------------------------------------------------
BREAK = re.compile(r"\r\n|\r|\n")  # LSP: the only end-of-line sequences


def utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


class Client:
    """A document as an LSP client holds it: text, lines per the LSP rules, UTF-16 positions.

    With a language it also keeps a tree-sitter tree of its own, edited with byte offsets and points
    computed here from its str indices (independently of ParsedDocument's line table) and re-parsed when
    :meth:`parsed` is called. tree-sitter itself does not always give the tree of a fresh parse after an
    edit: e.g. ``aaa,a//aa`` in JavaScript, after an empty edit at 0 and a re-parse, has the comment beside
    the statement, not in it. The server's tree must equal this one exactly; where both differ from a fresh
    parse, that is tree-sitter's (counted in :data:`TREE_SITTER_DIFFERS`)."""

    def __init__(self, text: str, language: str | None = None):
        self.text = text
        self.parser = languages.new_parser(language) if language else None
        self.tree = self.parser.parse(text.encode()) if self.parser else None
        self.dirty = False

    def replace(self, text: str) -> None:
        self.text = text
        self.tree = self.parser.parse(text.encode()) if self.parser else None
        self.dirty = False

    def parsed(self):
        if self.dirty:
            self.tree, self.dirty = self.parser.parse(self.text.encode(), self.tree), False
        return self.tree

    @property
    def lines(self) -> list[tuple[int, int]]:
        """(start, end of content) of each line, as str indices."""
        out, pos = [], 0
        for m in BREAK.finditer(self.text):
            out.append((pos, m.start()))
            pos = m.end()
        out.append((pos, len(self.text)))
        return out

    def line_texts(self) -> list[str]:
        return [self.text[a:b] for a, b in self.lines]

    def index(self, line: int, character: int) -> int:
        """The str index of an LSP position; ``character`` past the line's end is the line's end."""
        a, b = self.lines[line]
        units = 0
        for i in range(a, b):
            if units >= character:
                return i
            units += 2 if ord(self.text[i]) > 0xFFFF else 1
        return b

    def position(self, index: int) -> tuple[int, int]:
        lines = self.lines
        line = bisect.bisect_right([a for a, _ in lines], index) - 1
        return line, utf16_len(self.text[lines[line][0] : index])

    def edit(self, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
        a, b = self.index(*start), self.index(*end)
        new = self.text[:a] + text + self.text[b:]
        if self.tree is not None:
            old_src, new_src = self.text.encode(), new.encode()
            a8, b8 = len(self.text[:a].encode()), len(self.text[:b].encode())
            n8 = a8 + len(text.encode())
            ts.edit_tree(self.tree, a8, b8, n8, point(old_src, a8), point(old_src, b8), point(new_src, n8))
            self.dirty = True
        self.text = new


def point(src: bytes, offset: int) -> tuple[int, int]:
    """tree-sitter's (row, byte column): rows end at \\n."""
    row_start = src.rfind(b"\n", 0, offset) + 1
    return src[:offset].count(b"\n"), offset - row_start


# -- generated sessions ---------------------------------------------------------------------------
# pieces of text: code, every line ending, characters of 1, 2, 3 and 4 UTF-8 bytes (2 UTF-16 units for
# the astral ones), and the characters Python's str.splitlines() breaks at but LSP does not
PIECES = [
    "a", "bc", "x_1", " ", "    ", "\t", "\n", "\n", "\r\n", "\r\n", "\r",
    "é", "ß", "中", "文", "😋", "𝔘", "\u0301",
    "(", ")", ":", "{", "}", "[", "]", "'", '"', "#", "//", "/*", "*/", "\\", ",", ";", "=",
    "def f(a):", "return a", "if x:", "function g() {", "let y = 2;", "class C:", "pass",
    "\x0c", "\x0b", "\u2028", "\u2029", "\x85", "\x1c", "\x00",
]  # fmt: skip
LANGUAGES = ["python", "javascript", None]
KINDS = ["insert", "replace", "delete", "delete-lines", "at-eol", "full", "parse"]
VERSION_STEPS = [1, 1, 1, 1, 1, 2, 0, -1, -3]  # usually the next version; sometimes the same again, or older
N = 1 << 16


class Entropy:
    """Reads a session's choices from hypothesis' bytes, two at a time; 0 once they run out.

    One ``st.binary()`` draw per session keeps hypothesis' own cost per session small (10,000 sessions in
    seconds, where a draw per choice took minutes); it still shrinks a failure, to fewer and smaller bytes:
    a shorter session of simpler choices."""

    def __init__(self, data: bytes):
        self.data, self.i = data, 0

    @property
    def done(self) -> bool:
        return self.i >= len(self.data)

    def int(self, n: int) -> int:
        """A number in [0, n)."""
        v = int.from_bytes(self.data[self.i : self.i + 2], "big")
        self.i += 2
        return v % n

    def pick(self, seq: list):
        return seq[self.int(len(seq))]

    def text(self, most: int) -> str:
        return "".join(self.pick(PIECES) for _ in range(self.int(most + 1)))


def position(client: Client, n: int, past_end: bool = True) -> tuple[int, int]:
    """A position the client could send, picked by ``n``: a line, a code point boundary; 1 in 16 past the end."""
    lines = client.lines
    line, rest = n % len(lines), n // len(lines)
    a, b = lines[line]
    if past_end and rest % 16 == 15:
        return line, utf16_len(client.text[a:b]) + 1 + rest % 3
    return line, utf16_len(client.text[a : a + rest % (b - a + 1)])


def change(client: Client, kind: str, u: int, v: int, w: int, new: str) -> tuple[tuple | None, tuple | None, str]:
    """The content change ``(start, end, text)`` of a drawn one; start None for a full-text replacement."""
    if kind == "full":  # a whole new text: the drawn text, then the old one from a point on (as a formatter would)
        return None, None, new + client.text[u % (len(client.text) + 1) :]
    start = position(client, u)
    if kind == "insert":
        return start, start, new
    if kind == "at-eol":  # typing, or deleting up to 3 characters, at the end of a line (before its line ending)
        a, b = client.lines[start[0]]
        eol = (start[0], utf16_len(client.text[a:b]))
        if w % 2:
            return eol, eol, new
        return client.position(max(a, b - w % 4)), eol, ""
    end = position(client, v)
    if client.index(*end) < client.index(*start):
        start, end = end, start
    if kind == "delete-lines":  # from a line into a later one
        lines = client.lines
        if start[0] + 1 < len(lines):
            later = start[0] + 1 + w % (len(lines) - start[0] - 1)
            end = position(client, later + len(lines) * (v // len(lines)), past_end=False)
        return start, end, ""
    return start, end, "" if kind == "delete" else new


def outline(tree) -> str:
    """Every node (named or not) with its byte range and points, depth first."""
    out, stack = [], [tree.root_node]
    while stack:
        n = stack.pop()
        out.append(f"{n.type}[{n.start_byte}-{n.end_byte} {tuple(n.start_point)}-{tuple(n.end_point)}]")
        stack.extend(reversed(n.children))
    return " ".join(out)


TREE_CHECKS: list[int] = [0]
TREE_SITTER_DIFFERS: list[str] = []  # checks where tree-sitter's incremental tree is not a fresh parse's


def check_tree(doc: ParsedDocument, client: Client) -> None:
    if doc.language is None:
        assert doc.tree is None
        return
    TREE_CHECKS[0] += 1
    got = outline(doc.tree)
    assert got == outline(client.parsed())  # the same edits, made independently
    if got != outline(doc.full_parse()):
        TREE_SITTER_DIFFERS.append(client.text)


def check_text(doc: ParsedDocument, client: Client) -> None:
    assert doc.text == client.text
    lines = client.line_texts()
    assert doc.line_count == len(lines)
    assert [doc.line_text(i) for i in range(len(lines))] == lines


@settings(
    max_examples=int(os.environ.get("UNMASK_SYNC_SESSIONS", "10000")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.binary(min_size=120, max_size=320))
def test_parsed_document_follows_the_client(data: bytes) -> None:
    r = Entropy(data)
    language, text = r.pick(LANGUAGES), r.text(30)
    client = Client(text, language)
    doc = ParsedDocument(text, language, version=1)
    note(f"open {language} {text!r}")
    version = 1
    check_text(doc, client)
    for _ in range(12):
        if r.done:
            break
        kind, u, v, w, new, step = r.pick(KINDS), r.int(N), r.int(N), r.int(N), r.text(6), r.pick(VERSION_STEPS)
        if kind == "parse":  # the lazy re-parse happens here, between changes
            note("parse")
            check_tree(doc, client)
            continue
        start, end, new = change(client, kind, u, v, w, new)
        version = max(0, version + step)
        note(f"v{version} {kind} {start}-{end} {new!r}")
        if start is None:
            client.replace(new)
            doc.replace_text(new, version)
        else:
            client.edit(start, end, new)
            doc.apply_edit(start, end, new, "utf-16", version)
        check_text(doc, client)
        assert doc.version == version
    check_tree(doc, client)


def pygls_document(text: str) -> TextDocument:
    """The server's other copy of an open document: pygls' ``TextDocument`` as didOpen leaves it."""
    doc = TextDocument("file:///tmp/unmask-sync/pygls.py", text, 1, sync_kind=types.TextDocumentSyncKind.Incremental)
    as_lsp_document(doc)
    return doc


@settings(max_examples=2000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=120, max_size=320))
def test_pygls_copy_follows_the_client(data: bytes) -> None:
    """The same sessions on the server's pygls copy (what completions read), in process: its text, its lines,
    and positions both ways (the end of the text, and where each line starts)."""
    r = Entropy(data)
    r.pick(LANGUAGES)
    text = r.text(30)
    client, doc = Client(text), pygls_document(text)
    note(f"open {text!r}")
    for _ in range(12):
        if r.done:
            break
        kind, u, v, w, new, _ = r.pick(KINDS), r.int(N), r.int(N), r.int(N), r.text(6), r.pick(VERSION_STEPS)
        if kind == "parse":
            continue
        start, end, new = change(client, kind, u, v, w, new)
        note(f"{kind} {start}-{end} {new!r}")
        if start is None:
            client.replace(new)
        else:
            client.edit(start, end, new)
        convert.edit(doc, wire_change(start, end, new), 2)  # the server records each change before applying it
        doc.apply_change(wire_change(start, end, new))
        assert doc.source == client.text
        assert [line.rstrip("\r\n") for line in doc.lines] + [""] * client.text.endswith(("\r", "\n")) == (
            client.line_texts() if client.text else []
        )
        assert doc.client_position_at_offset(len(doc.source)) == types.Position(*client.position(len(client.text)))
        for line, (a, _) in enumerate(client.lines):
            assert doc.offset_at_position(types.Position(line, 0)) == a


# -- through the real server ----------------------------------------------------------------------
SERVER = [sys.executable, "-m", "unmask.lsp.cli", "serve", "--log-file", ""]
SERVER_SESSIONS = 50
LANGUAGE_IDS = {"python": "python", "javascript": "javascript", None: "plaintext"}


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=SERVER))
async def server(lsp_client: LanguageClient):
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                text_document=types.TextDocumentClientCapabilities(
                    inline_completion=types.InlineCompletionClientCapabilities()
                )
            ),
            initialization_options={"minConfidence": 0, "invokedBudgetMs": 10, "steps": 1},
        )
    )
    yield
    await lsp_client.shutdown_session()


def wire_change(start, end, text: str):
    if start is None:
        return types.TextDocumentContentChangeWholeDocument(text=text)
    rng = types.Range(types.Position(*start), types.Position(*end))
    return types.TextDocumentContentChangePartial(range=rng, text=text)


async def server_copy(client: LanguageClient, uri: str) -> dict:
    return ext.plain(await client.protocol.send_request_async(ext.DOCUMENT, {"textDocument": {"uri": uri}}))


@pytest.mark.asyncio(loop_scope="module")
async def test_server_document_follows_the_client(server: LanguageClient):
    """50 generated sessions through ``unmask serve``: after each session ``unmask/document`` returns the
    client's text, the last version sent and the tree of a fresh parse. Some didChange notifications carry
    several content changes (applied in order). Then an invoked completion (which reads pygls' copy of
    the document, and re-syncs the parsed copy from it if they disagree) leaves the parsed copy as it
    was: the server's two copies of the document agree."""
    client = server
    for seed in range(SERVER_SESSIONS):
        r = Entropy(random.Random(seed).randbytes(240))
        language, text = r.pick(LANGUAGES), r.text(30)
        uri = f"file:///tmp/unmask-sync/s{seed}.{'py' if language == 'python' else 'js' if language else 'txt'}"
        log = [f"session {seed}: open {language} {text!r}"]
        mirror = Client(text, language)
        version = 1
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, LANGUAGE_IDS[language], version, text))
        )
        pending: list = []  # content changes for the next didChange notification
        while not r.done:
            kind, u, v, w, new, step = r.pick(KINDS), r.int(N), r.int(N), r.int(N), r.text(6), r.pick(VERSION_STEPS)
            if kind != "parse":
                start, end, new = change(mirror, kind, u, v, w, new)
                if start is None:
                    mirror.replace(new)
                else:
                    mirror.edit(start, end, new)
                pending.append(wire_change(start, end, new))
                log.append(f"{kind} {start}-{end} {new!r}")
            if pending and (kind == "parse" or w % 3):  # else the next change goes in the same notification
                version = max(0, version + step)
                client.text_document_did_change(
                    types.DidChangeTextDocumentParams(types.VersionedTextDocumentIdentifier(version, uri), pending)
                )
                log.append(f"-> didChange v{version} with {len(pending)} change(s)")
                pending = []
        if pending:
            version += 1
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(types.VersionedTextDocumentIdentifier(version, uri), pending)
            )
        got = await server_copy(client, uri)
        why = "\n".join(log)
        assert got["text"] == mirror.text, why
        assert got["version"] == version, why
        assert got["language"] == language, why
        assert got["tree"] == (tree_outline(mirror.parsed()) if language else None), why  # see Client
        if language and got["tree"] != tree_outline(ParsedDocument(mirror.text, language).tree):
            TREE_SITTER_DIFFERS.append(mirror.text)
        # pygls' copy (what completions read) must agree with the parsed copy: the completion re-syncs the
        # parsed copy from it (before the model runs) where they differ
        end = mirror.position(len(mirror.text))
        params = types.InlineCompletionParams(
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(*end),
        )
        await client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params)
        assert (await server_copy(client, uri))["text"] == mirror.text, why
        client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))
    assert not [m.message for m in client.log_messages if "drifted" in m.message]
