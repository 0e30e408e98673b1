"""Definitions, references and imports of one parsed file, from the language's tags query.

The query (``queries/<language>.tags.scm``) marks names by convention:
``@name.definition.<kind>`` on a defined name with ``@definition.<kind>`` on the whole
definition, ``@name.reference.<kind>`` on a used name, and ``@import.module`` on the module
path of an import (with ``@import.name``: a name imported from it, which may itself be a
module). Each definition keeps a short *header* (a signature: the definition up to its
body; for classes and structs, the header plus one line per member) — the text the packer
shows the model.

It knows syntax trees and capture names; it knows nothing about files on disk, the
workspace or ranking.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from . import languages, ts

MAX_HEADER_LINES = 8
MAX_HEADER_CHARS = 400
MAX_MEMBERS = 24
MAX_LEAD = 200  # bytes of code before a definition on its own line that its header may show (minified code)
MAX_DEPTH = 256  # matches starting deeper in the tree are not looked for: the query cursor is quadratic in nesting
CLASS_KINDS = frozenset({"class", "interface"})
_GENERIC = ("function", "constant")  # kinds a more specific pattern (method, field) overrides


@dataclass(frozen=True, slots=True)
class Definition:
    name: str
    kind: str  # function, method, class, interface, type, field, constant, module, macro
    path: str
    line: int  # 0-based first line of the definition
    end_line: int  # 0-based last line
    text: str  # the header: signature, or class header plus member headers

    @property
    def key(self) -> tuple[str, int]:
        return (self.path, self.line)


@dataclass(frozen=True, slots=True)
class FileTags:
    definitions: tuple[Definition, ...]
    references: frozenset[str]
    imports: tuple[str, ...]


def _dedent(text: str, indent: int) -> str:
    if not indent:
        return text
    pad = " " * indent
    out = []
    for ln in text.split("\n"):
        if ln.startswith(pad):
            out.append(ln[indent:])
        else:
            out.append(ln.lstrip(" \t") if not ln[: len(ln) - len(ln.lstrip(" \t"))].strip(" \t") else ln)
    return "\n".join(out)


def _cap(text: str) -> str:
    lines = text.split("\n")
    if len(lines) > MAX_HEADER_LINES:
        text = "\n".join(lines[:MAX_HEADER_LINES]) + "\n..."
    if len(text) > MAX_HEADER_CHARS:
        text = text[:MAX_HEADER_CHARS] + "..."
    return text


def header_of(node, src: bytes) -> str:
    """The definition up to its body (or all of it, capped), dedented to its first line.

    It starts at the start of the definition's line (``export function f``); when more than
    :data:`MAX_LEAD` bytes of code come before the definition on its line (minified code), at most that.
    """
    body = node.child_by_field_name("body")
    line_start = node.start_byte - node.start_point[1]
    if node.start_byte - line_start > MAX_LEAD and src[line_start : node.start_byte].strip():
        line_start = node.start_byte - MAX_LEAD
    end = body.start_byte if body is not None and body.start_byte > node.start_byte else node.end_byte
    text = src[line_start:end].decode("utf-8", "replace").rstrip()
    indent = len(text) - len(text.lstrip(" \t"))
    return _cap(_dedent(text, indent))


def _member_line(header: str) -> str:
    first = header.split("\n", 1)[0].rstrip()
    if first.endswith(":"):
        return first + " ..."
    if first.endswith("{"):
        return first + " ... }"
    return first


def extract_tags(language: str, src: bytes, tree, path: str = "") -> FileTags:
    """Run the language's tags query over a whole tree."""
    q = languages.query(language, "tags")
    if q is None:
        return FileTags((), frozenset(), ())
    acc = _Found()
    for caps in ts.matches(q, tree.root_node, max_depth=MAX_DEPTH):
        acc.add(caps)
    return acc.tags(language, src, path)


def tags_of_spans(language: str, src: bytes, tree, spans: list[tuple[int, int]], path: str = "") -> list[FileTags]:
    """The tags of each byte span (top-level nodes, in text order): one query over the lot, each match
    given to the span holding all its captures. The tags of a file are those of its top-level nodes in turn."""
    q = languages.query(language, "tags")
    if q is None or not spans:
        return [FileTags((), frozenset(), ()) for _ in spans]
    starts = [s for s, _ in spans]
    accs = [_Found() for _ in spans]
    for caps in ts.matches(q, tree.root_node, spans[0][0], spans[-1][1], max_depth=MAX_DEPTH):
        lo = min(n.start_byte for v in caps.values() for n in v)
        hi = max(n.end_byte for v in caps.values() for n in v)
        i = bisect.bisect_right(starts, lo) - 1
        if i >= 0 and hi <= spans[i][1]:  # else a pattern rooted at the file node (Python's module constants)
            accs[i].add(caps)
    return [acc.tags(language, src, path) for acc in accs]


class _Found:
    """What the matches of a tags query found, keyed by definition node; :meth:`tags` builds the headers."""

    def __init__(self) -> None:
        self.found: dict[tuple[int, int], tuple[str, str, object]] = {}
        self.refs: set[str] = set()
        self.imports: list[str] = []

    def add(self, caps: dict) -> None:
        def_node = kind = name = None
        for cname, nodes in caps.items():
            if cname.startswith("name.definition."):
                name, kind = nodes[0], cname[16:]
            elif cname.startswith("definition."):
                def_node = nodes[0]
            elif cname.startswith("name.reference."):
                for n in nodes:
                    self.refs.add(n.text.decode("utf-8", "replace"))
            elif cname == "import.module" and "import.name" not in caps:
                for n in nodes:
                    self.imports.append(n.text.decode("utf-8", "replace").strip("\"'<>`"))
            elif cname == "import.name":
                mod = caps["import.module"][0].text.decode("utf-8", "replace")
                for n in nodes:
                    self.imports.append(mod + ("" if mod.endswith(".") else ".") + n.text.decode("utf-8", "replace"))
        if name is not None:
            node = def_node if def_node is not None else name.parent
            key = (node.start_byte, node.end_byte)
            old = self.found.get(key)
            if old is None or (old[1] in _GENERIC and kind not in _GENERIC):
                self.found[key] = (name.text.decode("utf-8", "replace"), kind, node)

    def tags(self, language: str, src: bytes, path: str) -> FileTags:
        defs = []
        braces = languages.LANGUAGES[language].block_open == "{"
        ordered = sorted(self.found.items())
        for (start, end), (name, kind, node) in ordered:
            text = header_of(node, src)
            if kind in CLASS_KINDS:
                members = _members(start, end, ordered, src)
                if members:
                    text = text + (" {\n" if braces else "\n") + "\n".join(members) + ("\n}" if braces else "")
            defs.append(Definition(name, kind, path, node.start_point[0], node.end_point[0], text))
        return FileTags(tuple(defs), frozenset(self.refs), tuple(dict.fromkeys(self.imports)))


def _members(start: int, end: int, ordered: list, src: bytes) -> list[str]:
    """One line per direct member definition inside [start, end)."""
    out: list[str] = []
    inner_end = -1
    for (s, e), (_, _kind, node) in ordered:
        if s <= start or s >= end or s < inner_end:
            continue
        inner_end = e  # skip definitions nested in this member
        out.append("    " + _member_line(header_of(node, src)))
        if len(out) >= MAX_MEMBERS:
            out.append("    ...")
            break
    return out
