"""Next-edit candidate regions: where a follow-up of the user's last edit may be due.

From the edit (a unified diff of the recent change) and the file as it is now:

* ``rename``: a word the edit replaced by another (``old`` -> ``new``) on a line that
  defines ``old`` (:func:`binding`: a def/class name, parameter, import, assignment target):
  every other use of ``old`` is a candidate (:func:`rename_sites`: identifiers, not words in
  strings or comments; a local's or parameter's only in its function, and a parameter's
  ``old=`` keywords at the function's calls); the hole covers that word only.
* ``call``: the edit changed the parameters of ``def name(...)``: the argument list of
  every call of ``name`` (found in the tree-sitter syntax tree) is a candidate. When the
  header parses on both sides (:mod:`unmask.context.signature`), only the calls whose
  arguments must change, each with its new argument list as ``hint``.
* ``shape``: lines with the same token shape as the edited line before the edit (names
  abstracted): sibling lines of a repeated pattern; the whole line is a hole. When the
  edit's change can be made to a line of that shape, names and literals abstracted, as well
  (:func:`replay`), the candidate's ``hint`` is the line with it made.
* ``near``: the line below the edit (the most common place of a follow-up).

Candidates are ranked (rename/call first, then by distance from the cursor) and capped;
the model decides which ones really change. Ranges are character offsets in ``text``.

It knows text, diffs and tree-sitter syntax; nothing of the model, tokens or LSP.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from . import ts
from .signature import call_site_edits, signature_change

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
    hint: str = ""  # rename: the new word; shape: the line with the edit replayed on it; call: the new arguments

    @property
    def text_range(self) -> tuple[int, int]:
        return self.start, self.end


@dataclass
class EditSummary:
    removed: list[str]
    added: list[str]
    renames: list[tuple[str, str, str]]  # (old word, new word, how the line defined it: :func:`binding`)
    changed_defs: list[str]  # functions whose parameter list changed


def summarize(diff: str) -> EditSummary:
    """The removed/added lines of a unified diff, the renames among them, the changed ``def`` headers.

    A rename is a word replaced by one word, within a line that otherwise stays (see
    :func:`_line_pairs`), where the line defines the word (:func:`binding`).
    """
    removed, added = [], []
    for line in diff.splitlines():
        if line.startswith(("---", "+++", "@@")):
            continue
        if line.startswith("-"):
            removed.append(line[1:])
        elif line.startswith("+"):
            added.append(line[1:])
    renames: list[tuple[str, str, str]] = []
    for r, ad in _line_pairs(removed, added, headers=True):  # a word changed within a line that stays
        a, b = _WORDS.findall(r), _WORDS.findall(ad)
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
            if op != "replace":
                continue
            olds = [t for t in a[i1:i2] if IDENT.fullmatch(t) and t not in _KEYWORDS]
            news = [t for t in b[j1:j2] if IDENT.fullmatch(t) and t not in _KEYWORDS]
            if len(olds) != len(news):
                continue  # not word for word (``output`` -> ``runner, output_bytes``): no rename
            for o, n in zip(olds, news):
                kind = binding(o, r)
                if o != n and kind and all(x[0] != o for x in renames):
                    renames.append((o, n, kind))
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


def _top_level_assign(line: str) -> int:
    """Index of the line's assignment ``=`` (also ``+=`` etc., not ``==``/``<=``/``=>``) outside brackets, or -1."""
    depth, quote = 0, ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "#":
            return -1
        elif ch == "=" and depth == 0:
            nxt, prev = line[i + 1 : i + 2], line[i - 1 : i]
            if nxt != "=" and prev not in ("=", "!", "<", ">"):
                return i
    return -1


def binding(word: str, line: str) -> str | None:
    """How ``line`` defines ``word``, or None where it does not (Python syntax; a heuristic on one line).

    "definition" (``def``/``class``), "parameter", "import", "local" (an assignment, loop or
    ``as`` target) or "attribute" (``self.word = ...``). What a rename starts from: changing a
    name where it is defined renames it, and its other uses follow; changing it where it is
    used (``foo()`` -> ``bar()``) uses something else, and the other uses of ``foo`` stay.
    """
    w = re.escape(word)
    s = line.strip()
    if re.match(rf"(?:async\s+)?(?:def|class)\s+{w}\b", s):
        return "definition"
    m = re.match(r"(?:async\s+)?def\s+\w+\s*\((.*)", s)
    if m:  # a parameter: the word before ``:``/``=``/``,``/``)`` at the top level of the list
        return "parameter" if re.search(rf"(?:^|[(,*]\s*){w}\s*(?:[:=,)]|$)", m.group(1)) else None
    if re.match(rf"(?:from\s+\S+\s+)?import\s+.*(?<![\w.]){w}\b", s):
        return "import"
    if re.match(rf"for\s+[^:]*?(?<![\w.]){w}\b[^:]*?\bin\b", s) or re.search(rf"\bas\s+{w}\b", s):
        return "local"
    eq = _top_level_assign(s)
    if eq > 0 and re.search(rf"\.\s*{w}\b", s[:eq]):
        return "attribute"
    if eq > 0 and re.search(rf"(?<![\w.]){w}\b", s[:eq]):
        return "local"
    return None


def rename_sites(text: str, tree, old: str, kind: str, cursor_offset: int) -> list[tuple[int, int]] | None:
    """Where the other uses of a renamed name are (character ranges); None without a Python ``tree`` of ``text``.

    Identifiers only, so words in strings and comments stay. A parameter's or a local's
    uses are those in the innermost function around the cursor (another function's ``old`` is
    another variable), plus, for a parameter, its ``old=`` keywords in calls of that function.
    """
    if tree is None:
        return None
    src = text.encode("utf-8")
    at = len(text[:cursor_offset].encode("utf-8"))
    scope = None
    if kind in ("parameter", "local"):
        node = tree.root_node.descendant_for_byte_range(max(0, at - 1), max(0, at - 1))
        while node is not None and node.type != "function_definition":
            node = node.parent
        scope = node  # None at module level: the whole file
    fname = scope.child_by_field_name("name") if scope is not None and kind == "parameter" else None
    fname_text = src[fname.start_byte : fname.end_byte].decode() if fname is not None else None
    word = old.encode("utf-8")
    out = []
    for node in ts.walk(tree.root_node):
        if node.type == "identifier" and src[node.start_byte : node.end_byte] == word:
            inside = scope is None or scope.start_byte <= node.start_byte < scope.end_byte
            if not inside and fname_text and node.parent is not None and node.parent.type == "keyword_argument":
                call = node.parent.parent.parent if node.parent.parent is not None else None
                fn = call.child_by_field_name("function") if call is not None and call.type == "call" else None
                callee = src[fn.start_byte : fn.end_byte].decode("utf-8", "replace") if fn is not None else ""
                inside = callee.rsplit(".", 1)[-1] == fname_text and node.parent.child_by_field_name("name") == node
            if inside:
                out.append(
                    (
                        len(src[: node.start_byte].decode("utf-8", "replace")),
                        len(src[: node.end_byte].decode("utf-8", "replace")),
                    )
                )
    return sorted(out)


_RTOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|\"[^\"\n]*\"|'[^'\n]*'|\s+|\S")  # _TOKEN plus whitespace runs


def replay(removed: str, added: str, line: str) -> str | None:
    """``line`` with the change ``removed`` -> ``added`` made to it too, or None where it does not carry over.

    The change is the token diff of ``removed`` and ``added``. It carries over to ``line`` when
    ``line`` has the same tokens as ``removed`` position by position except for names,
    literals and whitespace, and every token the change replaces or deletes is the same in
    ``line``: the same change where the same text is; an insertion goes to the same place.
    Names and literals that differ between the two lines are swapped inside inserted text,
    except after a dot (``foo(a)`` -> ``foo(a, a.x)`` carries to ``foo(b)`` as ``foo(b, b.x)``).
    A change of a line's own values does not carry: ``f(x, 3)`` -> ``f(x, 5)`` says nothing
    about ``f(x, 4)``, nor ``f(x)`` -> ``f(y)`` about ``f(z)``: the replaced token differs.
    """
    indent = line[: len(line) - len(line.lstrip())]  # indentation is the line's own: not compared
    tr, ta, ts = (_RTOKEN.findall(x.strip()) for x in (removed, added, line))
    if len(tr) != len(ts) or tr == ta:
        return None
    names: dict[str, str] = {}
    for x, y in zip(tr, ts):
        if x == y or (x.isspace() and y.isspace()):
            continue
        kind = _shape(x, literals=True)
        if x.isspace() or y.isspace() or kind not in ("N", "L") or _shape(y, literals=True) != kind:
            return None  # not the same shape
        if names.setdefault(x, y) != y:
            return None  # one name in ``removed`` stands for two in ``line``: ambiguous
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=tr, b=ta, autojunk=False).get_opcodes():
        if op == "equal":
            out += ts[i1:i2]
            continue
        if [t for t in tr[i1:i2] if not t.isspace()] != [t for t in ts[i1:i2] if not t.isspace()]:
            return None  # the change replaces or deletes text that is different in ``line``
        for j in range(j1, j2):
            out.append(ta[j] if j and ta[j - 1] == "." else names.get(ta[j], ta[j]))
    new = indent + "".join(out)
    return new if new.strip() and new.rstrip() != line.rstrip() else None


_DEF = re.compile(r"\s*(?:async\s+)?(?:def|class)\s")


def _line_pairs(removed: list[str], added: list[str], headers: bool = False) -> list[tuple[str, str]]:
    """(before, after) line pairs of an edit: changed lines.

    From its replaced blocks of equal length, line by line, where the two lines are mostly
    the same (a changed line, not one line swapped for another). Unless ``headers``, a ``def``
    or ``class`` header is left out: a change to it belongs to that definition and does not
    carry over to other lines (its call sites are ``call`` candidates).
    """
    pairs = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=removed, b=added, autojunk=False).get_opcodes():
        if op != "replace" or i2 - i1 != j2 - j1:
            continue
        for r, a in zip(removed[i1:i2], added[j1:j2]):
            r, a = r.rstrip("\r"), a.rstrip("\r")
            if r.strip() and (headers or not _DEF.match(r)) and difflib.SequenceMatcher(a=r, b=a).ratio() >= 0.5:
                pairs.append((r, a))
    return pairs


_LITERAL = re.compile(r"\d+|\"[^\"\n]*\"|'[^'\n]*'")


def _shape(line: str, literals: bool = False) -> str:
    """The line's tokens with names abstracted (``N``), and with ``literals`` numbers and strings too (``L``)."""
    return " ".join(
        "N" if IDENT.fullmatch(t) and t not in _KEYWORDS else "L" if literals and _LITERAL.fullmatch(t) else t
        for t in _TOKEN.findall(line)
    )


def _call_arguments(text: str, tree, names: list[str]) -> list[tuple[int, int]]:
    """(start, end) character ranges inside the parentheses of calls of ``names``, from the tree of ``text``."""
    if not names or tree is None:
        return []
    src = text.encode("utf-8")
    out = []
    for node in ts.walk(tree.root_node):
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

    # lines of the edited line's shape, and the edit's change made to them where it carries over
    pairs = _line_pairs(ed.removed, ed.added)
    shapes = {_shape(r) for r in ed.removed if r.strip()}
    loose = {_shape(r, literals=True) for r, _ in pairs}
    shaped: dict[int, str] = {}
    for i, ln in enumerate(lines):
        body = ln.rstrip("\r\n")
        if i in seed or not body.strip():
            continue
        hint = ""
        if _shape(body, literals=True) in loose:
            hint = next((h for r, a in pairs if (h := replay(r, a, body))), "")
        if hint or _shape(body) in shapes:
            shaped[i] = hint.strip()

    tree = None  # one parse of the text serves every rule that reads the syntax tree
    if language == "python" and (ed.renames or ed.changed_defs):
        from .document import ParsedDocument

        tree = ParsedDocument(text, language="python").tree
    found: dict[tuple[int, int], Candidate] = {}
    for old, new, kind in ed.renames:
        sites = rename_sites(text, tree, old, kind, cursor_offset)
        if sites is None:
            sites = [m.span() for m in re.finditer(rf"(?<![A-Za-z0-9_]){re.escape(old)}(?![A-Za-z0-9_])", text)]
        for a, b in sites:
            i = line_of(a)
            if i not in seed and not shaped.get(i):  # a replayed line says the whole change
                found.setdefault((a, b), Candidate(a, b, "rename", new))
    # a changed signature whose headers parse: its call sites are rewritten by rule; the others ask the model
    changes = [c for r in ed.removed for a in ed.added if (c := signature_change(r, a))] if language == "python" else []
    for change in changes:
        for a, b, args in call_site_edits(text, change, tree):
            i = line_of(a)
            if i not in seed and not shaped.get(i) and not any(s < b and a < e for s, e in found):
                found[(a, b)] = Candidate(a, b, "call", args)
    ruled = {c.old.name for c in changes}
    for a, b in _call_arguments(text, tree, [d for d in ed.changed_defs if d not in ruled]):
        i = line_of(a)
        if i not in seed and not shaped.get(i) and not any(s < b and a < e for s, e in found):  # no overlap
            found[(a, b)] = Candidate(a, b, "call")

    def whole_line(i: int, kind: str, hint: str = "") -> None:
        if not (0 <= i < len(lines)) or i in seed:
            return
        body = lines[i].rstrip("\r\n")
        if not body.strip():
            return
        lo = starts[i] + len(body) - len(body.lstrip())
        hi = starts[i] + len(body)
        if not any(s < hi and lo < e for s, e in found):
            found[(lo, hi)] = Candidate(lo, hi, kind, hint)

    for i, hint in shaped.items():
        whole_line(i, "shape", hint)
    for d in range(1, near_lines + 1):
        whole_line(cur_line + d, "near")

    rank = {"rename": 0, "call": 0, "shape": 1, "near": 2}
    ordered = sorted(found.values(), key=lambda c: (rank[c.kind], abs(line_of(c.start) - cur_line)))
    return sorted(ordered[:max_candidates], key=lambda c: c.start)
