"""Repository context for completions: tree-sitter parsing, span selection, a workspace
index and relevance-ranked packing into a token budget.

What the language server calls::

    doc = ParsedDocument(text, language_for_id(language_id, path), path)   # didOpen
    doc.apply_edit((l0, c0), (l1, c1), new_text)                            # each didChange change
    index = WorkspaceIndex(root); index.start(progress)                     # initialized
    index.update_file(path)                                                 # didSave
    index.on_watched_files([(path, kind), ...])                             # didChangeWatchedFiles
    span = select_span(doc, line, character)                                # suggest? what shape?
    res = gather_context(doc, line, character, index=index, open_docs=docs, count_tokens=tok.count)
    pieces, buckets = res.engine_pieces()

It never imports torch, onnxruntime, pygls or lsprotocol (a test keeps it so): positions
are plain (line, character) pairs in the client's position encoding (UTF-16 by default).
"""

from .document import EditRecord, ParsedDocument
from .index import IndexConfig, IndexStats, WorkspaceIndex
from .languages import EXTENSIONS, LANGUAGES, language_for_id, language_for_path
from .pack import ALL_SOURCES, ContextConfig, ContextResult, gather_context
from .sources import SOURCES, Piece
from .spans import SpanChoice, SpanConfig, select_span
from .tags import Definition, FileTags, extract_tags

__all__ = [
    "ALL_SOURCES", "EXTENSIONS", "LANGUAGES", "SOURCES",
    "ContextConfig", "ContextResult", "Definition", "EditRecord", "FileTags", "IndexConfig", "IndexStats",
    "ParsedDocument", "Piece", "SpanChoice", "SpanConfig", "WorkspaceIndex",
    "extract_tags", "gather_context", "language_for_id", "language_for_path", "select_span",
]  # fmt: skip
