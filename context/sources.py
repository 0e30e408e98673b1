"""Context sources: each turns a completion request into scored candidate snippets.

A source is a function ``(Request) -> list[Piece]`` registered by name in :data:`SOURCES`;
the packer runs the enabled ones (each can be switched off for ablation) and packs their
pieces by score. Relevance is in (0, 1]; the packer multiplies it by the source's weight.

- ``scope``: headers of the enclosing functions and classes (a class with its members'
  signatures) that lie above the visible prefix.
- ``definitions``: definitions of the names used near the cursor (and of names starting
  with the word being typed), found in the workspace index; definitions in files the
  current file imports win over same-named ones elsewhere.
- ``recent``: regions of recent edits (an edit-history list passed in, else the open
  documents' own histories), newest first.
- ``open``: the window of each other open document most similar to the code at the cursor.
- ``similar``: the most similar windows of the workspace files the current file imports
  (windows of files not yet seen are built a little per request, at most ``BUILD_MS``
  per source, so a cold cache cannot blow the latency budget; later requests see more).

No source shows another document that is secret-bearing by name (``.env``, ``*.pem``,
``id_rsa*`` ...: :func:`~unmask.context.index.is_secret`) or gitignored in the workspace
(:meth:`~unmask.context.index.WorkspaceIndex.excluded`), even open in the editor or recently
edited; the index never holds such files, and ``similar`` reads only indexed files inside the root.

Similarity is Jaccard over identifier sets of 20-line windows (as in Copilot's
neighbouring-tabs snippets). Names near the cursor are found with a regex, not the tree:
it is cheaper, also sees annotations and attributes, and the index lookup drops the noise.
The lines near the cursor are read at most :data:`NEAR_BYTES` either side of it, and the current
document's own tags are updated per edit (:mod:`.doctags`), so no request reads the whole file
(a minified file is one line of megabytes).

It knows documents, the index and scoring; it knows nothing about token budgets (the
packer), the model or LSP types.
"""

from __future__ import annotations

import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import languages, ts
from .doctags import DocumentTags
from .document import EditRecord, ParsedDocument
from .index import is_secret
from .spans import SpanChoice
from .tags import header_of

if TYPE_CHECKING:
    from .index import WorkspaceIndex
    from .pack import ContextConfig

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_END = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")  # the word being typed
WINDOW, STRIDE = 20, 10
MAX_SIMILAR_BYTES = 200_000  # larger files are not scanned for similar windows
BUILD_MS = 1.5  # per request and source: time spent windowing files not yet cached (the rest waits)
MAX_DEFS_PER_NAME = 40  # a name defined more often than this (get, run, __init__) says little
NEAR_BYTES = 8192  # the lines near the cursor are read only this far from it (minified code: one 2 MB line)
MAX_WORD = 256  # bytes before the cursor searched for the word being typed


@dataclass
class Piece:
    source: str
    text: str
    score: float
    tokens: int = 0
    path: str = ""
    line: int = -1  # 0-based first line in ``path``
    end_line: int = -1

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "score": round(self.score, 4),
            "tokens": self.tokens,
            "path": self.path,
            "line": self.line,
            "end_line": self.end_line,
            "text": self.text,
        }


@dataclass
class Request:
    doc: ParsedDocument
    offset: int
    line: int
    span: SpanChoice
    config: ContextConfig
    index: WorkspaceIndex | None = None
    open_docs: Sequence[ParsedDocument] = ()
    edits: Sequence[EditRecord] | None = None
    visible: tuple[int, int] = (0, 0)  # lines of the current document the prefix/suffix may show
    rel: str = ""  # the document's path relative to the index root
    _near: dict[str, float] | None = field(default=None, repr=False)

    @property
    def near_names(self) -> dict[str, float]:
        """Identifiers near the cursor, weighted by closeness (1 on the cursor line)."""
        if self._near is None:
            w: dict[str, float] = {}
            lo, hi = self.near_bytes
            for i in range(max(0, self.line - 30), min(self.doc.line_count, self.line + 10)):
                weight = 1.0 / (1.0 + abs(i - self.line) / 4.0)
                for name in IDENT.findall(self.doc.lines_text(i, i, lo, hi)):
                    w[name] = min(2.0, w.get(name, 0.0) + weight)
            self._near = w
        return self._near

    @property
    def near_bytes(self) -> tuple[int, int]:
        """The bytes around the cursor that the sources read lines from: :data:`NEAR_BYTES` each side."""
        return self.offset - NEAR_BYTES, self.offset + NEAR_BYTES

    def is_visible(self, path: str, line: int, end_line: int) -> bool:
        return path == self.rel and line <= self.visible[1] and end_line >= self.visible[0]


# -- the current document's own tags (when the index does not have it) ---------------------
_doc_tags: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def document_tags(doc: ParsedDocument) -> DocumentTags:
    """Tags of an open document's current text, brought up to date incrementally (:mod:`.doctags`)."""
    got = _doc_tags.get(doc)
    if got is None:
        got = _doc_tags[doc] = DocumentTags()
    got.refresh(doc)
    return got


def private(req: Request, path: str) -> bool:
    """Whether another document at ``path`` must not be shown: secret by name, or gitignored."""
    if not path or path == req.doc.path:
        return False
    if is_secret(path):
        return True
    return req.index is not None and req.index.excluded(path) is not None


def _label(req: Request, path: str, line: int) -> str:
    lang = req.doc.language
    c = languages.LANGUAGES[lang].comment if lang else "#"
    return f"{c} {path}:{line + 1}\n" if line >= 0 else f"{c} {path}\n"


def _piece(req: Request, source: str, body: str, rel: float, path: str, line: int, end_line: int) -> Piece:
    return Piece(source, _label(req, path, line) + body.rstrip("\n") + "\n", rel, 0, path, line, end_line)


# -- sources --------------------------------------------------------------------------------
def scope(req: Request) -> list[Piece]:
    tree = req.doc.tree
    q = languages.query(req.doc.language, "spans") if tree is not None else None
    if q is None:
        return []
    # On a blank line past the end of an indented body, the body's node ends before the
    # cursor: probe at the last code before it, and keep nodes indented less than the cursor.
    src, off = req.doc.src, req.offset
    probe = _code_end(src, off) or off
    col = off - req.doc.line_start(req.line)
    caps = ts.captures(q, tree.root_node, max(0, min(probe, off) - 1), off + 1)
    nodes = [
        n
        for k in ("scope.function", "scope.class")
        for n in caps.get(k, ())
        if n.start_byte < off <= n.end_byte
        or (n.start_byte < probe <= n.end_byte and n.start_point[1] < col and not src[n.end_byte : off].strip())
    ]
    nodes.sort(key=lambda n: n.end_byte - n.start_byte)  # innermost first
    out, rank = [], 0
    for n in nodes:
        line = n.start_point[0]
        if line >= req.visible[0]:
            continue  # its header is in the prefix already
        text = header_of(n, req.doc.src)
        name = n.child_by_field_name("name")
        if req.index is not None and name is not None:  # a class: its member outline from the index
            for d in req.index.definitions(name.text.decode("utf-8", "replace")):
                if d.path == req.rel and abs(d.line - line) < 50 and "\n" in d.text and d.text.startswith(text[:40]):
                    text = d.text
                    break
        out.append(_piece(req, "scope", text, 1.0 / (1 + 0.1 * rank), req.rel or req.doc.path, line, line))
        rank += 1
    return out


def _code_end(src: bytes, off: int, step: int = 4096) -> int:
    """``len(src[:off].rstrip())``, reading back from ``off`` a step at a time instead of copying the prefix."""
    while off > 0:
        a = max(0, off - step)
        kept = src[a:off].rstrip()
        if kept:
            return a + len(kept)
        off = a
    return 0


def definitions(req: Request) -> list[Piece]:
    ix = req.index
    if ix is None:
        tags = document_tags(req.doc)
        path = req.rel or req.doc.path
        lookup: Callable[[str], list] = lambda n: tags.lookup(n, path)  # noqa: E731
        imported: frozenset[str] = frozenset()
    else:
        lookup = ix.definitions
        if req.rel in ix.files:
            imported = ix.imported_files(req.rel)
        else:
            lang = req.doc.language or ""
            imported = ix.imported_files_of(lang, document_tags(req.doc).imports, req.rel)
    names = dict(req.near_names)
    before = req.doc.lines_text(req.line, req.line, req.offset - MAX_WORD, req.offset)
    m = _WORD_END.search(before)
    if m and len(m.group()) >= 2 and ix is not None:
        for n in ix.names_with_prefix(m.group(), 8):
            if n != m.group():
                names[n] = max(names.get(n, 0.0), 1.5)
    best: dict[tuple[str, int], tuple[float, object]] = {}
    for name, w in names.items():
        defs = [d for d in lookup(name) if d.kind != "field"]  # fields show in their class's outline
        if not defs or len(defs) > MAX_DEFS_PER_NAME:
            continue
        if any(req.is_visible(d.path, d.line, d.end_line) for d in defs if d.path == req.rel):
            continue  # defined right here, in view
        imp = [d for d in defs if d.path in imported]
        local = [d for d in defs if d.path == req.rel]
        pool, base = (imp, 1.0) if imp else (local, 0.8) if local else (defs, 0.5)
        r = min(1.0, w / 1.5) * base / len(pool) ** 0.5
        for d in pool[:3]:
            key = (d.path, d.line)
            if key not in best or best[key][0] < r:
                best[key] = (r, d)
    ranked = sorted(best.values(), key=lambda x: -x[0])[: req.config.max_pieces]
    return [_piece(req, "definitions", d.text, r, d.path, d.line, d.end_line) for r, d in ranked]


def recent(req: Request) -> list[Piece]:
    edits = req.edits
    if edits is None:
        edits = sorted((e for d in (req.doc, *req.open_docs) for e in d.edits), key=lambda e: e.time)
    docs = {d.path: d for d in (*req.open_docs, req.doc)}
    out: list[Piece] = []
    seen: list[tuple[str, int, int]] = []
    tail = list(edits)[-64:]
    hidden = {p: private(req, p) for p in {e.path for e in tail}}  # one check per document
    shown = [e for e in tail if not hidden[e.path]]
    for rank, e in enumerate(reversed(shown[-32:])):
        path = e.path
        rel = req.index.rel(path) if req.index is not None and path else path
        doc = docs.get(path)
        if doc is not None:
            a, b = max(0, e.line - 2), min(doc.line_count - 1, e.end_line + 2)
            body = doc.lines_text(a, b)
        else:
            a, b, body = e.line, e.end_line, e.new_text
        if doc is req.doc and a <= req.visible[1] and b >= req.visible[0]:
            continue
        if not body.strip() or any(p == path and a <= y and b >= x for p, x, y in seen):
            continue
        seen.append((path, a, b))
        out.append(_piece(req, "recent", body, 0.9**rank, rel, a, b))
        if len(out) >= req.config.max_pieces:
            break
    return out


@dataclass
class _Windows:
    """A file's identifier sets per STRIDE-line chunk, built a little per request."""

    lines: list[str]
    chunks: list[frozenset[str]] = field(default_factory=list)
    wins: list[tuple[int, frozenset[str]]] = field(default_factory=list)  # (first line, WINDOW-line set)

    def extend(self, deadline: float) -> None:
        n = len(self.lines)
        while len(self.chunks) * STRIDE < n and time.perf_counter() < deadline:
            i = len(self.chunks) * STRIDE
            c = frozenset(IDENT.findall("\n".join(self.lines[i : i + STRIDE])))
            if self.chunks:
                self.wins.append((i - STRIDE, self.chunks[-1] | c))
            self.chunks.append(c)
        if len(self.chunks) == 1 and not self.wins:
            self.wins.append((0, self.chunks[0]))


_win_cache: OrderedDict[tuple, _Windows] = OrderedDict()


def _windows(key: tuple, text_fn: Callable[[], str], deadline: float) -> _Windows:
    got = _win_cache.get(key)
    if got is None:
        got = _win_cache[key] = _Windows(text_fn().split("\n"))
        while len(_win_cache) > 64:
            _win_cache.popitem(last=False)
    else:
        _win_cache.move_to_end(key)
    got.extend(deadline)
    return got


def _best_window(req: Request, query: frozenset[str], key: tuple, text_fn, deadline: float):
    """(Jaccard, first line, text) of the window most like ``query``, among those built so far."""
    if not query:
        return None
    w = _windows(key, text_fn, deadline)
    best = (0.0, 0)
    for start, s in w.wins:
        inter = len(query & s)
        if inter:
            j = inter / len(query | s)
            if j > best[0]:
                best = (j, start)
    if best[0] <= 0.05:
        return None
    return best[0], best[1], "\n".join(w.lines[best[1] : best[1] + WINDOW])


def _query_set(req: Request) -> frozenset[str]:
    return frozenset(IDENT.findall(req.doc.lines_text(req.line - WINDOW + 2, req.line + 1, *req.near_bytes)))


def open_documents(req: Request) -> list[Piece]:
    q = _query_set(req)
    out = []
    deadline = time.perf_counter() + BUILD_MS / 1e3
    for d in req.open_docs:
        if d is req.doc or len(d.src) > MAX_SIMILAR_BYTES or private(req, d.path):
            continue
        got = _best_window(req, q, ("doc", id(d), d.version), lambda d=d: d.text, deadline)
        if got:
            j, start, body = got
            path = req.index.rel(d.path) if req.index is not None and d.path else d.path
            out.append(_piece(req, "open", body, min(1.0, 0.4 + j), path, start, start + WINDOW - 1))
    return sorted(out, key=lambda p: -p.score)[: req.config.max_pieces]


def similar(req: Request) -> list[Piece]:
    ix = req.index
    if ix is None or req.rel not in ix.files:
        return []
    q = _query_set(req)
    open_paths = {ix.rel(d.path) for d in req.open_docs if d.path}
    out = []
    deadline = time.perf_counter() + BUILD_MS / 1e3
    for rel in sorted(ix.imported_files(req.rel))[:6]:
        e = ix.files.get(rel)
        if e is None or rel in open_paths or e.size > MAX_SIMILAR_BYTES:
            continue

        got = _best_window(req, q, ("file", rel, e.mtime_ns), lambda rel=rel: ix.read_text(rel), deadline)
        if got:
            j, start, body = got
            out.append(_piece(req, "similar", body, min(1.0, 0.3 + j), rel, start, start + WINDOW - 1))
    return sorted(out, key=lambda p: -p.score)[: req.config.max_pieces]


SOURCES: dict[str, Callable[[Request], list[Piece]]] = {
    "scope": scope,
    "definitions": definitions,
    "recent": recent,
    "open": open_documents,
    "similar": similar,
}
