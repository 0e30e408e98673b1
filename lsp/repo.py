"""The server's repository context: a parsed copy of every open document, a workspace index per
root folder, and the one call that gathers what the model sees for a completion.

* Open documents are :class:`~unmask.context.ParsedDocument` s: created on didOpen, updated
  from each didChange content change (text and syntax tree are edited at once; the re-parse
  is incremental and lazy, on the next completion), dropped on didClose. A document larger
  than :data:`MAX_PARSE_BYTES` is kept as plain text: py-tree-sitter holds the GIL while it
  parses, and the first parse of a multi-megabyte file would stall the event loop.
* Each workspace root gets a :class:`~unmask.context.WorkspaceIndex`, built in the background
  (worker processes) and reporting progress through a callback; saves and watched-file
  events keep it current. At most :data:`MAX_INDEX_FILES` files per root are indexed.
* :meth:`RepoContext.gather` packs prefix, suffix and snippets into the model's window
  (:func:`~unmask.context.gather_context`). Other open documents that are secret-bearing by
  name (``.env``, ``*.pem``, ``id_rsa*`` ...) or gitignored in their own root are never offered
  to it; nothing is read from disk outside the workspace roots (paths are normalized, symlinks
  resolved before a file is handed to an index).

It knows URIs, file paths and the context layer's API; it knows nothing about LSP types
(positions are (line, character) pairs in the client's position encoding) or the model.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from unmask.context import (
    ContextConfig,
    ContextResult,
    IndexConfig,
    ParsedDocument,
    SpanChoice,
    WorkspaceIndex,
    gather_context,
    language_for_id,
)
from unmask.context.index import is_secret
from unmask.engine.infill import ROOM_SLOTS

log = logging.getLogger("unmask.lsp")

MAX_PARSE_BYTES = 1_000_000  # larger open documents get no syntax tree (a first parse takes ~150 ms per MB)
MAX_INDEX_FILES = 10_000  # per workspace root (~28 KB of index per file)
MAX_OPEN_DOCS = 16  # other open documents offered to the ``open`` and ``recent`` sources
BUDGET_MARGIN = 4  # tokens kept free: snippets and prefix go to the engine as one text, tokenized once


def context_budget(window: int, bucket: int) -> int:
    """Context tokens for a hole of ``bucket`` slots in a ``window``-token model (room for at least
    ``ROOM_SLOTS``, as the engine keeps: the context does not change with the bucket)."""
    return window - 1 - max(bucket, ROOM_SLOTS) - BUDGET_MARGIN


Progress = Callable[[int, int, str], None]


def uri_path(uri: str) -> str:
    """The file path of a ``file:`` URI; '' for other schemes (untitled buffers and the like)."""
    u = urlparse(uri)
    if u.scheme != "file":
        return ""
    path = url2pathname(unquote(u.path)) if os.name == "nt" else unquote(u.path)
    return os.path.normpath(path) if path else ""  # no `..` left: `/ws/a/../../etc` is `/etc`


class _Index(WorkspaceIndex):
    """A workspace index that stops at :data:`MAX_INDEX_FILES` files (a home directory opened as a root)."""

    def walk(self) -> list[str]:
        rels = super().walk()
        if len(rels) > MAX_INDEX_FILES:
            log.warning(
                "%s has %d source files; indexing the first %d (by path) only", self.root, len(rels), MAX_INDEX_FILES
            )
            self.stats.skipped["over limit"] += len(rels) - MAX_INDEX_FILES
            rels = rels[:MAX_INDEX_FILES]
        return rels


class RepoContext:
    def __init__(self, index_config: IndexConfig | None = None):
        self.docs: dict[str, ParsedDocument] = {}
        self.indexes: dict[str, WorkspaceIndex] = {}  # root -> index
        self.index_config = index_config or IndexConfig()
        self._edit_ms: dict[str, float] = {}  # per document: didChange work since its last completion request
        self._used: dict[str, float] = {}  # per document: last open/change (most recent first for ``open``)

    # -- open documents --------------------------------------------------------------------
    def open(self, uri: str, language_id: str | None, text: str, version: int | None) -> ParsedDocument:
        path = uri_path(uri)
        lang = language_for_id(language_id, path or None)
        if lang and len(text) > MAX_PARSE_BYTES:
            log.info("%s is %d characters: kept as plain text (no syntax tree)", uri, len(text))
            lang = None
        try:
            doc = ParsedDocument(text, lang, path, version or 0)
        except Exception as e:  # a broken grammar wheel must not cost the document
            log.warning("cannot parse %s as %s (%s): plain text", uri, lang, e)
            doc = ParsedDocument(text, None, path, version or 0)
        self.docs[uri] = doc
        self._edit_ms[uri] = 0.0
        self._used[uri] = time.monotonic()
        return doc

    def change(
        self,
        uri: str,
        start: tuple[int, int] | None,
        end: tuple[int, int] | None,
        text: str,
        version: int | None,
        encoding: str = "utf-16",
    ) -> None:
        """One content change: replace [start, end) by ``text``; ``start`` None replaces the whole text."""
        doc = self.docs.get(uri)
        if doc is None:
            return
        if start is None or end is None:
            doc.replace_text(text, version)
        else:
            doc.apply_edit(start, end, text, encoding, version)
        self._used[uri] = time.monotonic()

    def charge(self, uri: str, ms: float) -> None:
        """Account ``ms`` of didChange work to ``uri`` (reported with its next completion request)."""
        if uri in self.docs:
            self._edit_ms[uri] = self._edit_ms.get(uri, 0.0) + ms

    def resync(self, uri: str, text: str, version: int | None) -> None:
        """Replace a document's text when it disagrees with the server's copy (full re-parse)."""
        doc = self.docs.get(uri)
        if doc is not None:
            log.warning("the parsed copy of %s drifted from the document text; re-parsed it", uri)
            doc.replace_text(text, version)

    def take_edit_ms(self, uri: str) -> float:
        """The didChange work on ``uri`` since the last call (ms)."""
        return self._edit_ms.pop(uri, 0.0)

    def close(self, uri: str) -> None:
        self.docs.pop(uri, None)
        self._edit_ms.pop(uri, None)
        self._used.pop(uri, None)

    def document(self, uri: str) -> ParsedDocument | None:
        return self.docs.get(uri)

    # -- workspace indexes -----------------------------------------------------------------
    def add_root(self, root: str, progress: Progress | None = None) -> WorkspaceIndex | None:
        """Start indexing ``root`` in the background (``progress(done, total, message)`` on a thread)."""
        root = os.path.realpath(root)
        if root in self.indexes or not os.path.isdir(root):
            return None
        ix = _Index(root, self.index_config)
        self.indexes[root] = ix
        log.info("indexing %s in the background", root)
        ix.start(progress)
        return ix

    def remove_root(self, root: str) -> None:
        ix = self.indexes.pop(os.path.realpath(root), None)
        if ix is not None:
            ix.close()

    def index_for(self, path: str) -> WorkspaceIndex | None:
        """The index of the innermost root holding ``path``; else the first one (definitions still help)."""
        if not self.indexes:
            return None
        best = None
        for root, ix in self.indexes.items():
            if path.startswith(root + os.sep) and (best is None or len(root) > len(best.root)):
                best = ix
        return best or next(iter(self.indexes.values()))

    def saved(self, uri: str) -> None:
        path = uri_path(uri)
        ix = self._owner(path)
        if ix is not None:
            ix.update_file(path)

    def watched(self, changes: Iterable[tuple[str, int]]) -> None:
        """Watched-file events: (uri, kind) with kind 1 created, 2 changed, 3 deleted."""
        for uri, kind in changes:
            path = uri_path(uri)
            ix = self._owner(path)
            if ix is not None:
                ix.on_watched_files([(path, kind)])

    def _owner(self, path: str) -> WorkspaceIndex | None:
        """The index whose root holds ``path`` (symlinks resolved), or None."""
        if not path:
            return None
        real = os.path.realpath(path)
        ix = self.index_for(real)
        return ix if ix is not None and real.startswith(ix.root + os.sep) else None

    def private(self, path: str) -> bool:
        """Whether an open document must not be shown for another one: secret by name, or gitignored in its root."""
        if not path:
            return False
        if is_secret(path):
            return True
        ix = self._owner(path)
        return ix is not None and ix.excluded(path) is not None

    @property
    def indexing(self) -> bool:
        return any(not ix.ready.is_set() for ix in self.indexes.values())

    @property
    def indexed_files(self) -> int:
        return sum(len(ix.files) for ix in self.indexes.values())

    def shutdown(self) -> None:
        for ix in self.indexes.values():
            ix.close()
        self.indexes.clear()

    # -- context ---------------------------------------------------------------------------
    def gather(
        self,
        uri: str,
        at: tuple[int, int],
        span: SpanChoice,
        *,
        sources: Iterable[str],
        count_tokens: Callable[[str], int] | None,
        window: int | None,
        encoding: str = "utf-16",
    ) -> ContextResult:
        """Prefix, suffix and the best snippets from ``sources`` for a completion at ``at`` in ``uri``."""
        doc = self.docs[uri]
        others = sorted(
            (u for u in self.docs if u != uri and not self.private(self.docs[u].path)),
            key=lambda u: -self._used.get(u, 0.0),
        )
        budget = context_budget(window, span.bucket) if window else None
        cfg = ContextConfig(budget=budget, sources=frozenset({"prefix", "suffix", *sources}))
        return gather_context(
            doc,
            at[0],
            at[1],
            index=self.index_for(doc.path),
            open_docs=[self.docs[u] for u in others[:MAX_OPEN_DOCS]],
            config=cfg,
            count_tokens=count_tokens,
            encoding=encoding,
            span=span,
        )


def context_summary(res: ContextResult) -> dict:
    """What the model was shown, without the text: for ``unmask/timings`` and logs."""
    return {
        "span": res.span.kind,
        "bucket": res.span.bucket,
        "budget": res.budget,
        "used": res.used,
        "pieces": [
            {"source": p.source, "path": p.path, "line": p.line, "tokens": p.tokens}
            for p in (res.prefix, *res.snippets, res.suffix)
        ],
    }


def tree_outline(tree) -> str | None:
    """A syntax tree as an s-expression with byte ranges, every node (named or not): ``(type [0-12] ...)``."""
    if tree is None:
        return None
    out: list[str] = []
    stack: list = [(tree.root_node, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            out.append(")")
            continue
        out.append(f"({node.type} [{node.start_byte}-{node.end_byte}]")
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(node.children))
    return " ".join(out).replace(" )", ")")
