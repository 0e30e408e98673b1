"""All conversion between LSP types and the server's own values, in one place.

Positions become text offsets and back only through pygls' document position codec, so the
client's encoding (UTF-16 unless negotiated otherwise) is honoured; nothing here counts
characters by hand. Completions go out as ``InlineCompletionList`` items whose ``range``
runs from the start of the cursor's line to the cursor and whose ``insertText`` repeats the
line's text before the cursor: what the user typed and the suggestion always agree, and a
client can render or filter the item without knowing where the request was made.

Next-edit requests (``textDocument/copilotInlineEdit``) become :class:`~unmask.lsp.next_edit.EditRequest`
snapshots with the cursor in UTF-16 (what :mod:`unmask.lsp.nes` works in); their edits go back
as ``{edits: [{text, textDocument: {uri, version}, range, command}]}`` in the client's encoding,
through a codec over the snapshot's text (the live document may have moved on).

It knows lsprotocol and pygls documents; it knows nothing about the model or scheduling.
"""

from __future__ import annotations

from lsprotocol import types
from pygls.workspace import TextDocument

from unmask.engine.infill import InfillDraft

from . import nes
from .completer import Edit, Request
from .next_edit import EditOutcome, EditRequest
from .protocol import (
    ACCEPT_COMMAND,
    ACCEPT_EDIT_COMMAND,
    DraftParams,
    InlineEdit,
    InlineEditResult,
    RequestTiming,
    TimingsResult,
)
from .timings import Trace


def request(doc: TextDocument, params: types.InlineCompletionParams, request_id: int | str | None) -> Request:
    """The document text around the cursor of an inline completion request."""
    off = doc.offset_at_position(params.position)
    src = doc.source
    return Request(
        uri=doc.uri,
        version=doc.version,
        language_id=doc.language_id,
        prefix=src[:off],
        suffix=src[off:],
        invoked=params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked,
        cursor=(params.position.line, params.position.character),
        request_id=request_id,
    )


def inline_list(
    doc: TextDocument, position: types.Position, req: Request, text: str | None, completion_id: str | None
) -> types.InlineCompletionList:
    """The suggestion ``text`` (to insert at the cursor) as a one-item list; an empty list for None."""
    if text is None:
        return types.InlineCompletionList(items=[])
    line_start = req.prefix.rfind("\n") + 1
    typed = req.prefix[line_start:]
    start = doc.client_position_at_offset(line_start)
    item = types.InlineCompletionItem(
        insert_text=typed + text,
        range=types.Range(start=start, end=position),
        command=types.Command(title="unmask: completion accepted", command=ACCEPT_COMMAND, arguments=[completion_id]),
    )
    return types.InlineCompletionList(items=[item])


class BadParams(ValueError):
    """A request's params do not have the documented shape."""


def inline_edit_target(params: dict) -> tuple[str, int | None, types.Position]:
    """``(uri, version or None, position)`` of ``textDocument/copilotInlineEdit`` params (plain JSON)."""
    td, pos = params.get("textDocument"), params.get("position")
    if not isinstance(td, dict) or not isinstance(td.get("uri"), str):
        raise BadParams("textDocument.uri must be a string")
    version = td.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise BadParams("textDocument.version must be an integer")
    if not isinstance(pos, dict) or not all(
        isinstance(pos.get(k), int) and not isinstance(pos.get(k), bool) and pos[k] >= 0 for k in ("line", "character")
    ):
        raise BadParams("position must be {line, character} with non-negative integers")
    return td["uri"], version, types.Position(pos["line"], pos["character"])


def edit_request(
    doc: TextDocument,
    position: types.Position,
    asked_version: int | None,
    request_id: int | str | None,
    history: list[Edit],
) -> EditRequest:
    """The next-edit request at ``position`` of ``doc`` as it is now (text, version, recorded changes).

    ``asked_version`` is the version the client sent (None: it sent none)."""
    text = doc.source
    off = doc.offset_at_position(position)
    cur = nes.position_of(text, off)
    return EditRequest(
        uri=doc.uri,
        version=doc.version,
        language_id=doc.language_id,
        text=text,
        cursor=(cur["line"], cur["character"]),
        history=history,
        asked_version=asked_version,
        request_id=request_id,
    )


def inline_edits(doc: TextDocument, req: EditRequest, out: EditOutcome) -> InlineEditResult:
    """The proposed edits (UTF-16 positions in ``req.text``) as the client sees them; ``doc`` gives the codec."""
    if not out.edits:
        return InlineEditResult([])
    snap = TextDocument(req.uri, req.text, req.version, position_codec=doc.position_codec)
    ident = types.VersionedTextDocumentIdentifier(uri=req.uri, version=req.version or 0)
    command = types.Command(title="unmask: next edit accepted", command=ACCEPT_EDIT_COMMAND, arguments=[out.id])

    def pos(p: dict) -> types.Position:
        return snap.client_position_at_offset(nes.offset_of(req.text, p["line"], p["character"]))

    edits = [
        InlineEdit(e["text"], ident, types.Range(pos(e["range"]["start"]), pos(e["range"]["end"])), command)
        for e in out.edits
    ]
    edits.sort(key=lambda e: (e.range.start.line, e.range.start.character))
    return InlineEditResult(edits)


def edit(doc: TextDocument, change: types.TextDocumentContentChangeEvent, version: int | None) -> Edit:
    """The :class:`Edit` record of ``change``; call it before the change is applied to ``doc``."""
    if isinstance(change, types.TextDocumentContentChangePartial):
        r = change.range
        lines = doc.lines  # split once: this runs on every keystroke
        span = doc.position_codec.range_from_client_units(lines, r)  # client units -> code points
        a = sum(map(len, lines[: span.start.line])) + span.start.character
        b = a - span.start.character + sum(map(len, lines[span.start.line : span.end.line])) + span.end.character
        start, end = (r.start.line, r.start.character), (r.end.line, r.end.character)
        return Edit(version, start, end, a, doc.source[a:b], change.text)
    src = doc.source
    end_pos = doc.client_position_at_offset(len(src))
    return Edit(version, (0, 0), (end_pos.line, end_pos.character), 0, src, change.text)


def draft(req: Request, d: InfillDraft) -> DraftParams:
    return DraftParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=req.uri, version=req.version or 0),
        position=types.Position(line=req.cursor[0], character=req.cursor[1]),
        request_id=req.request_id,
        step=d.step,
        text=d.text,
        confidence=round(d.confidence[0], 4),
        elapsed_ms=round(d.ms, 2),
        done=d.done,
    )


def encoding(workspace) -> str:
    """The negotiated position encoding as the context layer names it: utf-8, utf-16 or utf-32."""
    enc = getattr(workspace, "position_encoding", None)
    return str(getattr(enc, "value", enc) or "utf-16")


def supports_progress(caps: types.ClientCapabilities | None) -> bool:
    """Does the client accept server-initiated work-done progress (``window/workDoneProgress/create``)?"""
    return bool(caps is not None and caps.window is not None and caps.window.work_done_progress)


def timings(traces: list[Trace]) -> TimingsResult:
    return TimingsResult(
        [
            RequestTiming(
                t.request_id,
                t.uri,
                t.version,
                t.outcome,
                {k: round(v, 3) for k, v in t.stages.items()},
                list(t.steps),
                list(t.step_forward),
                t.context,
                t.cache,
            )
            for t in traces
        ]
    )


def message_type(level: int) -> types.MessageType:
    """A Python logging level as an LSP message type."""
    if level >= 40:
        return types.MessageType.Error
    if level >= 30:
        return types.MessageType.Warning
    if level >= 20:
        return types.MessageType.Info
    return types.MessageType.Log
