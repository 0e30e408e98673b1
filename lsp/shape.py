"""What to ask the model for at a cursor, and how to turn its answer into a suggestion.

* :func:`choose_span` picks the span: one line or a block. It is the single place that
  decides; today it asks :func:`auto_bucket` (text around the cursor), later the
  tree-sitter span selection from :mod:`unmask.context` slots in here.
* :func:`shape` turns a raw span text into what is shown: cut at the first newline in
  single-line mode, never repeat what the suffix already holds, drop empty answers.
* :class:`Suggestion` remembers a shown suggestion so characters typed into it are served
  from it (type-through) without a model call.

Pure text in, text out, on code-point strings: it knows nothing about LSP positions,
documents, versions or the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class Span:
    bucket: int  # slots the model may fill
    multiline: bool


def auto_bucket(prefix: str, suffix: str) -> int:
    """A line or a block, from the text alone (until the tree-sitter span selection is wired in)."""
    from unmask.engine.infill import BLOCK_BUCKET, LINE_BUCKET

    line = prefix[prefix.rfind("\n") + 1 :]
    rest = suffix.split("\n", 1)[0]
    if not rest.strip() and line.rstrip().endswith((":", "{", "(", "[")):
        return BLOCK_BUCKET
    if not line.strip() and not rest.strip():
        return BLOCK_BUCKET
    return LINE_BUCKET


def choose_span(prefix: str, suffix: str, language_id: str | None = None) -> Span:
    """Single line or block for a cursor between ``prefix`` and ``suffix`` (the one swappable choice)."""
    from unmask.engine.infill import LINE_BUCKET

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
