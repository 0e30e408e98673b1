"""unmask's extensions to LSP: every custom method name, command and payload type in one place.

Documented for client authors in ``docs/protocol.md``; keep the two in step. Payloads are
``attrs`` classes with camelCase wire names (the converter from :func:`converter` maps them),
so they serialize like lsprotocol's own types.

It knows the wire format only; it knows nothing about models, documents or scheduling.
"""

from __future__ import annotations

from typing import Any

import attrs
from lsprotocol import types
from lsprotocol.converters import get_converter

# -- server -> client ---------------------------------------------------------------------
DRAFT = "unmask/draft"
"""Notification, one per denoising step of an inline completion (clients opt in: ``streamDrafts``)."""

# -- client -> server ---------------------------------------------------------------------
STATS = "unmask/stats"
"""Request: the server's counters (requests, superseded, stale, model calls, feedback...)."""

TIMINGS = "unmask/timings"
"""Request: per-stage timings of the last inline completion requests (parse, context, encode, steps...)."""

DOCUMENT = "unmask/document"
"""Request (debugging): the server's copy of an open document: text, version and syntax tree."""

DID_SHOW = "textDocument/didShowCompletion"
"""Notification (Copilot-compatible): an inline completion item was shown to the user."""

DID_PARTIALLY_ACCEPT = "textDocument/didPartiallyAcceptCompletion"
"""Notification (Copilot-compatible): the user accepted the first ``acceptedLength`` UTF-16 units."""

DID_REJECT = "unmask/didRejectCompletion"
"""Notification: the item was dismissed (Escape, typed over, replaced by another)."""

ACCEPT_COMMAND = "unmask.didAcceptCompletion"
"""``workspace/executeCommand`` command attached to every item; LSP 3.18 clients run it after accepting."""

INLINE_EDIT = "textDocument/copilotInlineEdit"
"""Request (shaped like Copilot's next-edit request): the edits elsewhere that carry on the user's last edit."""

INLINE_EDIT_CAPABILITY = "copilotInlineEditProvider"
"""Key in ``ServerCapabilities.experimental`` saying the server answers :data:`INLINE_EDIT`."""

ACCEPT_EDIT_COMMAND = "unmask.didAcceptNextEdit"
"""``workspace/executeCommand`` command attached to every next edit; clients run it after applying the edit."""


@attrs.define
class DraftParams:
    """One denoising step's draft of the span at ``position`` (the cursor of the request)."""

    text_document: types.VersionedTextDocumentIdentifier
    position: types.Position
    request_id: int | str | None
    step: int
    text: str  # the raw draft of the masked span, before single-line cutting and suffix trimming
    confidence: float
    elapsed_ms: float
    done: bool


@attrs.define
class FeedbackParams:
    """Payload of the feedback notifications: the item as the server sent it."""

    item: types.InlineCompletionItem
    accepted_length: int | None = None  # only for didPartiallyAcceptCompletion


@attrs.define
class InlineEdit:
    """One proposed edit: replace ``range`` (in ``text_document`` at its ``version``) with ``text``."""

    text: str
    text_document: types.VersionedTextDocumentIdentifier
    range: types.Range
    command: types.Command | None = None  # ACCEPT_EDIT_COMMAND: run it after applying the edit


@attrs.define
class InlineEditResult:
    edits: list[InlineEdit]  # non-overlapping, in document order; empty: nothing to propose


@attrs.define
class Stats:
    """Counters since the server started (``unmask/stats``)."""

    requests: int = 0  # inline completion requests received
    answered: int = 0  # answered with at least one item
    empty: int = 0  # answered with no item (gated, nothing useful, disabled language)
    superseded: int = 0  # cancelled by a newer request for the same document (ContentModified)
    stale: int = 0  # computed for a document version that changed meanwhile (ContentModified)
    cancelled: int = 0  # cancelled by the client ($/cancelRequest)
    model_calls: int = 0  # inline completion engine runs started
    type_through: int = 0  # served from the shown suggestion without a model call
    low_confidence: int = 0  # dropped by ``minConfidence``
    shown: int = 0
    accepted: int = 0
    partially_accepted: int = 0
    rejected: int = 0
    edits: int = 0  # content changes recorded in the documents' edit histories
    suppressed: int = 0  # automatic requests not sent to the model: cursor in a comment or string
    next_edit_requests: int = 0  # textDocument/copilotInlineEdit requests received
    next_edit_answered: int = 0  # answered with at least one edit
    next_edit_empty: int = 0  # answered with no edit (no edit history, nothing confident, disabled)
    next_edit_superseded: int = 0  # a newer next-edit request for the same document took over (ContentModified)
    next_edit_stale: int = 0  # the document changed before the answer was ready (ContentModified)
    next_edit_cancelled: int = 0  # cancelled by the client ($/cancelRequest)
    next_edit_model_calls: int = 0  # next-edit model runs started (superseded queued work never starts)
    next_edit_accepted: int = 0  # edits the client applied (ACCEPT_EDIT_COMMAND)
    indexed_files: int = 0  # files in the workspace indexes
    indexing: bool = False  # a workspace index is being built
    model: str = ""  # the loaded model directory ("" while loading or after a failure)
    model_error: str = ""  # why no model is loaded ("" when one is): the message names the file and the fix
    open_requests: int = 0  # requests received and not answered yet (their handlers are running)
    model_jobs: int = 0  # model jobs and calls queued or running on the model thread
    threads: int = 0  # the server's Python threads
    context_cache_mb: float = 0.0  # the engine's context KV caches (bounded: 96 MB in-process, least recently used out)
    memory_releases: int = 0  # free memory returned to the OS by the model thread, idle or between jobs (glibc only)


@attrs.define
class RequestTiming:
    """One inline completion request's stage timings (``unmask/timings``); all times in ms."""

    request_id: int | str | None
    uri: str
    version: int | None
    outcome: str  # items | empty | type-through | superseded | stale | cancelled | comment | string | ...
    stages: dict[str, float]  # stage -> ms; the stages are listed in docs/protocol.md
    steps: list[float]  # wall time of each denoising step
    step_forward: list[float]  # the model's forward pass within each step
    context: dict | None = None  # {span, bucket, budget, used, pieces: [{source, path, line, tokens}]}
    cache: dict | None = None  # {reused, prefilled}: context tokens taken from the engine's cache / run anew


@attrs.define
class TimingsResult:
    requests: list[RequestTiming]  # oldest first


@attrs.define
class DocumentState:
    """The server's copy of an open document (``unmask/document``, for debugging clients and tests)."""

    uri: str
    version: int | None
    language: str | None  # the grammar used; null: plain text (no syntax tree)
    text: str
    tree: str | None  # the syntax tree as an s-expression with byte ranges: (type [start-end] children...)


_converter = None


def converter():
    """lsprotocol's converter: camelCase names, omits ``None`` fields."""
    global _converter
    if _converter is None:
        _converter = get_converter()
    return _converter


def to_wire(obj: Any) -> Any:
    if isinstance(obj, Stats):  # every counter, zeros included (the converter omits defaults)
        return {_camel(k): v for k, v in attrs.asdict(obj).items()}
    return converter().unstructure(obj)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def plain(value: Any) -> Any:
    """JSON-like data from what pygls hands a custom method: it turns objects into namedtuples."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def feedback_from_wire(params: Any) -> FeedbackParams:
    """Structure the params of a feedback notification."""
    return converter().structure(plain(params), FeedbackParams)


def item_id(item: types.InlineCompletionItem) -> str | None:
    """The completion id the server put into the item's accept command."""
    cmd = item.command
    if cmd is None or cmd.command != ACCEPT_COMMAND or not cmd.arguments:
        return None
    return str(cmd.arguments[0])
