"""Where to cut the start of a long text so that the cut stays put while the user types at its end.

A context that is cut to fit a window starts at a line start where it can: typing at the end then
leaves the start, and so the model's cached context, as it was. A line longer than the window
(minified code, a data file on one line) has no line start to cut at, and a cut counted back from
the end moved with every keystroke: each one prefilled the whole window again (about a second on
two CPU cores). :func:`stable_start` moves such a cut right to the next *content-defined* anchor:
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
