"""Next-edit candidate regions: where a follow-up of the user's last edit may be due.

From the edit (a unified diff of the recent change) and the file as it is now:

* ``rename``: a word the edit replaced by another (``old`` -> ``new``): every other use of
  ``old`` in the file is a candidate; the hole covers that word only.
* ``call``: the edit changed the parameters of ``def name(...)``: the argument list of
  every call of ``name`` (found in the tree-sitter syntax tree) is a candidate.
* ``shape``: lines with the same token shape as the edited line before the edit (names and
  literals abstracted): sibling lines of a repeated pattern; the whole line is a hole.
* ``near``: the line below the edit (the most common place of a follow-up).

Candidates are ranked (rename/call first, then by distance from the cursor) and capped;
the model decides which ones really change. Ranges are character offsets in ``text``.

It knows text, diffs and tree-sitter syntax; nothing of the model, tokens or LSP.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|\"[^\"\n]*\"|'[^'\n]*'|\S")
_WORDS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|\S")  # words inside strings and comments count too
_KEYWORDS = frozenset(
    "False None True and as assert async await break class continue def del elif else except finally for "
    "from global if import in is lambda nonlocal not or pass raise return try while with yield self".split()
)


@dataclass(frozen=True)
class Candidate:
    start: int  # character offsets in the current text
    end: int
    kind: str  # rename | call | shape | near
    hint: str = ""  # rename: the new word

    @property
    def text_range(self) -> tuple[int, int]:
        return self.start, self.end


@dataclass
class EditSummary:
    removed: list[str]
    added: list[str]
    renames: list[tuple[str, str]]  # (old word, new word)
    changed_defs: list[str]  # functions whose parameter list changed


def summarize(diff: str) -> EditSummary:
    """The removed/added lines of a unified diff and the word substitutions between them."""
    removed, added = [], []
    for line in diff.splitlines():
        if line.startswith(("---", "+++", "@@")):
            continue
        if line.startswith("-"):
            removed.append(line[1:])
        elif line.startswith("+"):
            added.append(line[1:])
    a = _WORDS.findall("\n".join(removed))
    b = _WORDS.findall("\n".join(added))
    renames: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op != "replace":
            continue
        olds = [t for t in a[i1:i2] if IDENT.fullmatch(t) and t not in _KEYWORDS]
        news = [t for t in b[j1:j2] if IDENT.fullmatch(t) and t not in _KEYWORDS]
        if len(olds) == len(news):
            pairs = zip(olds, news)
        elif len(olds) == 1 and news:  # foo -> foo.bar / self.foo: the word itself
            pairs = zip(olds, [news[0]])
        else:
            pairs = iter(())
        for o, n in pairs:
            if o != n and (o, n) not in renames:
                renames.append((o, n))
    defs = []
    for old in removed:
        m = re.match(r"\s*(?:async\s+)?def\s+(\w+)\s*\(", old)
        if m and not any(line.strip() == old.strip() for line in added):
            defs.append(m.group(1))
    for new in added:
        m = re.match(r"\s*(?:async\s+)?def\s+(\w+)\s*\(", new)
        if m and removed and m.group(1) not in defs:
            defs.append(m.group(1))
    return EditSummary(removed, added, renames, defs)


def _shape(line: str) -> str:
    return " ".join("N" if IDENT.fullmatch(t) and t not in _KEYWORDS else t for t in _TOKEN.findall(line))


def _call_arguments(text: str, names: list[str], language: str | None) -> list[tuple[int, int]]:
    """(start, end) character ranges inside the parentheses of calls of ``names`` (tree-sitter)."""
    if not names or language != "python":
        return []
    from .document import ParsedDocument

    doc = ParsedDocument(text, language="python")
    tree = doc.tree
    if tree is None:
        return []
    src = text.encode("utf-8")
    out = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "call":
            fn = node.child_by_field_name("function")
            args = node.child_by_field_name("arguments")
            if fn is not None and args is not None and args.type == "argument_list":
                name = src[fn.start_byte : fn.end_byte].decode("utf-8", "replace").rsplit(".", 1)[-1]
                if name in names and args.end_byte - args.start_byte >= 2:
                    a = len(src[: args.start_byte + 1].decode("utf-8", "replace"))
                    b = len(src[: args.end_byte - 1].decode("utf-8", "replace"))
                    if "\n" not in text[a:b]:
                        out.append((a, b))
        stack.extend(node.children)
    return out


def candidates(
    text: str,
    cursor_offset: int,
    diff: str,
    language: str | None = "python",
    max_candidates: int = 10,
    near_lines: int = 1,
) -> list[Candidate]:
    """Candidate regions in ``text`` (the file after the edit) for the follow-ups of ``diff``."""
    ed = summarize(diff)
    lines = text.splitlines(keepends=True)
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln))
    cur_line = max(0, min(len(lines) - 1, text.count("\n", 0, cursor_offset)))
    # the lines of the edit itself (its added lines end at the cursor)
    first = max(0, cur_line - max(1, len(ed.added)) + 1)
    seed = set(range(first, cur_line + 1)) if ed.added else set()

    def line_of(off: int) -> int:
        lo, hi = 0, len(starts) - 1
        while lo < hi - 1:
            mid = (lo + hi) // 2
            if starts[mid] <= off:
                lo = mid
            else:
                hi = mid
        return lo

    found: dict[tuple[int, int], Candidate] = {}
    for old, new in ed.renames:
        for m in re.finditer(rf"(?<![A-Za-z0-9_]){re.escape(old)}(?![A-Za-z0-9_])", text):
            if line_of(m.start()) not in seed:
                found.setdefault((m.start(), m.end()), Candidate(m.start(), m.end(), "rename", new))
    for a, b in _call_arguments(text, ed.changed_defs, language):
        if line_of(a) not in seed and not any(s <= a and b <= e for s, e in found):
            found[(a, b)] = Candidate(a, b, "call")

    def whole_line(i: int, kind: str) -> None:
        if not (0 <= i < len(lines)) or i in seed:
            return
        body = lines[i].rstrip("\r\n")
        if not body.strip():
            return
        lo = starts[i] + len(body) - len(body.lstrip())
        hi = starts[i] + len(body)
        if not any(s < hi and lo < e for s, e in found):
            found[(lo, hi)] = Candidate(lo, hi, kind)

    shapes = {_shape(r) for r in ed.removed if r.strip()}
    if shapes:
        for i, ln in enumerate(lines):
            if _shape(ln) in shapes:
                whole_line(i, "shape")
    for d in range(1, near_lines + 1):
        whole_line(cur_line + d, "near")

    rank = {"rename": 0, "call": 0, "shape": 1, "near": 2}
    ordered = sorted(found.values(), key=lambda c: (rank[c.kind], abs(line_of(c.start) - cur_line)))
    return sorted(ordered[:max_candidates], key=lambda c: c.start)
