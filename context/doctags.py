"""The tags of an open document, kept per top-level syntax node and brought up to date from its edits.

:func:`~unmask.context.tags.extract_tags` runs the language's tags query over a whole tree: about
6 ms for a 3,500-line file, and 370 ms for calls nested 5,000 deep. Run again after each keystroke,
that made a completion's context cost grow with the file. Here each top-level node of the tree is a
*chunk* with its own tags (a file's tags are those of its top-level nodes, one after the other).
After edits, only the chunks touching the changed bytes (the edits, and the ranges tree-sitter
reports as changed in structure) are queried again. The chunks before the change keep their
offsets; the chunks after it are kept by their distance from the end of the text, which typing
does not change (a gap buffer), so a keystroke costs the chunks it touched, plus the chunks the
gap moves over when the cursor moves: never the whole file again.

It knows trees, a document's change log and tags; it knows nothing about the workspace, ranking or
completion requests.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

from .document import ParsedDocument
from .tags import Definition, tags_of_spans

MARGIN = 256  # bytes around a change also treated as changed: a header shows up to tags.MAX_LEAD bytes before its node


@dataclass(slots=True)
class _Chunk:
    """One top-level node's tags. Head chunks hold offsets from the start (bytes, rows); tail chunks from the end."""

    start: int
    end: int
    row: int  # tree-sitter row (counted at \n) of ``start``
    defs: tuple[Definition, ...]  # rows relative to ``row``
    imports: tuple[str, ...]
    tail: bool = False


class DocumentTags:
    """The tags of one document, updated by :meth:`refresh`; :meth:`lookup` and :attr:`imports` read them."""

    def __init__(self) -> None:
        self.head: list[_Chunk] = []  # in text order
        self.tail: list[_Chunk] = []  # in reverse text order: tail[-1] is the first chunk after the gap
        self.by_name: dict[str, list[tuple[_Chunk, int]]] = {}
        self.import_counts: Counter[str] = Counter()
        self.seen = -1  # the document's change count at the last refresh (-1: never built)
        self.size = 0  # bytes of text at the last refresh
        self.rows = 0  # its \n count
        self.rebuilds = 0  # whole-tree extractions, for tests
        self.queried = 0  # chunks queried, for tests

    # -- reading ------------------------------------------------------------------------------------
    @property
    def imports(self) -> tuple[str, ...]:
        return tuple(self.import_counts)

    def lookup(self, name: str, path: str) -> list[Definition]:
        """The definitions of ``name`` in text order, with absolute rows and ``path``."""
        out = []
        for c, i in self.by_name.get(name, ()):
            base = self.rows - c.row if c.tail else c.row
            start = self.size - c.start if c.tail else c.start
            d = c.defs[i]
            out.append((start, i, dataclasses.replace(d, path=path, line=base + d.line, end_line=base + d.end_line)))
        out.sort(key=lambda x: x[:2])
        return [d for _, _, d in out]

    # -- updating -----------------------------------------------------------------------------------
    def refresh(self, doc: ParsedDocument) -> None:
        """Bring the tags up to ``doc``'s current text (re-parsing it first if edits are pending)."""
        tree = doc.tree
        if doc.changes == self.seen:
            return
        if tree is None:  # plain text (no grammar, or too large to parse): no tags
            self._clear()
            self.seen = doc.changes
            return
        log = doc.changes_since(self.seen) if self.seen >= 0 and (self.head or self.tail) else None
        if log is None or not self._apply(log, len(doc.src)):
            self._clear()
            self.rebuilds += 1
        self.seen, self.size, self.rows = doc.changes, len(doc.src), doc.src.count(b"\n")
        self._fill_gap(doc, tree)

    def _clear(self) -> None:
        self.head, self.tail, self.by_name, self.import_counts = [], [], {}, Counter()

    def _apply(self, log: list[tuple[int, int, int]], new_size: int) -> bool:
        """Drop the chunks the changes touch; keep the rest (False: the log does not add up, rebuild)."""
        size = self.size
        clean_head, clean_tail = size, size  # bytes untouched at the start and at the end
        for a, b, c in log:
            clean_head = min(clean_head, a)
            clean_tail = min(clean_tail, size - b)
            size += c - b
        if size != new_size:
            return False
        clean_head = max(0, clean_head - MARGIN)
        clean_tail = max(0, clean_tail - MARGIN)
        old = self.size
        while self.head and self.head[-1].end > clean_head:  # past the change's start: to the tail, or dropped
            c = self.head.pop()
            if c.start >= old - clean_tail:
                c.start, c.end, c.row, c.tail = old - c.start, old - c.end, self.rows - c.row, True
                self.tail.append(c)
            else:
                self._forget(c)
        while self.tail and old - self.tail[-1].start < old - clean_tail:  # before the change's end
            c = self.tail.pop()
            if old - c.end <= clean_head:
                c.start, c.end, c.row, c.tail = old - c.start, old - c.end, self.rows - c.row, False
                self.head.append(c)
            else:
                self._forget(c)
        return True

    def _fill_gap(self, doc: ParsedDocument, tree) -> None:
        """Query the top-level nodes between the last head chunk and the first tail chunk (one query)."""
        size = len(doc.src)
        lo = self.head[-1].end if self.head else 0
        hi = size - self.tail[-1].start if self.tail else size
        root = tree.root_node
        # (py-tree-sitter 0.26's first_child_for_byte crashes on a node without children: a file of one "\n")
        node = root.first_child_for_byte(lo) if lo < size and root.child_count else None
        nodes = []
        while node is not None and node.start_byte < hi:
            if node.start_byte < lo or node.end_byte > hi:  # the kept chunks do not fit the tree: start over
                self._clear()
                self.rebuilds += 1
                return self._fill_gap(doc, tree)
            nodes.append(node)
            node = node.next_sibling
        spans = [(n.start_byte, n.end_byte) for n in nodes]
        for n, tags in zip(nodes, tags_of_spans(doc.language or "", doc.src, tree, spans)):
            self.queried += 1
            row = n.start_point[0]
            defs = tuple(dataclasses.replace(d, line=d.line - row, end_line=d.end_line - row) for d in tags.definitions)
            c = _Chunk(n.start_byte, n.end_byte, row, defs, tags.imports)
            self.head.append(c)
            for i, d in enumerate(defs):
                self.by_name.setdefault(d.name, []).append((c, i))
            self.import_counts.update(tags.imports)

    def _forget(self, c: _Chunk) -> None:
        for name in {d.name for d in c.defs}:
            kept = [x for x in self.by_name[name] if x[0] is not c]
            if kept:
                self.by_name[name] = kept
            else:
                del self.by_name[name]
        self.import_counts.subtract(c.imports)
        for k in c.imports:
            if self.import_counts[k] <= 0:
                del self.import_counts[k]
