"""Syntax-error counts: does an edit break code that parsed?

    syntax_errors(text, "python")   # 0 when the text parses; None for a language without a grammar

Used to veto machine-proposed edits that turn valid code invalid (next-edit proposals): an
edit is unwelcome when the text has more errors after it than before. Python is checked by
CPython's own parser (1 when it rejects the text): tree-sitter's Python grammar accepts an
unexpected indent, the commonest way a replaced line breaks a block, and ``ast.parse`` is
also the cheaper of the two. Other languages count tree-sitter's ERROR and MISSING nodes.
It knows grammars (through :mod:`languages`) and nothing about models or editors.
"""

from __future__ import annotations

import ast
import threading
import warnings

from . import languages, ts

_local = threading.local()  # a parser per thread and language (tree-sitter parsers are not thread-safe)


def _parser(language: str):
    cache = getattr(_local, "parsers", None)
    if cache is None:
        cache = _local.parsers = {}
    if language not in cache:
        cache[language] = languages.new_parser(language)
    return cache[language]


def syntax_errors(text: str, language: str | None) -> int | None:
    """How many syntax errors ``text`` has (see module docstring); None when the language has no grammar."""
    if language == "python":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escape sequences and the like are not errors here
                ast.parse(text)
        except (SyntaxError, ValueError):
            return 1
        return 0
    if language not in languages.LANGUAGES:
        return None
    tree = ts.parse(_parser(language), text.encode("utf-8"))
    n, stack = 0, [tree.root_node]
    while stack:  # descend only where an error hides
        node = stack.pop()
        if node.is_error or node.is_missing:
            n += 1
        if node.has_error:
            stack.extend(node.children)
    return n
