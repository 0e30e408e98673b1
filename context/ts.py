"""The one shim over py-tree-sitter's API differences (0.22 – 0.26).

Everything else in ``unmask.context`` calls these functions instead of the binding
directly: building a ``Language`` from a grammar wheel's capsule, a parser, a query, running
a query (optionally limited to a byte range), and describing an edit to a tree.

It knows the binding's API; it knows nothing about languages, files or completions.
"""

from __future__ import annotations

from collections.abc import Iterator

import tree_sitter as _ts

Node = _ts.Node
Tree = _ts.Tree
Query = _ts.Query

_HAS_CURSOR = hasattr(_ts, "QueryCursor")  # 0.25+: queries run through a QueryCursor
_HAS_POINT = hasattr(_ts, "Point")


def make_language(capsule: object) -> _ts.Language:
    """A Language from a grammar wheel's ``language()`` capsule."""
    return _ts.Language(capsule)


def make_parser(language: _ts.Language) -> _ts.Parser:
    try:
        return _ts.Parser(language)  # 0.23+
    except TypeError:  # 0.22: language set afterwards
        p = _ts.Parser()
        p.set_language(language)
        return p


def make_query(language: _ts.Language, source: str) -> _ts.Query:
    try:
        return _ts.Query(language, source)  # 0.23+
    except TypeError:
        return language.query(source)  # 0.22


def parse(parser: _ts.Parser, source: bytes, old_tree: _ts.Tree | None = None) -> _ts.Tree:
    return parser.parse(source, old_tree) if old_tree is not None else parser.parse(source)


def matches(
    query: _ts.Query,
    node: _ts.Node,
    start_byte: int | None = None,
    end_byte: int | None = None,
    max_depth: int | None = None,
) -> Iterator[dict]:
    """Yield each match as ``{capture name: [nodes]}``; optionally only matches touching [start, end), and
    (0.25+; older bindings ignore it) only matches whose first node is at most ``max_depth`` below ``node``."""
    if _HAS_CURSOR:
        cur = _ts.QueryCursor(query)
        if start_byte is not None:
            cur.set_byte_range(start_byte, end_byte if end_byte is not None else start_byte + 1)
        if max_depth is not None:
            cur.set_max_start_depth(max_depth)
        for _, caps in cur.matches(node):
            yield caps
        return
    kw = {} if start_byte is None else {"start_byte": start_byte, "end_byte": end_byte or start_byte + 1}
    for _, caps in query.matches(node, **kw):  # 0.23/0.24 shape: (pattern, {name: node | [nodes]})
        yield {k: v if isinstance(v, list) else [v] for k, v in caps.items()}


def captures(query: _ts.Query, node: _ts.Node, start_byte: int | None = None, end_byte: int | None = None) -> dict:
    """``{capture name: [nodes]}`` for the whole node or for [start, end)."""
    if _HAS_CURSOR:
        cur = _ts.QueryCursor(query)
        if start_byte is not None:
            cur.set_byte_range(start_byte, end_byte if end_byte is not None else start_byte + 1)
        return cur.captures(node)
    kw = {} if start_byte is None else {"start_byte": start_byte, "end_byte": end_byte or start_byte + 1}
    got = query.captures(node, **kw)
    if isinstance(got, dict):  # 0.23/0.24
        return got
    out: dict[str, list] = {}
    for n, name in got:  # 0.22: [(node, name)]
        out.setdefault(name, []).append(n)
    return out


def walk(node: _ts.Node) -> Iterator[_ts.Node]:
    """``node`` and every node below it, depth first (last child first)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(n.children)


def point(row: int, column: int):
    return _ts.Point(row, column) if _HAS_POINT else (row, column)


def edit_tree(
    tree: _ts.Tree,
    start_byte: int,
    old_end_byte: int,
    new_end_byte: int,
    start: tuple[int, int],
    old_end: tuple[int, int],
    new_end: tuple[int, int],
) -> None:
    """Tell ``tree`` that bytes [start, old_end) became [start, new_end); points are (row, byte column)."""
    tree.edit(
        start_byte=start_byte,
        old_end_byte=old_end_byte,
        new_end_byte=new_end_byte,
        start_point=point(*start),
        old_end_point=point(*old_end),
        new_end_point=point(*new_end),
    )
