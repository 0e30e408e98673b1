"""Where to cut the start of a long text so that the cut stays put while the user types at its end.

The model's context cache holds only while the context's start stays where it was: a context cut
to fit the window at the first line start that fits moved down a line whenever typing pushed the
text over the budget (about one keystroke in ten in an ordinary file), and each move prefilled the
whole window again (hundreds of milliseconds on two CPU cores). :func:`stable_line_start` cuts at
an *anchor line* instead: a blank line, or a line whose text hashes to 0 modulo
:data:`LINE_EVERY`; anchors are the same lines whatever the window, so the start stays put until
typing pushes it past its anchor. At most a quarter of the context is given up for it (with no
anchor line there, the first line start it is).

A line longer than the window (minified code, a data file on one line) has no line start to cut
at, and a cut counted back from the end moved with every keystroke. :func:`stable_start` moves
such a cut right to the next *content-defined* anchor:
a position whose preceding :data:`WIDTH` characters hash to 0 modulo :data:`EVERY`, so anchors
sit at the same characters whatever the text's start and end, one every ~``EVERY`` characters.
The cut then stays put until typing has pushed it past its anchor. Text that repeats with a
short period may have no anchor at all; then the first position of the smallest hash in reach
serves, which recurs with the period.

Pure Python; it knows strings, nothing of tokens, models or editors (``context`` uses it too).
"""

from __future__ import annotations

import zlib

WIDTH = 8  # characters hashed before a candidate position
EVERY = 128  # one anchor per this many positions, on average
SPAN = 1024  # how far right of the cut an anchor is looked for (else the cut stays where it was)
LINE_EVERY = 8  # one anchor line in this many non-blank lines, on average (and every blank line)
LINE_SHARE = 0.25  # the share of the text after a cut searched for an anchor line (else the first line start)


def _line_key(line: str) -> int:
    return zlib.crc32(line.strip().encode("utf-8", "surrogatepass"))  # a blank line hashes to 0: an anchor


def stable_line_start(text: str, start: int) -> int | None:
    """The start of the first anchor line at or after ``start`` within the first :data:`LINE_SHARE` of what
    follows ``start`` (at most that much context is given up for a cut that stays put); with none there,
    the first line start. None when no line starts at or after ``start`` (one long line)."""
    if start <= 0:
        p = 0
    elif text[start - 1] == "\n":
        p = start
    else:
        nl = text.find("\n", start)
        if nl < 0:
            return None
        p = nl + 1
    first, limit = p, start + int((len(text) - start) * LINE_SHARE)
    while p <= limit:
        e = text.find("\n", p)
        if e < 0:  # the last line (the cursor's): kept
            break
        if _line_key(text[p:e]) % LINE_EVERY == 0:
            return p
        p = e + 1
    return first


def stable_start(text: str, start: int) -> int:
    """``start``, moved right to the first anchor in ``text[start : start + SPAN]``; with none there (text
    that repeats with a short period can have none at all), to the first position of the smallest hash
    there, which also recurs with the text; ``start`` itself only when the text is shorter than that."""
    if start <= 0:
        return 0
    best, at = None, start
    for p in range(max(start, WIDTH), min(len(text), start + SPAN)):
        h = zlib.crc32(text[p - WIDTH : p].encode("utf-8", "surrogatepass"))
        if h % EVERY == 0:
            return p
        if best is None or h < best:
            best, at = h, p
    return at
