"""Which span to mask at the cursor, how long it may be, and when not to suggest at all.

:func:`select_span` looks at the syntax tree around the cursor (the nodes the language's
``queries/<language>.spans.scm`` captures: ``@ctx.comment``/``@ctx.string``, ``@span.block``,
``@span.args``, ``@span.literal``) and at the text of the cursor's line, and returns a
:class:`SpanChoice`:

=========== ====================================================== ====== =========
kind        when                                                   bucket multiline
=========== ====================================================== ====== =========
block       after a block header (``def …:``, ``{``), or on a blank    64     yes
            line right below one
statement   on a blank line inside a body                              32     no
args        inside an argument / parameter list                      16–32  if it spans lines
literal     inside a dict / list / object / array literal            32–64  if it spans lines
line        rest of the line (only closers after the cursor)          8–32    no
infill      mid-line, with real code after the cursor                 8–16    no
=========== ====================================================== ====== =========

The bucket is the engine's number of slots (8/16/32/64; the longest answer the hole can
hold); for ``line`` it is estimated from the lengths of nearby lines. ``suppress_reason`` is
set (``comment``, ``string``, ``mid-word``) when the configuration says not to suggest here.

It knows trees, lines and the engine's bucket sizes; it knows nothing about the model, the
workspace or LSP types. Without a tree (plain text) it decides from the text alone.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from . import languages, ts
from .document import ParsedDocument

BUCKETS = (8, 16, 32, 64)  # the engine's slot counts (unmask.engine.infill: LINE_BUCKET=32, BLOCK_BUCKET=64)
LINE_BUCKET = 32
BLOCK_BUCKET = 64
CHARS_PER_TOKEN = 3.0  # rough code BPE ratio, for turning an expected length into slots

_TRIVIAL_AFTER = re.compile(r"[\s)\]}\"'`;,:]*")  # only closers after the cursor: completing the line is safe
_OPENERS = {":": "block", "{": "block", "(": "args", "[": "literal"}


@dataclass(frozen=True)
class SpanConfig:
    """When to suggest. The defaults stay quiet inside comments and strings and mid-word."""

    in_comments: bool = False
    in_strings: bool = False
    mid_word: bool = False
    max_bucket: int = BLOCK_BUCKET


@dataclass(frozen=True)
class SpanChoice:
    kind: str  # block | statement | args | literal | line | infill
    bucket: int  # engine slots for the hole
    multiline: bool  # may the answer span several lines
    suppress_reason: str | None = None  # comment | string | mid-word: do not suggest
    node_type: str | None = None  # the syntax node the choice came from
    offset: int = 0  # byte offset of the cursor
    ms: float = 0.0

    @property
    def suppressed(self) -> bool:
        return self.suppress_reason is not None


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def _smallest_containing(nodes, off: int, strict: bool = True):
    best = None
    for n in nodes:
        s, e = n.start_byte, n.end_byte
        if (s < off < e) if strict else (s <= off <= e):
            if best is None or e - s < best.end_byte - best.start_byte:
                best = n
    return best


def _in_comment(nodes, off: int, src: bytes):
    for n in nodes:
        if n.start_byte < off < n.end_byte:
            return n
        if off == n.end_byte and n.start_byte < off and not src[n.start_byte : n.end_byte].rstrip().endswith(b"*/"):
            return n  # end of a line comment: typing there continues the comment
    return None


def _line_bucket(doc: ParsedDocument, line: int, col_chars: int, cap: int) -> int:
    """Slots for the rest of a line: the 75th percentile of nearby line lengths minus the column."""
    lengths = sorted(
        len(t)
        for t in (doc.line_text(i) for i in range(max(0, line - 20), min(doc.line_count, line + 20)))
        if t.strip()
    )
    typical = lengths[(len(lengths) * 3) // 4] if lengths else 40
    tokens = max(typical - col_chars, 12) / CHARS_PER_TOKEN * 1.25
    return next((b for b in BUCKETS if b >= tokens and b <= cap), min(cap, LINE_BUCKET))


def select_span(
    doc: ParsedDocument, line: int, character: int, config: SpanConfig | None = None, encoding: str = "utf-16"
) -> SpanChoice:
    """Choose the hole at an LSP position (0-based line, character in ``encoding`` units)."""
    t0 = time.perf_counter()
    cfg = config or SpanConfig()
    off = doc.offset_at(line, character, encoding)
    raw = doc.line_bytes(line)
    col = off - doc.line_start(line)
    before, after = raw[:col].decode("utf-8", "replace"), raw[col:].decode("utf-8", "replace")
    src = doc.src

    caps: dict = {}
    tree = doc.tree
    q = languages.query(doc.language, "spans") if tree is not None else None
    if q is not None:
        caps = ts.captures(q, tree.root_node, max(0, off - 1), off + 1)

    reason = None
    if not cfg.in_comments and _in_comment(caps.get("ctx.comment", ()), off, src) is not None:
        reason = "comment"
    elif not cfg.in_strings and _smallest_containing(caps.get("ctx.string", ()), off) is not None:
        reason = "string"
    elif not cfg.mid_word and after[:1] and _is_word(after[0]):
        reason = "mid-word"

    def done(kind: str, bucket: int, multiline: bool, node=None) -> SpanChoice:
        ms = (time.perf_counter() - t0) * 1e3
        return SpanChoice(kind, min(bucket, cfg.max_bucket), multiline, reason, node, off, ms)

    inner, inner_kind = None, None
    for kind in ("block", "args", "literal"):
        n = _smallest_containing(caps.get(f"span.{kind}", ()), off)
        if n is not None and (inner is None or n.end_byte - n.start_byte < inner.end_byte - inner.start_byte):
            inner, inner_kind = n, kind
    inner_type = inner.type if inner is not None else None
    spans_lines = inner is not None and inner.start_point[0] != inner.end_point[0]
    head, tail = before.strip(), after.strip()
    trivial_after = _TRIVIAL_AFTER.fullmatch(after) is not None
    opener = languages.LANGUAGES[doc.language].block_open if doc.language else None

    if inner_kind in ("args", "literal"):
        blank = not head and not tail
        if blank or (spans_lines and head.endswith(("(", "[", "{", ","))):
            return done(inner_kind, BLOCK_BUCKET if inner_kind == "literal" else LINE_BUCKET, True, inner_type)
        return done(inner_kind, 16 if inner_kind == "args" else LINE_BUCKET, False, inner_type)

    if not head:
        if tail and not trivial_after:
            return done("infill", 16, False, inner_type)
        prev = ""
        for i in range(line - 1, max(-1, line - 50), -1):
            prev = doc.line_text(i).rstrip()
            if prev.strip():
                break
        if prev.endswith(opener or (":", "{")):
            return done("block", BLOCK_BUCKET, True, inner_type)
        return done("statement", LINE_BUCKET, False, inner_type)

    if trivial_after:
        if head.endswith(opener or (":", "{")) and (opener != ":" or not tail):
            return done("block", BLOCK_BUCKET, True, inner_type)
        return done("line", _line_bucket(doc, line, len(before), LINE_BUCKET), False, inner_type)
    return done("infill", 8 if len(tail) < 4 else 16, False, inner_type)
