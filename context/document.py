"""One open document: its text, its tree-sitter tree kept current by incremental edits,
and its recent edit history.

The server calls :meth:`ParsedDocument.apply_edit` with each ``didChange`` content change
(an LSP range in the client's position encoding, UTF-16 by default, plus the new text).
The edit is applied to the bytes, to a table of line starts, and to the old tree
(``Tree.edit``); the re-parse is lazy, reusing the edited tree, on the next access to
:attr:`ParsedDocument.tree` — several keystrokes between two completions cost one
incremental parse.

It knows bytes, lines, positions and trees; it knows nothing about LSP types, files on
disk other than the optional path, or what a completion needs. A document whose language
has no grammar is plain text: ``tree`` is None and everything else still works.
"""

from __future__ import annotations

import bisect
import os
import time
from collections import deque
from dataclasses import dataclass

from . import languages, ts

ENCODINGS = ("utf-16", "utf-8", "utf-32")


@dataclass
class EditRecord:
    """Where a document was edited: lines [line, end_line] of the new text, and what changed."""

    path: str
    line: int
    end_line: int
    old_text: str
    new_text: str
    time: float
    version: int = 0


class ParsedDocument:
    """A document's text and syntax tree, updated by incremental edits. Not thread-safe."""

    def __init__(self, text: str, language: str | None = None, path: str = "", version: int = 0, max_edits: int = 64):
        self.path = os.fspath(path)
        self.language = language if language in languages.LANGUAGES else None
        self.version = version
        self.edits: deque[EditRecord] = deque(maxlen=max_edits)
        self.parse_ms = 0.0  # the last parse (full or incremental)
        self._parser = languages.new_parser(self.language) if self.language else None
        if self.language:
            languages.query(self.language, "spans")  # compile now, not on the first completion
        self._tree = None
        self._dirty = False
        self._set(text.encode("utf-8"))
        self._parse()

    @classmethod
    def from_path(cls, path: str | os.PathLike, language: str | None = None) -> ParsedDocument:
        path = os.fspath(path)
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        return cls(text, language or languages.language_for_path(path), path)

    # -- text -----------------------------------------------------------------------------
    def _set(self, src: bytes) -> None:
        self.src = src
        self._text: str | None = None
        self._starts = [0]
        find, i = src.find, src.find(b"\n")
        while i >= 0:
            self._starts.append(i + 1)
            i = find(b"\n", i + 1)

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.src.decode("utf-8", "replace")
        return self._text

    @property
    def line_count(self) -> int:
        return len(self._starts)

    def line_start(self, line: int) -> int:
        return self._starts[min(max(line, 0), len(self._starts) - 1)]

    def line_bytes(self, line: int) -> bytes:
        """Line ``line`` without its newline."""
        if line >= len(self._starts):
            return b""
        start = self._starts[line]
        end = self._starts[line + 1] - 1 if line + 1 < len(self._starts) else len(self.src)
        return self.src[start:end]

    def line_text(self, line: int) -> str:
        return self.line_bytes(line).decode("utf-8", "replace")

    def lines_text(self, first: int, last: int) -> str:
        """Lines [first, last] (inclusive), joined, without the final newline."""
        first = max(first, 0)
        last = min(last, len(self._starts) - 1)
        if last < first:
            return ""
        end = self._starts[last + 1] - 1 if last + 1 < len(self._starts) else len(self.src)
        return self.src[self._starts[first] : end].decode("utf-8", "replace")

    # -- positions ------------------------------------------------------------------------
    def offset_at(self, line: int, character: int, encoding: str = "utf-16") -> int:
        """Byte offset of an LSP position (line, character in ``encoding`` code units).

        Past the end of a line clamps to the line end; past the last line to the text end.
        """
        if line >= len(self._starts):
            return len(self.src)
        raw = self.line_bytes(line)
        if encoding == "utf-8" or raw.isascii():
            return self._starts[line] + min(character, len(raw))
        s = raw.decode("utf-8", "replace")
        units = 0
        for i, ch in enumerate(s):
            if units >= character:
                return self._starts[line] + len(s[:i].encode("utf-8"))
            units += (2 if ord(ch) > 0xFFFF else 1) if encoding == "utf-16" else 1
        return self._starts[line] + len(raw)

    def position_at(self, offset: int, encoding: str = "utf-16") -> tuple[int, int]:
        """The LSP position (line, character) of a byte offset."""
        offset = min(max(offset, 0), len(self.src))
        line = bisect.bisect_right(self._starts, offset) - 1
        col_bytes = self.src[self._starts[line] : offset]
        if encoding == "utf-8" or col_bytes.isascii():
            return line, len(col_bytes)
        s = col_bytes.decode("utf-8", "replace")
        if encoding == "utf-16":
            return line, sum(2 if ord(c) > 0xFFFF else 1 for c in s)
        return line, len(s)

    def point_at(self, offset: int) -> tuple[int, int]:
        """tree-sitter point (row, byte column) of a byte offset."""
        line = bisect.bisect_right(self._starts, offset) - 1
        return line, offset - self._starts[line]

    # -- edits ----------------------------------------------------------------------------
    def apply_edit(
        self,
        start: tuple[int, int],
        end: tuple[int, int],
        new_text: str,
        encoding: str = "utf-16",
        version: int | None = None,
    ) -> None:
        """Apply one LSP content change: replace range [start, end) (line, character) by ``new_text``."""
        s = self.offset_at(*start, encoding=encoding)
        e = max(s, self.offset_at(*end, encoding=encoding))
        self.apply_byte_edit(s, e, new_text, version)

    def apply_byte_edit(self, start_byte: int, old_end_byte: int, new_text: str, version: int | None = None) -> None:
        """Replace bytes [start_byte, old_end_byte) by ``new_text``; edit the tree, re-parse lazily."""
        new = new_text.encode("utf-8")
        start_pt, old_end_pt = self.point_at(start_byte), self.point_at(old_end_byte)
        old = self.src[start_byte:old_end_byte]
        src = self.src[:start_byte] + new + self.src[old_end_byte:]
        nl = new.count(b"\n")
        new_end_pt = (
            (start_pt[0], start_pt[1] + len(new)) if not nl else (start_pt[0] + nl, len(new) - new.rfind(b"\n") - 1)
        )
        # line starts: keep those up to the start row, add the new ones, shift the rest
        row0, row1 = start_pt[0], old_end_pt[0]
        delta = len(new) - (old_end_byte - start_byte)
        added, i = [], new.find(b"\n")
        while i >= 0:
            added.append(start_byte + i + 1)
            i = new.find(b"\n", i + 1)
        self._starts[row0 + 1 :] = added + [x + delta for x in self._starts[row1 + 1 :]]
        self.src, self._text = src, None
        if self._tree is not None:
            ts.edit_tree(self._tree, start_byte, old_end_byte, start_byte + len(new), start_pt, old_end_pt, new_end_pt)
            self._dirty = True
        self.version = version if version is not None else self.version + 1
        self._record(start_pt[0], new_end_pt[0], old.decode("utf-8", "replace"), new_text)

    def replace_text(self, text: str, version: int | None = None) -> None:
        """A full-document change (no range): full re-parse."""
        old = self.text
        self._set(text.encode("utf-8"))
        self._tree, self._dirty = None, False
        self._parse()
        self.version = version if version is not None else self.version + 1
        if old != text:  # record the changed line range
            a, b = old.split("\n"), text.split("\n")
            i = 0
            while i < min(len(a), len(b)) and a[i] == b[i]:
                i += 1
            j = 0
            while j < min(len(a), len(b)) - i and a[-1 - j] == b[-1 - j]:
                j += 1
            self._record(i, max(i, len(b) - 1 - j), "\n".join(a[i : len(a) - j]), "\n".join(b[i : len(b) - j]))

    def _record(self, line: int, end_line: int, old: str, new: str) -> None:
        now = time.monotonic()
        last = self.edits[-1] if self.edits else None
        if (
            last is not None
            and now - last.time < 5.0
            and last.line - 1 <= line <= last.end_line + 1
            and "\n" not in old
        ):
            last.line, last.end_line = min(last.line, line), max(last.end_line, end_line)
            last.new_text, last.time, last.version = new if "\n" in new else last.new_text + new, now, self.version
            return
        self.edits.append(EditRecord(self.path, line, end_line, old, new, now, self.version))

    # -- tree -----------------------------------------------------------------------------
    def _parse(self) -> None:
        if self._parser is None:
            return
        t = time.perf_counter()
        self._tree = ts.parse(self._parser, self.src, self._tree if self._dirty else None)
        self._dirty = False
        self.parse_ms = (time.perf_counter() - t) * 1e3

    @property
    def tree(self):
        """The syntax tree of the current text (re-parsed incrementally if edits are pending), or None."""
        if self._dirty:
            self._parse()
        return self._tree

    def full_parse(self):
        """A fresh parse of the current text, ignoring the incremental tree (for tests)."""
        return ts.parse(self._parser, self.src) if self._parser else None
