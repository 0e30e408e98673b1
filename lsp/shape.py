"""What to ask the model for at a cursor, and how to turn its answer into a suggestion.

* :func:`choose_span` picks the span: its kind, its bucket (slots), one line or a block,
  and whether an automatic suggestion should be suppressed there (comment, string,
  mid-word). It is the single place that decides: from the syntax tree around the cursor
  (:func:`unmask.context.select_span`) when the document has one, else from the text
  alone (:func:`auto_bucket`, for languages without a grammar).
* :func:`shape` turns a raw span text into what is shown: cut at the first newline in
  single-line mode, never repeat what the suffix already holds, drop empty answers.
* :class:`Suggestion` remembers a shown suggestion so characters typed into it are served
  from it (type-through) without a model call.

Text in, text out, on code-point strings (``choose_span`` also reads the context layer's
parsed document at an LSP position): it knows nothing about LSP types, versions or the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module; unmask.context loads tree-sitter (~70 ms)
    from unmask.context import ParsedDocument, SpanChoice

_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class Span:
    bucket: int  # slots the model may fill
    multiline: bool
    kind: str = "auto"  # block | statement | args | literal | line | infill (syntax tree); auto (text)
    suppress_reason: str | None = None  # comment | string | mid-word: no automatic suggestion here
    choice: SpanChoice | None = None  # the context layer's choice, when a syntax tree decided
    ms: float = 0.0


def auto_bucket(prefix: str, suffix: str) -> int:
    """A line or a block, from the text alone (documents without a syntax tree)."""
    from unmask.engine.infill import BLOCK_BUCKET, LINE_BUCKET

    line = prefix[prefix.rfind("\n") + 1 :]
    rest = suffix.split("\n", 1)[0]
    if not rest.strip() and line.rstrip().endswith((":", "{", "(", "[")):
        return BLOCK_BUCKET
    if not line.strip() and not rest.strip():
        return BLOCK_BUCKET
    return LINE_BUCKET


def choose_span(
    prefix: str,
    suffix: str,
    doc: ParsedDocument | None = None,
    at: tuple[int, int] = (0, 0),
    encoding: str = "utf-16",
) -> Span:
    """The span for a cursor between ``prefix`` and ``suffix``, at ``at`` (line, character) of ``doc``.

    With a syntax tree (``doc`` in a language with a grammar) the tree decides; otherwise the text.
    """
    from unmask.engine.infill import LINE_BUCKET

    if doc is not None and doc.tree is not None:
        from unmask.context import select_span

        c = select_span(doc, at[0], at[1], encoding=encoding)
        return Span(c.bucket, c.multiline, c.kind, c.suppress_reason, c, c.ms)
    bucket = auto_bucket(prefix, suffix)
    return Span(bucket, multiline=bucket != LINE_BUCKET)


def automatic_allowed(prefix: str, suffix: str) -> bool:
    """Unasked-for suggestions only where they cannot split a word: not right before a word character."""
    rest = suffix.split("\n", 1)[0]
    return not (rest and _WORD.match(rest[0]))


def shape(raw: str, suffix: str, multiline: bool) -> str | None:
    """The suggestion to show for the model's span text ``raw``; ``None`` when nothing is worth showing."""
    text = raw if multiline else raw.split("\n", 1)[0]
    rest, _, after = suffix.partition("\n")
    if multiline:
        text = _stop_at_suffix(text, after)
        text = text.rstrip()
    if not rest.strip():
        text = text.rstrip()
    else:
        text = _trim_rest_overlap(text, rest.rstrip())
    return text if text.strip() else None


def _trim_rest_overlap(text: str, rest: str) -> str:
    """Drop the completion's tail where it equals the start of the rest of the line (``foo(x)`` before ``)``)."""
    for k in range(min(len(text), len(rest)), 0, -1):
        head = rest[:k]
        if text.endswith(head) and (k == len(rest) or not head.isalnum()):
            return text[:-k]
    return text


def _stop_at_suffix(text: str, after: str) -> str:
    """Cut a multi-line completion where it starts repeating the next non-blank line of the suffix."""
    nxt = next((ln.strip() for ln in after.split("\n") if ln.strip()), "")
    if not nxt:
        return text
    lines = text.split("\n")
    for i, ln in enumerate(lines[1:], 1):
        if ln.strip() == nxt:
            return "\n".join(lines[:i])
    return text


@dataclass(frozen=True)
class Suggestion:
    """A suggestion shown at the cursor between ``prefix`` and ``suffix`` (the whole document around it)."""

    id: str
    prefix: str
    suffix: str
    text: str
    multiline: bool

    def continue_at(self, prefix: str, suffix: str) -> str | None:
        """The rest of this suggestion if the user typed its first characters (and nothing else); else None."""
        if suffix != self.suffix or len(prefix) < len(self.prefix) or not prefix.startswith(self.prefix):
            return None
        typed = prefix[len(self.prefix) :]
        if not self.text.startswith(typed):
            return None
        rest = self.text[len(typed) :]
        return rest if rest.strip() else None
