"""Per-document completion state: newest request wins, stale results dropped, type-through, edits.

For each open document the :class:`Completer` keeps a bounded history of edits (for
next-edit prediction), the model job in flight and the last suggestion computed. One
:meth:`Completer.complete` call is one inline completion request:

1. language disabled, or an automatic trigger in the middle of a word: nothing;
2. the user typed the first characters of the last suggestion: serve its rest (no model);
3. otherwise choose the span (:func:`~unmask.lsp.shape.choose_span`, from the document's
   syntax tree when it has one); an automatic trigger where the span selection says not to
   suggest (in a comment or a string) stops here, without a model call;
4. gather the repository context (:class:`~unmask.lsp.repo.RepoContext`: scope, definitions,
   recent edits, open documents, similar code, packed into the model's window) unless the
   ``context.enabled`` setting is off, cancel the document's older job (newest wins), run a
   new one on the :class:`~unmask.lsp.worker.ModelWorker` under the deadline, shape the
   answer, gate it on confidence (automatic triggers only) and check the document version
   did not move.

A superseded request raises :class:`Superseded`, a result for an older document version
:class:`Stale`; the server answers both with ``ContentModified``. Results computed for an
older version are still remembered for type-through, which compares text, not versions.
Every stage's time goes into the request's :class:`~unmask.lsp.timings.Trace`.

It knows documents by uri, version and text; it knows nothing about LSP types, positions or
transports (the server converts with :mod:`unmask.lsp.convert`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from unmask.context import SpanChoice
from unmask.engine.infill import InfillDraft
from unmask.engine.runtime import ModelError

from .config import Settings
from .protocol import Stats
from .repo import RepoContext, context_summary
from .shape import Span, Suggestion, automatic_allowed, choose_span, shape
from .timings import Trace
from .worker import Job, ModelWorker

log = logging.getLogger("unmask.lsp")

_arrivals = itertools.count(1)

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
    trace: Trace | None = None
    seq: int = field(default_factory=lambda: next(_arrivals))  # arrival order


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
    def __init__(
        self,
        worker: ModelWorker,
        settings: Callable[[], Settings],
        on_draft: DraftSink | None = None,
        repo: RepoContext | None = None,
        encoding: Callable[[], str] = lambda: "utf-16",
    ):
        self.worker = worker
        self.settings = settings
        self.on_draft = on_draft
        self.repo = repo  # parsed documents and workspace indexes; None: prefix and suffix only
        self.encoding = encoding  # the negotiated position encoding
        self.stats = Stats()
        self.docs: dict[str, DocState] = {}
        self._latest: dict[str, int] = {}  # uri -> seq of the newest request that arrived for it
        self._ids = itertools.count(1)

    # -- document lifecycle -------------------------------------------------------------------
    def opened(self, uri: str) -> None:
        self.docs[uri] = DocState()

    def closed(self, uri: str) -> None:
        self._latest.pop(uri, None)
        st = self.docs.pop(uri, None)
        if st and st.job:
            st.job.cancel()

    def cancel_all(self) -> None:
        """Stop every model job (the server is going away): a running one ends at its next step."""
        for st in self.docs.values():
            if st.job is not None:
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
    def arrived(self, req: Request) -> None:
        """Note a request as it arrives (before its handler runs): older ones for its document are superseded."""
        self._latest[req.uri] = max(req.seq, self._latest.get(req.uri, 0))

    async def complete(self, req: Request, version_now: Callable[[], int | None]) -> Outcome:
        """Answer one request (see the module docstring); ``version_now`` reads the document's current version."""
        self.stats.requests += 1
        tr = req.trace = req.trace or Trace(req.request_id, req.uri, req.version, req.arrived)
        tr.add("wait", (time.perf_counter() - req.arrived) * 1e3)
        try:
            out = await self._complete(req, tr)
            if version_now() != req.version:
                raise Stale()
        except Stale:
            self.stats.stale += 1
            tr.outcome = "stale"
            raise
        except Superseded:
            self.stats.superseded += 1
            tr.outcome = "superseded"
            raise
        except asyncio.CancelledError:
            tr.outcome = "cancelled"
            raise
        if out.text is None:
            self.stats.empty += 1
            tr.outcome = out.source if out.source != "model" else "empty"
        else:
            self.stats.answered += 1
            tr.outcome = "type-through" if out.source == "type-through" else "items"
        return out

    async def _complete(self, req: Request, tr: Trace) -> Outcome:
        s = self.settings()
        st = self.docs.setdefault(req.uri, DocState())
        if st.job is not None:  # newest request wins, whatever this one turns out to need
            st.job.cancel()
            st.job = None
        if self._latest.get(req.uri, 0) > req.seq:  # a newer request arrived before this one's handler ran
            raise Superseded()
        why = self._skip_reason(req, s, st)
        if why:
            return Outcome(None, None, why)
        if st.last is not None and (rest := st.last.continue_at(req.prefix, req.suffix)) is not None:
            self.stats.type_through += 1
            return Outcome(rest, st.last.id, "type-through")
        if not req.invoked and not automatic_allowed(req.prefix, req.suffix):
            return Outcome(None, None, "mid-word")

        span = self._span(req, tr)
        if span.suppress_reason is not None and not req.invoked:
            self.stats.suppressed += 1
            return Outcome(None, None, span.suppress_reason)
        loading = self.worker.loading
        if self.worker.window is None and loading is not None and not loading.done():
            # the model is still loading: the job would wait for it anyway, and the context must be packed for
            # its window and counted with its tokenizer (before, the first requests got a default-sized context)
            with contextlib.suppress(Exception):  # a failed load: the job reports it
                await asyncio.wrap_future(loading)
            if self._latest.get(req.uri, 0) > req.seq:
                raise Superseded()
        pieces, buckets = self._pieces(req, s, span, tr)
        job = Job(
            pieces,
            buckets,
            budget_ms=s.invoked_budget_ms if req.invoked else s.latency_budget_ms,
            steps=s.steps,
            threshold=s.threshold,
            one_line=not span.multiline,
            comment=_line_comment(req.language_id, req.uri),
            cache=req.uri,
            created=req.arrived,
            trace=tr,
            label=f"{req.uri} v{req.version} request {req.request_id}",
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
            raise Superseded()

        with tr.time("shape"):
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

    def _span(self, req: Request, tr: Trace) -> Span:
        """The span at the cursor, from the document's syntax tree when the server keeps one."""
        doc = self.repo.document(req.uri) if self.repo is not None else None
        if doc is not None and doc.version != req.version:
            # a didChange was read after the request: the parsed copy is ahead of the request's text. Answer
            # from the text alone, as without a syntax tree; the version check at the end makes it Stale
            # (unless a newer request supersedes it first).
            doc = None
        if doc is not None:
            if doc.text != req.prefix + req.suffix:  # never expected; a wrong tree must not outlive one request
                self.repo.resync(req.uri, req.prefix + req.suffix, req.version)  # type: ignore[union-attr]
            with tr.time("parse"):
                doc.tree  # noqa: B018 - the lazy incremental re-parse, timed on its own
        span = choose_span(req.prefix, req.suffix, doc, req.cursor, self.encoding())
        tr.add("span", span.ms)
        return span

    def _pieces(self, req: Request, s: Settings, span: Span, tr: Trace) -> tuple[list[str], list[int]]:
        """What the engine is given: repository context packed around the hole, or the bare document."""
        doc = self.repo.document(req.uri) if self.repo is not None and s.context_enabled else None
        if doc is None or doc.version != req.version:
            return [req.prefix, req.suffix], [span.bucket]
        assert self.repo is not None
        choice = span.choice or SpanChoice(  # no syntax tree: the text decided the span
            span.kind, span.bucket, span.multiline, offset=doc.offset_at(*req.cursor, encoding=self.encoding())
        )
        res = self.repo.gather(
            req.uri,
            req.cursor,
            choice,
            sources=s.context_sources,
            count_tokens=self.worker.token_counter(),
            window=self.worker.window,
            encoding=self.encoding(),
        )
        tr.add("context", res.timings["total"] - res.timings.get("span", 0.0))
        tr.context = context_summary(res)
        return res.engine_pieces()

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


def _line_comment(language_id: str | None, uri: str) -> str | None:
    """The line comment of the document's language (None: unknown, the engine's default)."""
    from unmask.context.languages import language_for_id, spec

    name = language_for_id(language_id, uri.rsplit("/", 1)[-1])
    return spec(name).comment if name else None
