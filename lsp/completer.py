"""Per-document completion state: newest request wins, stale results dropped, type-through, edits.

For each open document the :class:`Completer` keeps a bounded history of edits (for
next-edit prediction), the model job in flight and the last suggestion computed. One
:meth:`Completer.complete` call is one inline completion request:

1. language disabled, or an automatic trigger in the middle of a word: nothing;
2. the user typed the first characters of the last suggestion: serve its rest (no model);
3. otherwise cancel the document's older job (newest wins), run a new one on the
   :class:`~unmask.lsp.worker.ModelWorker` under the deadline, shape the answer, gate it on
   confidence (automatic triggers only) and check the document version did not move.

A superseded request raises :class:`Superseded`, a result for an older document version
:class:`Stale`; the server answers both with ``ContentModified``. Results computed for an
older version are still remembered for type-through, which compares text, not versions.

It knows documents by uri, version and text; it knows nothing about LSP types, positions or
transports (the server converts with :mod:`unmask.lsp.convert`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from unmask.engine.infill import InfillDraft
from unmask.engine.runtime import ModelError

from .config import Settings
from .protocol import Stats
from .shape import Suggestion, automatic_allowed, choose_span, shape
from .worker import Job, ModelWorker

log = logging.getLogger("unmask.lsp")

HISTORY = 64  # edits kept per document
MAX_CHARS = 4_000_000  # larger documents are skipped


class Superseded(Exception):
    """A newer request for the same document took over."""


class Stale(Exception):
    """The document changed while the completion was computed."""


@dataclass(frozen=True)
class Edit:
    """One content change as applied: where (before the edit), what went out, what came in."""

    version: int | None
    start: tuple[int, int]  # (line, character) in the client's position encoding
    end: tuple[int, int]
    offset: int  # code points before ``start`` in the text before the edit
    removed: str
    inserted: str
    time: float = field(default_factory=time.monotonic)


@dataclass
class Request:
    uri: str
    version: int | None
    language_id: str | None
    prefix: str  # the whole document before the cursor
    suffix: str  # the whole document after the cursor
    invoked: bool  # the user asked (Invoked trigger); otherwise automatic
    cursor: tuple[int, int] = (0, 0)  # (line, character) as the client sent it; echoed in drafts
    request_id: int | str | None = None
    arrived: float = field(default_factory=time.perf_counter)  # the deadline counts from here


@dataclass
class Outcome:
    text: str | None  # the suggestion to insert at the cursor; None: nothing to show
    id: str | None = None
    source: str = "model"  # "model", "type-through" or why nothing was computed


@dataclass
class DocState:
    history: deque[Edit] = field(default_factory=lambda: deque(maxlen=HISTORY))
    job: Job | None = None
    last: Suggestion | None = None
    skipped: str | None = None  # why this document is never completed (logged once)


DraftSink = Callable[[Request, InfillDraft], None]  # called on the event loop


class Completer:
    def __init__(self, worker: ModelWorker, settings: Callable[[], Settings], on_draft: DraftSink | None = None):
        self.worker = worker
        self.settings = settings
        self.on_draft = on_draft
        self.stats = Stats()
        self.docs: dict[str, DocState] = {}
        self._ids = itertools.count(1)

    # -- document lifecycle -------------------------------------------------------------------
    def opened(self, uri: str) -> None:
        self.docs[uri] = DocState()

    def closed(self, uri: str) -> None:
        st = self.docs.pop(uri, None)
        if st and st.job:
            st.job.cancel()

    def edited(self, uri: str, edit: Edit) -> None:
        self.docs.setdefault(uri, DocState()).history.append(edit)
        self.stats.edits += 1

    def history(self, uri: str) -> list[Edit]:
        st = self.docs.get(uri)
        return list(st.history) if st else []

    # -- feedback ------------------------------------------------------------------------------
    def feedback(self, kind: str, completion_id: str | None) -> None:
        """Count ``shown`` / ``accepted`` / ``partially_accepted`` / ``rejected``; forget rejected suggestions."""
        setattr(self.stats, kind, getattr(self.stats, kind) + 1)
        if kind == "rejected" and completion_id:
            for st in self.docs.values():
                if st.last and st.last.id == completion_id:
                    st.last = None

    # -- completion ----------------------------------------------------------------------------
    async def complete(self, req: Request, version_now: Callable[[], int | None]) -> Outcome:
        """Answer one request (see the module docstring); ``version_now`` reads the document's current version."""
        self.stats.requests += 1
        out = await self._complete(req)
        if version_now() != req.version:
            self.stats.stale += 1
            raise Stale()
        if out.text is None:
            self.stats.empty += 1
        else:
            self.stats.answered += 1
        return out

    async def _complete(self, req: Request) -> Outcome:
        s = self.settings()
        st = self.docs.setdefault(req.uri, DocState())
        if st.job is not None:  # newest request wins, whatever this one turns out to need
            st.job.cancel()
            st.job = None
        why = self._skip_reason(req, s, st)
        if why:
            return Outcome(None, None, why)
        if st.last is not None and (rest := st.last.continue_at(req.prefix, req.suffix)) is not None:
            self.stats.type_through += 1
            return Outcome(rest, st.last.id, "type-through")
        if not req.invoked and not automatic_allowed(req.prefix, req.suffix):
            return Outcome(None, None, "mid-word")

        span = choose_span(req.prefix, req.suffix, req.language_id)
        job = Job(
            req.prefix,
            req.suffix,
            span.bucket,
            budget_ms=s.invoked_budget_ms if req.invoked else s.latency_budget_ms,
            steps=s.steps,
            threshold=s.threshold,
            one_line=not span.multiline,
            created=req.arrived,
        )
        if s.stream_drafts and self.on_draft is not None:
            job.on_draft = self._draft_forwarder(req, job)
        st.job = job
        try:
            draft = await asyncio.wrap_future(self.worker.submit(job))
        except asyncio.CancelledError:  # $/cancelRequest (or shutdown): stop the model at its next step
            job.cancel()
            raise
        except ModelError as e:
            log.warning("no completion: %s", e)
            return Outcome(None, None, "no-model")
        finally:
            if st.job is job:
                st.job = None
        if draft is None or job.cancelled:
            self.stats.superseded += 1
            raise Superseded()

        text = shape(draft.text, req.suffix, span.multiline)
        conf = draft.confidence[0]
        if text is not None and not req.invoked and conf < s.min_confidence:
            self.stats.low_confidence += 1
            text = None
        cid = f"c{next(self._ids)}"
        # remembered even if the document moved on meanwhile: type-through compares text, not versions
        st.last = Suggestion(cid, req.prefix, req.suffix, text, span.multiline) if text else None
        log.debug(
            "completion %s v%s: %d steps, %.0f ms (encode %.0f), confidence %.2f, raw %r, shown %r",
            cid,
            req.version,
            draft.step,
            draft.ms,
            draft.encode_ms,
            conf,
            draft.text,
            text,
        )
        return Outcome(text, cid if text else None, "model")

    def _skip_reason(self, req: Request, s: Settings, st: DocState) -> str | None:
        if not s.language_enabled(req.language_id):
            return "language-disabled"
        if st.skipped is None:
            if len(req.prefix) + len(req.suffix) > MAX_CHARS:
                st.skipped = "huge"
            elif "\x00" in req.prefix or "\x00" in req.suffix:
                st.skipped = "binary"
            if st.skipped:
                log.info("not completing %s: the document is %s", req.uri, st.skipped)
        return st.skipped

    def _draft_forwarder(self, req: Request, job: Job) -> Callable[[InfillDraft], None]:
        loop = asyncio.get_running_loop()
        sink = self.on_draft
        assert sink is not None

        def emit(draft: InfillDraft) -> None:  # on the loop
            if not job.cancelled:
                sink(req, draft)

        return lambda draft: loop.call_soon_threadsafe(emit, draft)
