r"""One open document: its text, its tree-sitter tree kept current by incremental edits,
and its recent edit history.

The server calls :meth:`ParsedDocument.apply_edit` with each ``didChange`` content change
(an LSP range in the client's position encoding, UTF-16 by default, plus the new text).
The edit is applied to the bytes, to a table of line starts, and to the old tree
(``Tree.edit``); the re-parse is lazy, reusing the edited tree, on the next access to
:attr:`ParsedDocument.tree` — several keystrokes between two completions cost one
incremental parse.

Lines are counted the way the LSP specification says (and VS Code does): a line ends at
``\n``, ``\r\n`` or a lone ``\r``, and at nothing else (not at form feed, U+2028 or NEL, where
Python's ``str.splitlines`` would break). A line's text never includes its line ending; a
``character`` past the end of a line means the end of the line. tree-sitter counts rows at
``\n`` only; the points given to ``Tree.edit`` are counted its way. Text that cannot be
encoded as UTF-8 (a lone surrogate, from a JSON escape such as ``"\ud800"``) is stored with U+FFFD in
its place: one UTF-16 code unit for one, so the positions after it stay right.

It knows bytes, lines, positions and trees; it knows nothing about LSP types, files on
disk other than the optional path, or what a completion needs. A document whose language
has no grammar is plain text: ``tree`` is None and everything else still works.
"""

from __future__ import annotations

import bisect
import os
import re
import time
from collections import deque
from dataclasses import dataclass

from . import languages, ts

ENCODINGS = ("utf-16", "utf-8", "utf-32")
MAX_CHANGES = 256  # byte changes kept for readers catching up incrementally (ParsedDocument.changes_since)
_BREAK = re.compile(rb"\r\n?|\n")  # LSP's end-of-line sequences: \n, \r\n, \r


def encodable(text: str) -> str:
    """``text`` with each lone surrogate (a JSON ``"\\ud800"`` escape; not UTF-8) as U+FFFD, one UTF-16 unit for one."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _utf8(text: str) -> bytes:
    return encodable(text).encode("utf-8")


def _line_starts(src: bytes, lo: int = 0, hi: int | None = None) -> list[int]:
    """The line starts ``s`` (offsets just after a line ending) with ``lo <= s <= hi``, ``s >= 1``."""
    hi = len(src) if hi is None else hi
    p, q = max(lo - 2, 0), hi + 1
    if src.count(b"\r", p, q) == src.count(b"\r\n", p, q + 1):  # no lone \r: the line endings are the \n
        out, i = [], src.find(b"\n", max(lo - 1, 0), hi)
        while i >= 0:
            out.append(i + 1)
            i = src.find(b"\n", i + 1, hi)
        return out
    return [e for m in _BREAK.finditer(src, p, min(len(src), q)) if lo <= (e := m.end()) <= hi]


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


_LINES = re.compile(r"\r\n?|\n")


def _point(src: bytes, offset: int) -> tuple[int, int]:
    """tree-sitter's point (row, byte column) of ``offset``: it counts rows at ``\\n`` only."""
    return src.count(b"\n", 0, offset), offset - src.rfind(b"\n", 0, offset) - 1


class ParsedDocument:
    """A document's text and syntax tree, updated by incremental edits. Not thread-safe."""

    def __init__(self, text: str, language: str | None = None, path: str = "", version: int = 0, max_edits: int = 64):
        self.path = os.fspath(path)
        self.language = language if language in languages.LANGUAGES else None
        self.version = version
        self.edits: deque[EditRecord] = deque(maxlen=max_edits)
        # (start, old end, new end) of each byte edit, and (start, end, end) of each range a re-parse found
        # changed in structure; ``changes`` counts them all (see changes_since)
        self._changes: deque[tuple[int, int, int]] = deque(maxlen=MAX_CHANGES)
        self.changes = 0
        self.parse_ms = 0.0  # the last parse (full or incremental)
        self._parser = languages.new_parser(self.language) if self.language else None
        if self.language:
            languages.query(self.language, "spans")  # compile now, not on the first completion
        self._tree = None
        self._dirty = False
        self._set(_utf8(text))
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
        self._starts = [0, *_line_starts(src)]

    def _line_end(self, line: int) -> int:
        """The byte offset where line ``line``'s text ends (its line ending, if any, starts there)."""
        if line + 1 >= len(self._starts):
            return len(self.src)
        e = self._starts[line + 1] - 1  # the last byte of the line ending
        if self.src[e] == 0x0A and e > self._starts[line] and self.src[e - 1] == 0x0D:
            e -= 1  # \r\n
        return e

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
        """Line ``line`` without its line ending."""
        if line >= len(self._starts):
            return b""
        return self.src[self._starts[line] : self._line_end(line)]

    def line_text(self, line: int) -> str:
        return self.line_bytes(line).decode("utf-8", "replace")

    def lines_text(self, first: int, last: int, lo: int = 0, hi: int | None = None) -> str:
        """Lines [first, last] (inclusive) with the line endings between them, without the last one's; only
        their bytes in [lo, hi) when given (a window around the cursor, for very long lines)."""
        first = max(first, 0)
        last = min(last, len(self._starts) - 1)
        if last < first:
            return ""
        a, b = max(self._starts[first], lo), self._line_end(last) if hi is None else min(self._line_end(last), hi)
        return self.src[a:b].decode("utf-8", "replace") if a < b else ""

    # -- positions ------------------------------------------------------------------------
    def offset_at(self, line: int, character: int, encoding: str = "utf-16") -> int:
        """Byte offset of an LSP position (line, character in ``encoding`` code units).

        Past the end of a line clamps to the line end; past the last line to the text end.
        """
        if line >= len(self._starts):
            return len(self.src)
        raw = self.line_bytes(line)
        if raw.isascii():
            return self._starts[line] + min(character, len(raw))
        if encoding == "utf-8":  # inside a character: after it
            i = min(character, len(raw))
            while i < len(raw) and 0x80 <= raw[i] < 0xC0:
                i += 1
            return self._starts[line] + i
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
        col_bytes = self.src[self._starts[line] : min(offset, self._line_end(line))]
        if encoding == "utf-8" or col_bytes.isascii():
            return line, len(col_bytes)
        s = col_bytes.decode("utf-8", "replace")
        if encoding == "utf-16":
            return line, sum(2 if ord(c) > 0xFFFF else 1 for c in s)
        return line, len(s)

    def point_at(self, offset: int) -> tuple[int, int]:
        """tree-sitter point (row, byte column) of a byte offset: rows end at ``\\n`` only."""
        return _point(self.src, offset)

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
        new = _utf8(new_text)
        a, b = start_byte, old_end_byte
        old = self.src[a:b]
        src = self.src[:a] + new + self.src[b:]
        if self._tree is not None:
            start_pt, old_end_pt = _point(self.src, a), _point(self.src, b)
            nl = new.count(b"\n")
            new_end_pt = (start_pt[0] + nl, start_pt[1] + len(new) if not nl else len(new) - new.rfind(b"\n") - 1)
            ts.edit_tree(self._tree, a, b, a + len(new), start_pt, old_end_pt, new_end_pt)
            self._dirty = True
        # line starts: those before the edit stay; those in it (and just after it: a \r\n can be made or
        # split at either end) are found again; those after it move by the change in length
        starts = self._starts
        i, j = bisect.bisect_left(starts, a, 1), bisect.bisect_right(starts, b)  # 0 stays
        starts[i:] = _line_starts(src, a, a + len(new)) + [x + len(new) - (b - a) for x in starts[j:]]
        self.src, self._text = src, None
        self._log(a, b, a + len(new))
        self.version = version if version is not None else self.version + 1
        line = bisect.bisect_right(starts, a) - 1
        end_line = bisect.bisect_right(starts, a + len(new)) - 1
        self._record(line, end_line, old.decode("utf-8", "replace"), new.decode("utf-8"))

    def replace_text(self, text: str, version: int | None = None) -> None:
        """A full-document change (no range): full re-parse."""
        old, old_len = self.text, len(self.src)
        self._set(_utf8(text))
        self._log(0, old_len, len(self.src))
        text = self.text
        self._tree, self._dirty = None, False
        self._parse()
        self.version = version if version is not None else self.version + 1
        if old != text:  # record the changed line range
            a, b = _LINES.split(old), _LINES.split(text)
            i = 0
            while i < min(len(a), len(b)) and a[i] == b[i]:
                i += 1
            j = 0
            while j < min(len(a), len(b)) - i and a[-1 - j] == b[-1 - j]:
                j += 1
            self._record(i, max(i, len(b) - 1 - j), "\n".join(a[i : len(a) - j]), "\n".join(b[i : len(b) - j]))

    def _log(self, start: int, old_end: int, new_end: int) -> None:
        self._changes.append((start, old_end, new_end))
        self.changes += 1

    def changes_since(self, count: int) -> list[tuple[int, int, int]] | None:
        """The byte changes logged after the first ``count`` (``changes`` read earlier), oldest first, each
        ``(start, old end, new end)`` in the text as it was just before it; None when some were forgotten.

        Read it after :attr:`tree`: a re-parse logs the ranges whose syntax changed (``Tree.changed_ranges``).
        """
        k = self.changes - count
        if k < 0 or k > len(self._changes):
            return None
        return list(self._changes)[len(self._changes) - k :]

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
        old = self._tree if self._dirty else None
        self._tree = ts.parse(self._parser, self.src, old)
        if old is not None:
            for r in old.changed_ranges(self._tree):
                self._log(r.start_byte, r.end_byte, r.end_byte)
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


# -- the same rules for a document kept as a str (the server's pygls copy) ------------------------
_NOT_LSP_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")  # str.splitlines' others


def split_lines(text: str) -> list[str]:
    """``text``'s lines with their line endings, as LSP ends them (``\\n``, ``\\r\\n``, ``\\r``); like
    ``str.splitlines(True)`` otherwise (no empty entry after a final line ending)."""
    parts = text.splitlines(True)
    if not any(c in text for c in _NOT_LSP_BREAKS):
        return parts
    out, buf = [], ""
    for p in parts:  # join the pieces split at a character that does not end a line
        buf += p
        if p[-1:] in ("\n", "\r"):
            out.append(buf)
            buf = ""
    return [*out, buf] if buf else out


def code_units(s: str, encoding: str = "utf-16") -> int:
    """The length of ``s`` in ``encoding``'s code units (LSP's ``character``)."""
    if encoding == "utf-32" or s.isascii():
        return len(s)
    if encoding == "utf-8":
        return len(s.encode("utf-8", "surrogatepass"))
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def code_point_index(s: str, units: int, encoding: str = "utf-16") -> int:
    """The index in ``s`` of the position ``units`` code units in: past the end is the end (LSP); inside a
    character (half a surrogate pair, part of a UTF-8 sequence) is after it, as :meth:`ParsedDocument.offset_at`."""
    if encoding == "utf-32" or s.isascii():
        return min(max(units, 0), len(s))
    codec, width = ("utf-8", 1) if encoding == "utf-8" else ("utf-16-le", 2)
    b = s.encode(codec, "surrogatepass")
    cut = max(units, 0) * width
    if cut >= len(b):
        return len(s)
    k = len(b[:cut].decode(codec, "ignore"))  # the characters wholly before the position
    return k if len(s[:k].encode(codec, "surrogatepass")) == cut else k + 1
