"""Per-document next-edit requests: newest request wins, stale answers dropped, model work off the loop.

One :meth:`NextEditor.suggest` call is one ``textDocument/copilotInlineEdit`` request:

1. the request was snapshotted when it arrived (:class:`EditRequest`: the document's text,
   version, cursor and its recorded content changes); a newer request for the same document
   cancels this one's model work (:class:`~unmask.lsp.completer.Superseded`);
2. next edits switched off, the language disabled, a huge or binary document: no edits;
3. the user's last logical edit is rebuilt from the change records
   (:func:`~unmask.lsp.nes.history_diff`, on a helper thread); no edit, no proposal: answered
   without a model call;
4. otherwise :func:`~unmask.lsp.nes.predict` runs on the model thread
   (:class:`~unmask.lsp.worker.Call`) under ``nextEdit.budgetMs`` from the request's arrival,
   gated on ``nextEdit.minConfidence`` (renamed words, changes that carry over to sibling
   lines and call sites of a changed signature follow by rule unless ``nextEdit.renameRule`` /
   ``replayRule`` / ``signatureRule`` is off);
5. an answer is never given for an older document version: a ``didChange`` meanwhile cancels
   the work and the request ends :class:`~unmask.lsp.completer.Stale`.

Edits are ``{"range", "text"}`` dicts in UTF-16 positions of the snapshot's text
(:mod:`unmask.lsp.nes`' terms); the server converts them to the client's encoding with
:mod:`unmask.lsp.convert`. Counters go into the server's :class:`~unmask.lsp.protocol.Stats`.

It knows documents by uri, version and text, the worker and :mod:`unmask.lsp.nes`; it knows
nothing about LSP types or transports.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

from unmask.engine.runtime import ModelError

from . import nes
from .completer import Edit, Stale, Superseded
from .config import Settings
from .protocol import Stats
from .worker import Call, ModelWorker

log = logging.getLogger("unmask.lsp")

_arrivals = itertools.count(1)

MAX_CHARS = 1_000_000  # larger documents get no next edits


@dataclass
class EditRequest:
    """A next-edit request as it arrived: the document then, and where the user is."""

    uri: str
    version: int | None
    language_id: str | None
    text: str  # the whole document at arrival
    cursor: tuple[int, int]  # (line, UTF-16 column) in ``text``
    history: list[Edit]  # the document's recorded content changes at arrival, oldest first
    asked_version: int | None = None  # the version the client asked about (None: it did not say)
    request_id: int | str | None = None
    arrived: float = field(default_factory=time.perf_counter)  # the deadline counts from here
    seq: int = field(default_factory=lambda: next(_arrivals))  # arrival order


@dataclass
class EditOutcome:
    edits: list[dict]  # [{"range": {"start", "end"}, "text"}], UTF-16 positions in the request's text
    id: str | None = None  # names the answer in the accept command
    source: str = "model"  # "model", or why there was no model call: no-history, disabled, ...
    ms: float = 0.0  # model work (prediction), 0 without a model call


class NextEditor:
    def __init__(self, worker: ModelWorker, settings: Callable[[], Settings], stats: Stats):
        self.worker = worker
        self.settings = settings
        self.stats = stats
        self.in_flight: set[int | str] = set()  # request ids being answered (to count $/cancelRequest)
        self._jobs: dict[str, Call] = {}  # uri -> the model call in flight
        self._latest: dict[str, int] = {}  # uri -> seq of the newest request that arrived for it
        self._ids = itertools.count(1)
        # the history diffs: one thread of their own (asyncio's default executor grew to 6 threads that stayed
        # after a typing storm), and a diff whose request was overtaken while queued is skipped
        self._diff_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unmask-diff")

    # -- lifecycle -----------------------------------------------------------------------------
    def arrived(self, req: EditRequest) -> None:
        """Note a request as it arrives: older ones for its document are superseded, their work cancelled."""
        self._latest[req.uri] = max(req.seq, self._latest.get(req.uri, 0))
        if req.request_id is not None:
            self.in_flight.add(req.request_id)
        self._cancel(req.uri)

    def edited(self, uri: str) -> None:
        """The document changed: an answer in the works would be for an older version; stop it."""
        self._cancel(uri)

    def closed(self, uri: str) -> None:
        self._latest.pop(uri, None)
        self._cancel(uri)

    def accepted(self, edit_id: str | None) -> None:
        self.stats.next_edit_accepted += 1

    def _cancel(self, uri: str) -> None:
        job = self._jobs.pop(uri, None)
        if job is not None:
            job.cancel()

    # -- requests ------------------------------------------------------------------------------
    async def suggest(self, req: EditRequest, version_now: Callable[[], int | None]) -> EditOutcome:
        """Answer one request (see the module docstring); ``version_now`` reads the document's current version."""
        st = self.stats
        st.next_edit_requests += 1
        try:
            out = await self._suggest(req, version_now)
            if version_now() != req.version:
                raise Stale()
        except Stale:
            st.next_edit_stale += 1
            raise
        except Superseded:
            st.next_edit_superseded += 1
            raise
        finally:
            if req.request_id is not None:
                self.in_flight.discard(req.request_id)
        if out.edits:
            st.next_edit_answered += 1
        else:
            st.next_edit_empty += 1
        return out

    async def _suggest(self, req: EditRequest, version_now: Callable[[], int | None]) -> EditOutcome:
        if self._latest.get(req.uri, 0) > req.seq:  # a newer request arrived before this one's handler ran
            raise Superseded()
        if req.asked_version is not None and req.asked_version != req.version:
            raise Stale()  # the client asked about a version the document has already left
        s = self.settings()
        why = self._skip_reason(req, s)
        if why:
            return EditOutcome([], None, why)
        # pure Python over the whole text (~15 ms for 6,000 lines): off the event loop, not behind the model
        diff = await asyncio.wrap_future(self._diff_pool.submit(self._diff, req))
        if self._latest.get(req.uri, 0) > req.seq:  # overtaken while diffing: no model work for it
            raise Superseded()
        if not diff:
            return EditOutcome([], None, "no-history")
        if version_now() != req.version:
            raise Stale()

        language = "python" if req.language_id == "python" or req.uri.endswith(".py") else None

        def run(engine) -> nes.NesResult:  # on the model thread
            self.stats.next_edit_model_calls += 1
            budget = max(1.0, s.next_edit_budget_ms - (time.perf_counter() - req.arrived) * 1000)
            return nes.predict(
                engine,
                req.text,
                req.cursor,
                diff,
                language=language,
                budget_ms=budget,
                min_confidence=s.next_edit_min_confidence,
                rename_rule=s.next_edit_rename_rule,
                replay_rule=s.next_edit_replay_rule,
                signature_rule=s.next_edit_signature_rule,
            )

        job = Call(run, label=f"next edit {req.uri} v{req.version} request {req.request_id}")
        self._cancel(req.uri)
        self._jobs[req.uri] = job
        try:
            res = await asyncio.wrap_future(self.worker.call(job))
        except asyncio.CancelledError:  # $/cancelRequest (or shutdown): a queued call never starts
            job.cancel()
            raise
        except ModelError as e:
            log.warning("no next edits: %s", e)
            return EditOutcome([], None, "no-model")
        finally:
            if self._jobs.get(req.uri) is job:
                del self._jobs[req.uri]
        if res is None or job.cancelled:
            if self._latest.get(req.uri, 0) > req.seq:
                raise Superseded()
            raise Stale()  # cancelled by a didChange (the version check says so too)
        eid = f"e{next(self._ids)}"
        log.debug(
            "next edit %s %s v%s: %d of %d candidates proposed in %.0f ms: %s",
            eid,
            req.uri,
            req.version,
            len(res.edits),
            res.candidates,
            res.ms,
            res.considered,
        )
        return EditOutcome(res.edits, eid if res.edits else None, "model", res.ms)

    def _diff(self, req: EditRequest) -> str | None:
        """The edit history as the model reads it (on the diff thread); None when a newer request took over."""
        if self._latest.get(req.uri, 0) > req.seq:
            return None
        return nes.history_diff(req.text, req.history, _path(req.uri))

    def close(self) -> None:
        self._diff_pool.shutdown(wait=False, cancel_futures=True)

    def _skip_reason(self, req: EditRequest, s: Settings) -> str | None:
        if not s.next_edit_enabled:
            return "disabled"
        if not s.language_enabled(req.language_id):
            return "language-disabled"
        if len(req.text) > MAX_CHARS:
            return "huge"
        if "\x00" in req.text:
            return "binary"
        return None


def _path(uri: str) -> str:
    """The file name the edit history's diff is labelled with."""
    return os.path.basename(unquote(urlparse(uri).path)) or "file"
