"""The language table: file extensions and LSP language ids → a grammar wheel and its queries.

One table (:data:`LANGUAGES`) says, per language, which grammar wheel provides it, how a
line comment starts (used to label snippets shown to the model), which character opens a
block, and which ``.scm`` query files (in ``unmask.context/queries``, loaded with
importlib.resources) describe its tags and span nodes. :data:`EXTENSIONS` maps file
extensions onto it. Loaded grammars and compiled queries are cached per process.

It knows grammar wheels and file names; it knows nothing about what the queries capture
(see ``tags.py`` and ``spans.py``). A file whose language is unknown is plain text: callers
get ``None`` and carry on without a tree.
"""

from __future__ import annotations

import functools
import importlib
import importlib.resources
import os
import threading
from dataclasses import dataclass

from . import ts


@dataclass(frozen=True)
class LanguageSpec:
    name: str
    module: str  # the grammar wheel's import name
    func: str = "language"  # the function in it that returns the language capsule
    comment: str = "//"  # line comment prefix
    block_open: str = "{"  # a line ending with this opens a block
    queries: str = ""  # base name of queries/<queries>.{tags,spans}.scm; defaults to name
    lsp_ids: tuple[str, ...] = ()

    @property
    def query_name(self) -> str:
        return self.queries or self.name


LANGUAGES: dict[str, LanguageSpec] = {
    s.name: s
    for s in (
        LanguageSpec("python", "tree_sitter_python", comment="#", block_open=":", lsp_ids=("python",)),
        LanguageSpec("javascript", "tree_sitter_javascript", lsp_ids=("javascript", "javascriptreact")),
        LanguageSpec("typescript", "tree_sitter_typescript", "language_typescript", lsp_ids=("typescript",)),
        LanguageSpec(
            "tsx", "tree_sitter_typescript", "language_tsx", queries="typescript", lsp_ids=("typescriptreact",)
        ),
        LanguageSpec("go", "tree_sitter_go", lsp_ids=("go",)),
        LanguageSpec("rust", "tree_sitter_rust", lsp_ids=("rust",)),
        LanguageSpec("java", "tree_sitter_java", lsp_ids=("java",)),
        LanguageSpec("c", "tree_sitter_c", lsp_ids=("c",)),
        LanguageSpec("cpp", "tree_sitter_cpp", lsp_ids=("cpp", "cuda-cpp")),
    )
}

EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp",
    ".hh": "cpp", ".hpp": "cpp", ".hxx": "cpp", ".h++": "cpp", ".ipp": "cpp", ".cu": "cpp",
}  # fmt: skip

_BY_LSP_ID = {i: s.name for s in LANGUAGES.values() for i in s.lsp_ids}
_lock = threading.Lock()


def language_for_path(path: str | os.PathLike) -> str | None:
    """The language name for a file path, or None (plain text)."""
    return EXTENSIONS.get(os.path.splitext(os.fspath(path))[1].lower())


def language_for_id(language_id: str | None, path: str | os.PathLike | None = None) -> str | None:
    """The language for an LSP ``languageId`` (falling back on the path's extension)."""
    if language_id in LANGUAGES:
        return language_id
    if language_id in _BY_LSP_ID:
        return _BY_LSP_ID[language_id]
    return language_for_path(path) if path is not None else None


def spec(name: str) -> LanguageSpec:
    return LANGUAGES[name]


@functools.cache
def grammar(name: str):
    """The tree-sitter Language of ``name`` (imports its wheel once)."""
    s = LANGUAGES[name]
    mod = importlib.import_module(s.module)
    return ts.make_language(getattr(mod, s.func)())


def new_parser(name: str):
    return ts.make_parser(grammar(name))


def query_text(name: str, kind: str) -> str:
    """The text of ``queries/<language>.<kind>.scm`` ('' if the language has none)."""
    res = importlib.resources.files(__package__).joinpath("queries", f"{LANGUAGES[name].query_name}.{kind}.scm")
    return res.read_text(encoding="utf-8") if res.is_file() else ""


@functools.cache
def _query(name: str, kind: str):
    text = query_text(name, kind)
    return ts.make_query(grammar(name), text) if text.strip() else None


def query(name: str, kind: str):
    """The compiled ``kind`` query ('tags' or 'spans') of a language, or None."""
    with _lock:  # compiling is not reentrant-safe under functools.cache races
        return _query(name, kind)
