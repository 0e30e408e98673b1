"""The unmask language server: pygls wiring, thin handlers, transports and logging.

    unmask serve                       stdio (what editors spawn)
    unmask serve --tcp 2087            one client over TCP on 127.0.0.1
    unmask serve --ws 2087             one client over WebSocket on 127.0.0.1
    UNMASK_TOKEN=... unmask serve --ws 2087 --host 0.0.0.0   another address: a token is required

The network transports and their checks (loopback default, token, TCP framing, WebSocket
Origin) live in :mod:`unmask.lsp.transport`.

The model is loaded and warmed up once, at start, on the model thread
(:class:`~unmask.lsp.worker.ModelWorker`); the asyncio loop only speaks LSP. Each handler has
one shape: get the document → the text around the cursor (:mod:`unmask.lsp.convert`) → the
completer (:mod:`unmask.lsp.completer`) → convert back → return. Custom methods live in
:mod:`unmask.lsp.protocol` and are documented in ``docs/protocol.md``.

The repository context (:class:`~unmask.lsp.repo.RepoContext`) follows the client: a parsed
copy of each open document, updated by every didChange; after ``initialized``, a workspace
index per root folder built in the background, with ``$/progress`` reports when the client
supports them, and kept current on didSave and watched-file events. Every inline completion
request is traced stage by stage (:mod:`unmask.lsp.timings`, ``unmask/timings``).

Next-edit requests (``textDocument/copilotInlineEdit``, advertised under the capabilities'
``experimental.copilotInlineEditProvider``) are snapshotted on arrival like inline completions
and answered by :class:`~unmask.lsp.next_edit.NextEditor` on the same model thread.

Logs go to ``window/logMessage`` (info and up) and to a log file; nothing is ever sent over
the network beyond the client connection itself.

It knows LSP and the pieces above; it holds no model logic and no text heuristics.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextvars
import itertools
import logging
import multiprocessing
import multiprocessing.util
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcContentModified, JsonRpcException, JsonRpcInvalidParams, JsonRpcRequestCancelled
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import PositionCodec, ServerTextPosition

from unmask.context import EXTENSIONS
from unmask.context.document import code_point_index, code_units, encodable, split_lines
from unmask.engine.runtime import backend_config

from . import config, convert, transport
from . import protocol as ext
from .completer import Completer, Request, Stale, Superseded
from .next_edit import EditRequest, NextEditor
from .repo import RepoContext, tree_outline, uri_path
from .timings import Timings
from .worker import ModelWorker, one_malloc_arena

log = logging.getLogger("unmask.lsp")
ENGINE_RETRY_S = 10.0  # an unreachable team engine is tried again this often (without a local fallback)
ENGINE_TOKEN_ENV = "UNMASK_ENGINE_TOKEN"  # the team engine's bearer token (never a flag: the process list shows flags)

try:
    __version__ = version("unmask")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"


_arrival: contextvars.ContextVar[Request | None] = contextvars.ContextVar("unmask_arrival", default=None)
_edit_arrival: contextvars.ContextVar[EditRequest | None] = contextvars.ContextVar("unmask_edit", default=None)


class UnmaskProtocol(LanguageServerProtocol):
    """pygls' protocol with these additions, all at message arrival (pygls runs async handlers later):

    * each content change is recorded, with the text it replaced, before it is applied;
    * each content change is also applied to the document's parsed copy (syntax tree);
    * a request whose params do not fit its method gets an InvalidParams answer (pygls sends none),
      and ``$/cancelRequest`` for a request in flight is counted;
    * an inline completion request snapshots the document (text, version, cursor) as it is
      when the request arrives, so a didChange read meanwhile cannot slip under it, and starts
      its trace; the trace ends when the response has been written;
    * a next-edit request snapshots the document and its recorded changes the same way, and a
      ``didChange`` stops next-edit work for the older version at once;
    * ``initialize`` answers with ``experimental.copilotInlineEditProvider`` in the capabilities.
    """

    _server: UnmaskServer

    def _handle_request(self, msg_id, method_name, params):
        if method_name == types.TEXT_DOCUMENT_INLINE_COMPLETION and isinstance(params, types.InlineCompletionParams):
            doc = open_document(self.workspace, params.text_document.uri)
            if doc is not None:
                server = self._server
                req = convert.request(doc, params, msg_id)
                req.trace = server.timings.begin(msg_id, req.uri, req.version)
                req.trace.add("edit", server.repo.take_edit_ms(doc.uri))
                server.completer.arrived(req)
                _arrival.set(req)  # the handler's task copies this context
        elif method_name == ext.INLINE_EDIT:
            self._edit_arrived(msg_id, params)
        super()._handle_request(msg_id, method_name, params)

    def _edit_arrived(self, msg_id, params) -> None:
        _edit_arrival.set(None)
        try:
            uri, version, position = _edit_target(params)
        except convert.BadParams:
            return  # the handler answers InvalidParams
        doc = open_document(self.workspace, uri)
        if doc is not None:
            server = self._server
            req = convert.edit_request(doc, position, version, msg_id, server.completer.history(doc.uri))
            server.next_editor.arrived(req)
            _edit_arrival.set(req)

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams):
        result = yield from super().lsp_initialize(params)
        caps = result.capabilities
        caps.experimental = {**(caps.experimental or {}), ext.INLINE_EDIT_CAPABILITY: True}
        return result

    def _send_response(self, msg_id, result=None, error=None):
        t = time.perf_counter()
        super()._send_response(msg_id, result, error)
        self._server.timings.finish(msg_id, (time.perf_counter() - t) * 1e3, error is not None)

    def structure_message(self, data):
        """pygls drops a request whose params do not fit the method's type; answer it with InvalidParams."""
        try:
            return super().structure_message(data)
        except JsonRpcException as e:
            if isinstance(data, dict) and "id" in data and "method" in data:
                log.warning("malformed %s request: %s", data.get("method"), e)
                err = JsonRpcInvalidParams(f"malformed {data['method']} params")
                self._send_response(data["id"], error=err.to_response_error())
                return _ANSWERED
            raise

    def handle_message(self, message):
        if message is not _ANSWERED:
            super().handle_message(message)

    def _handle_cancel_notification(self, msg_id):
        fut = self._request_futures.get(msg_id)
        if fut is not None and not fut.done():
            stats = self._server.completer.stats
            if msg_id in self._server.next_editor.in_flight:
                stats.next_edit_cancelled += 1
            else:
                stats.cancelled += 1
        super()._handle_cancel_notification(msg_id)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        doc = open_document(self.workspace, params.text_document.uri)
        if doc is None:
            log.warning("didChange for %s, which is not open: ignored", params.text_document.uri)
            return
        t = time.perf_counter()
        version = params.text_document.version
        repo, encoding = self._server.repo, convert.encoding(self.workspace)
        for change in params.content_changes:
            edit = convert.edit(doc, change, version)
            self.workspace.update_text_document(params.text_document, change)
            self._server.completer.edited(doc.uri, edit)
            if isinstance(change, types.TextDocumentContentChangePartial):
                repo.change(doc.uri, edit.start, edit.end, change.text, version, encoding)
            else:
                repo.change(doc.uri, None, None, change.text, version)
        self._server.next_editor.edited(doc.uri)
        repo.charge(doc.uri, (time.perf_counter() - t) * 1e3)
        if (user_handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield user_handler, (params,), None


_ANSWERED = object()  # a malformed request that already got its error response


def _edit_target(params: Any) -> tuple[str, int | None, types.Position]:
    """``(uri, version, position)`` of next-edit params; :class:`convert.BadParams` for any other shape (params
    that are a string or an array raised AttributeError before, and the request was never answered)."""
    value = ext.plain(params)
    return convert.inline_edit_target(value if isinstance(value, dict) else {})


def _param(params: Any, *keys: str) -> Any:
    """``params[k1][k2]...`` of a custom request's params, or None where it is missing or malformed."""
    value = ext.plain(params)
    for k in keys:
        value = value.get(k) if isinstance(value, dict) else None
    return value


def open_document(ws, uri: str) -> TextDocument | None:
    """The open document at ``uri`` (pygls would otherwise read an unopened one from disk)."""
    return ws.text_documents.get(unquote(uri))


class LspCodec(PositionCodec):
    """pygls' position codec as LSP says, at C speed: a ``character`` past the end of a line is the line's
    end (pygls' stops one short on the last line, can step over a line ending, and changes the client's
    position object), and no Python loop over the characters of a line (a keystroke in a 2 MB minified
    line cost seconds of the event loop)."""

    @property
    def name(self) -> str:
        return str(getattr(self.encoding, "value", self.encoding) or "utf-16")

    def client_num_units(self, string: str) -> int:
        return code_units(string, self.name)

    def position_from_client_units(self, lines, position) -> ServerTextPosition:
        if not lines:
            return ServerTextPosition(0, 0)
        if position.line >= len(lines):  # the end of the text
            return ServerTextPosition(len(lines) - 1, len(lines[-1]))
        text = lines[position.line].rstrip("\r\n")
        return ServerTextPosition(position.line, code_point_index(text, position.character, self.name))

    def position_to_client_units(self, lines, position) -> types.Position:
        if position.line >= len(lines):
            return types.Position(len(lines), 0)
        return types.Position(position.line, code_units(lines[position.line][: position.character], self.name))


class LspDocument(TextDocument):
    """pygls' document with the lines LSP defines: they end at ``\\n``, ``\\r\\n`` or ``\\r`` only (pygls
    splits with ``str.splitlines``, which also breaks at form feed, U+2028, NEL...: every position after
    one landed a line too far), split once per text rather than several times per keystroke, and
    without pygls' Python loops over all lines per change. :func:`as_lsp_document` makes one."""

    @property
    def lines(self) -> list[str]:
        src = self.source
        if getattr(self, "_lines_of", None) is not src:
            self._lines, self._lines_of = split_lines(src), src
        return self._lines

    def offset_at_server_position(self, server_position) -> int:
        return server_position.character + sum(map(len, self.lines[: server_position.line]))

    def server_position_at_offset(self, offset: int) -> ServerTextPosition:
        lines = self.lines
        ends = list(itertools.accumulate(map(len, lines)))
        line = bisect.bisect_right(ends, offset)
        if line >= len(lines):  # the end of the text (pygls' own fails on an empty one)
            if lines and lines[-1][-1:] not in ("\r", "\n"):
                return ServerTextPosition(len(lines) - 1, len(lines[-1]))
            return ServerTextPosition(len(lines), 0)  # the empty line after the last line ending
        return ServerTextPosition(line, offset - (ends[line - 1] if line else 0))

    def _apply_incremental_change(self, change: types.TextDocumentContentChangePartial) -> None:
        a = self.offset_at_position(change.range.start)
        b = max(a, self.offset_at_position(change.range.end))
        self._source = self.source[:a] + encodable(change.text) + self.source[b:]

    def _apply_full_change(self, change: types.TextDocumentContentChangeEvent) -> None:
        self._source = encodable(change.text)


def as_lsp_document(doc: TextDocument) -> None:
    """Make pygls' document an :class:`LspDocument` with an :class:`LspCodec` (pygls has no hook for it).
    Lone surrogates become U+FFFD, as in the parsed copy (else every completion re-synced it)."""
    doc.__class__ = LspDocument
    doc._position_codec = LspCodec(doc.position_codec.encoding)
    doc._source = encodable(doc.source)


class UnmaskServer(LanguageServer):
    def __init__(self, worker: ModelWorker, model_flag: str | None = None):
        super().__init__("unmask", __version__, protocol_cls=UnmaskProtocol)
        self.settings = config.Settings()
        self.worker = worker
        self.model_flag = model_flag  # --model; settings' modelPath overrides it
        self.local_backend = dict(worker.backend) if worker.backend.get("type") != "remote" else {"type": "onnx"}
        self.engine_flag: dict = {}  # --engine URL, its token and --local-fallback; settings' engine.url overrides
        self._engine_retries = 0  # failed loads of the team engine in a row
        self.repo = RepoContext()
        self.timings = Timings()
        self.completer = Completer(
            worker, lambda: self.settings, self.send_draft, self.repo, lambda: convert.encoding(self.workspace)
        )
        self.next_editor = NextEditor(worker, lambda: self.settings, self.completer.stats)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pending_loads: list[Future] = []
        self._progress_tokens = itertools.count(1)

    # -- settings and model -------------------------------------------------------------------
    def apply_settings(self, raw: Any, origin: str) -> None:
        """Merge settings from the client; show invalid values, reload the model when its path changed."""
        new, problems, unknown = config.merge(self.settings, raw)
        for p in problems:
            log.warning("%s", p)
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=p))
        if unknown:
            log.info("ignoring unknown settings from %s: %s", origin, ", ".join(map(str, unknown)))
        old, self.settings = self.settings, new
        log.info("settings from %s: %s", origin, new)
        engine = self.engine_backend(new)
        if new.model_path != old.model_path or engine != self.worker.backend:
            self.worker.backend = engine
            self.watch_load(self.worker.load(new.model_path or self.model_flag))

    def engine_backend(self, s: config.Settings) -> dict:
        """The worker's backend for settings ``s``: the team engine when one is set, else the local model."""
        url = s.engine_url or self.engine_flag.get("url")
        if not url:
            return dict(self.local_backend)
        fallback = s.engine_local_fallback or self.engine_flag.get("fallback", False)
        return {
            "type": "remote",
            "url": url,
            "token": self.engine_flag.get("token"),
            "fallback": dict(self.local_backend) if fallback else None,
        }

    def watch_load(self, fut: Future) -> None:
        """Tell the user when a model load fails (once the event loop runs)."""
        if self.loop is None:
            self._pending_loads.append(fut)
            return
        loop = self.loop

        def done(f: Future) -> None:  # on the model thread
            try:
                loop.call_soon_threadsafe(self._load_done, f)
            except RuntimeError:  # the event loop closed: the server stopped before the model loaded
                pass

        fut.add_done_callback(done)

    def _load_done(self, fut: Future) -> None:
        if fut.cancelled():
            return
        if (e := fut.exception()) is None:
            if self._engine_retries:
                log.info("connected to the team engine after %d retries", self._engine_retries)
            self._engine_retries = 0
            return
        if self.worker.backend.get("type") == "remote" and self.worker.engine is None:
            self._retry_engine()
            if self._engine_retries > 1:  # the user was told once; retries are only logged
                log.info("team engine still unreachable (retry %d): %s", self._engine_retries - 1, e)
                return
            using = f" Trying again every {ENGINE_RETRY_S:.0f} s."
        else:
            using = f" Still using {self.worker.model_path}." if self.worker.engine else " No completions until fixed."
        msg = f"unmask: {e}{using}"
        log.error("%s", msg)
        self.window_show_message(types.ShowMessageParams(type=types.MessageType.Error, message=msg))

    def _retry_engine(self) -> None:
        """Load the team engine again in ENGINE_RETRY_S (an engine that starts after the daemon is picked up)."""
        self._engine_retries += 1
        backend = dict(self.worker.backend)

        def retry() -> None:
            if self.worker.backend == backend and self.worker.engine is None:
                self.watch_load(self.worker.load(self.settings.model_path or self.model_flag))

        if self.loop is not None:
            self.loop.call_later(ENGINE_RETRY_S, retry)

    def send_draft(self, req, draft) -> None:
        """Stream one denoising step to the client (``unmask/draft``)."""
        self.protocol.notify(ext.DRAFT, ext.to_wire(convert.draft(req, draft)))

    def stats(self) -> ext.Stats:
        s = self.completer.stats
        s.model_calls = self.worker.model_calls
        s.model = self.worker.model_path
        s.indexed_files = self.repo.indexed_files
        s.indexing = self.repo.indexing
        s.model_error = "" if self.worker.engine else (self.worker.error or "")
        s.open_requests = sum(not f.done() for f in self.protocol._request_futures.values())
        s.model_jobs = self.worker.pending
        s.threads = threading.active_count()
        cache = getattr(self.worker.engine, "_cache", None)
        s.context_cache_mb = cache.as_dict()["mb"] if hasattr(cache, "as_dict") else 0.0
        s.memory_releases = self.worker.releases
        return s

    def stop_work(self) -> None:
        """Stop model work, next-edit diffs and indexing (queued work is dropped; a running model step ends)."""
        self.completer.cancel_all()
        self.worker.close()
        self.next_editor.close()
        self.repo.shutdown()

    def shutdown(self) -> None:
        """The connection ended (or ``exit``): stop the work too, and wait for no thread (pygls waited for its
        pool, where a read of stdin may be blocked: a client that sent ``exit`` and kept the pipe open hung it)."""
        log.info("shutting down")
        self.stop_work()
        if self._stop_event is not None:
            self._stop_event.set()
        if self._thread_pool is not None:
            self._thread_pool.shutdown(wait=False, cancel_futures=True)
        if self._server is not None:
            self._server.close()

    # -- workspace index ----------------------------------------------------------------------
    def workspace_roots(self) -> list[str]:
        """File-system paths of the workspace folders (else the root URI); none for a bare server."""
        ws = self.workspace
        uris = [f.uri for f in ws.folders.values()] or ([ws.root_uri] if ws.root_uri else [])
        return [p for p in (uri_path(u) for u in uris) if p]

    async def index_root(self, root: str) -> None:
        """Index ``root`` in the background, reporting work-done progress when the client supports it."""
        token: str | None = None
        if convert.supports_progress(self.client_capabilities):
            token = f"unmask-index-{os.getpid()}-{next(self._progress_tokens)}"
            try:
                await self.work_done_progress.create_async(token)
            except Exception as e:  # the client refused: index anyway, without progress
                log.info("no progress reports for indexing %s: %s", root, e)
                token = None
        if token is not None:
            self.work_done_progress.begin(
                token, types.WorkDoneProgressBegin(title="unmask: indexing", message=root, percentage=0)
            )
        loop = asyncio.get_running_loop()
        reporter = _IndexProgress(self, token, os.path.realpath(root))

        def report(*a: Any) -> None:  # on the index's thread, which may outlive the loop (the client left)
            try:
                loop.call_soon_threadsafe(reporter, *a)
            except RuntimeError:  # the event loop is closed: nobody to report to
                pass

        if self.repo.add_root(root, report) is None and token:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message="not indexed"))

    async def watch_files(self) -> None:
        """Ask the client to send didChangeWatchedFiles for source files (when it can register dynamically)."""
        ws = self.client_capabilities.workspace
        dyn = ws.did_change_watched_files if ws is not None else None
        if not self.repo.indexes or dyn is None or not dyn.dynamic_registration:
            return
        exts = ",".join(sorted(e.lstrip(".") for e in EXTENSIONS))
        watchers = [
            types.FileSystemWatcher(glob_pattern=f"**/*.{{{exts}}}"),
            types.FileSystemWatcher(glob_pattern="**/.gitignore"),
        ]
        reg = types.Registration(
            id="unmask-watched-files",
            method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
            register_options=types.DidChangeWatchedFilesRegistrationOptions(watchers=watchers),
        )
        try:
            await self.client_register_capability_async(types.RegistrationParams(registrations=[reg]))
        except Exception as e:
            log.info("the client did not register file watching (%s); the index updates on save only", e)


class _IndexProgress:
    """Turns a workspace index's progress callbacks into ``$/progress`` reports (on the event loop)."""

    def __init__(self, server: UnmaskServer, token: str | None, root: str):
        self.server, self.token, self.root = server, token, root
        self.last = 0.0
        self.ended = False

    def __call__(self, done: int, total: int, message: str) -> None:
        ix = self.server.repo.indexes.get(self.root)
        if self.ended or ix is None:
            return
        progress = self.server.work_done_progress
        if ix.ready.is_set() and done >= total:
            self.ended = True
            st = ix.stats
            msg = f"indexed {st.files} files, {st.definitions} definitions in {st.seconds:.1f} s"
            if self.token is not None:
                progress.end(self.token, types.WorkDoneProgressEnd(message=msg))
            return
        now = time.monotonic()
        if self.token is not None and now - self.last >= 0.1:
            self.last = now
            pct = int(100 * done / total) if total else 0
            progress.report(self.token, types.WorkDoneProgressReport(message=message, percentage=pct))


def build(worker: ModelWorker, model_flag: str | None = None) -> UnmaskServer:
    """The server with all handlers registered."""
    server = UnmaskServer(worker, model_flag)

    @server.feature(types.INITIALIZE)
    def initialize(ls: UnmaskServer, params: types.InitializeParams) -> None:
        """Adopt the event loop and the client's initializationOptions."""
        ls.loop = asyncio.get_running_loop()
        ls.worker.release_when_idle(ls.loop)
        for fut in ls._pending_loads:
            ls.watch_load(fut)
        ls._pending_loads.clear()
        ls.apply_settings(params.initialization_options, "initializationOptions")

    @server.feature(types.INITIALIZED)
    async def initialized(ls: UnmaskServer, params: types.InitializedParams) -> None:
        """Index the workspace roots in the background; watch their source files."""
        roots = ls.workspace_roots()
        if not roots:
            log.info("no workspace folder: completing without a workspace index")
        await asyncio.gather(*(ls.index_root(r) for r in roots))
        await ls.watch_files()

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    async def did_change_workspace_folders(ls: UnmaskServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        """Index added folders, drop removed ones."""
        for f in params.event.removed or []:
            if p := uri_path(f.uri):
                ls.repo.remove_root(p)
        await asyncio.gather(*(ls.index_root(p) for f in params.event.added or [] if (p := uri_path(f.uri))))

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: UnmaskServer, params: types.DidChangeConfigurationParams) -> None:
        """Apply pushed settings; pull the ``unmask`` section when the client pushes none."""
        raw = params.settings
        ws = ls.client_capabilities.workspace
        if not raw and ws is not None and ws.configuration:
            got = await ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section="unmask")])
            )
            raw = got[0] if got else None
        ls.apply_settings(raw, "workspace/didChangeConfiguration")

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: UnmaskServer, params: types.DidOpenTextDocumentParams) -> None:
        """Start tracking the document: its completion state and its parsed copy."""
        d = params.text_document
        if (doc := open_document(ls.workspace, d.uri)) is not None:
            as_lsp_document(doc)  # pygls made a plain one: str.splitlines' lines, slow and wrong positions
        ls.completer.opened(d.uri)
        ls.repo.open(d.uri, d.language_id, d.text, d.version)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: UnmaskServer, params: types.DidCloseTextDocumentParams) -> None:
        """Forget the document and cancel its work."""
        ls.completer.closed(params.text_document.uri)
        ls.next_editor.closed(params.text_document.uri)
        ls.repo.close(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: UnmaskServer, params: types.DidSaveTextDocumentParams) -> None:
        """Re-index the saved file (in the background)."""
        ls.repo.saved(params.text_document.uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(ls: UnmaskServer, params: types.DidChangeWatchedFilesParams) -> None:
        """Keep the index current when files change outside the editor."""
        ls.repo.watched([(c.uri, int(c.type)) for c in params.changes])

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: UnmaskServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
        """Complete at the cursor: type-through, else the model under the deadline."""
        doc = open_document(ls.workspace, params.text_document.uri)
        if doc is None:
            raise JsonRpcInvalidParams(f"{params.text_document.uri} is not open (send textDocument/didOpen first)")
        req = _arrival.get() or convert.request(doc, params, ls.protocol.msg_id)  # as it was on arrival
        try:
            out = await ls.completer.complete(req, lambda: doc.version)
        except Superseded:
            raise JsonRpcContentModified("superseded by a newer request for this document") from None
        except Stale:
            raise JsonRpcContentModified("the document changed while completing") from None
        t = time.perf_counter()
        result = convert.inline_list(doc, params.position, req, out.text, out.id)
        if req.trace is not None:
            req.trace.add("shape", (time.perf_counter() - t) * 1e3)
        return result

    @server.feature(ext.INLINE_EDIT)
    async def inline_edit(ls: UnmaskServer, params: Any) -> dict:
        """Next edits: the follow-ups of the user's last edit elsewhere in the document (model, under the deadline)."""
        try:
            uri, version, position = _edit_target(params)
        except convert.BadParams as e:
            raise JsonRpcInvalidParams(f"malformed {ext.INLINE_EDIT} params: {e}") from None
        doc = open_document(ls.workspace, uri)
        if doc is None:
            if (arrived := _edit_arrival.get()) is not None:  # closed since it arrived
                ls.next_editor.in_flight.discard(arrived.request_id)
            raise JsonRpcInvalidParams(f"{uri} is not open (send textDocument/didOpen first)")
        req = _edit_arrival.get() or convert.edit_request(
            doc, position, version, ls.protocol.msg_id, ls.completer.history(uri)
        )
        try:
            out = await ls.next_editor.suggest(req, lambda: doc.version)
        except Superseded:
            raise JsonRpcContentModified("superseded by a newer next-edit request for this document") from None
        except Stale:
            raise JsonRpcContentModified("the document changed while predicting next edits") from None
        return ext.to_wire(convert.inline_edits(doc, req, out))

    @server.command(ext.ACCEPT_EDIT_COMMAND)
    def next_edit_accepted(ls: UnmaskServer, edit_id: str | None = None) -> None:
        """The client applied a next edit."""
        ls.next_editor.accepted(edit_id)

    @server.command(ext.ACCEPT_COMMAND)
    def accepted(ls: UnmaskServer, completion_id: str | None = None) -> None:
        """The client inserted an item (LSP 3.18 runs an item's command after accepting it)."""
        ls.completer.feedback("accepted", completion_id)

    def feedback(kind: str):
        def handler(ls: UnmaskServer, params: Any) -> None:
            try:
                fb = ext.feedback_from_wire(params)
            except Exception as e:  # malformed feedback is counted as nothing, not a crash
                log.warning("malformed %s feedback: %s", kind, e)
                return
            ls.completer.feedback(kind, ext.item_id(fb.item))

        handler.__doc__ = f"Count a {kind} item."
        return handler

    server.feature(ext.DID_SHOW)(feedback("shown"))
    server.feature(ext.DID_PARTIALLY_ACCEPT)(feedback("partially_accepted"))
    server.feature(ext.DID_REJECT)(feedback("rejected"))

    @server.feature(ext.STATS)
    def stats(ls: UnmaskServer, params: Any) -> dict:
        """The server's counters."""
        return ext.to_wire(ls.stats())

    @server.feature(ext.TIMINGS)
    def timings(ls: UnmaskServer, params: Any) -> dict:
        """Stage timings of the last inline completion requests."""
        limit = _param(params, "limit")
        return ext.to_wire(convert.timings(ls.timings.recent(limit if isinstance(limit, int) else None)))

    @server.feature(ext.DOCUMENT)
    def document(ls: UnmaskServer, params: Any) -> dict:
        """The server's copy of an open document (debugging)."""
        uri = _param(params, "textDocument", "uri")
        doc = ls.repo.document(uri) if isinstance(uri, str) else None
        if doc is None:
            raise JsonRpcInvalidParams(f"{uri} is not open")
        return ext.to_wire(ext.DocumentState(uri, doc.version, doc.language, doc.text, tree_outline(doc.tree)))

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: UnmaskServer, params: Any) -> None:
        """Stop model work and indexing."""
        ls.stop_work()

    return server


# -- logging ----------------------------------------------------------------------------------
class LspLogHandler(logging.Handler):
    """Forwards records to ``window/logMessage``; safe from any thread. Records from before the
    client connected (model loading starts first) are kept and sent with the first one after."""

    def __init__(self, server: UnmaskServer, level: int = logging.INFO):
        super().__init__(level)
        self.server = server
        self.backlog: deque[types.LogMessageParams] = deque(maxlen=100)

    def emit(self, record: logging.LogRecord) -> None:
        self.backlog.append(
            types.LogMessageParams(type=convert.message_type(record.levelno), message=self.format(record))
        )
        loop = self.server.loop
        if loop is None or loop.is_closed():
            return
        while self.backlog:
            try:
                loop.call_soon_threadsafe(self.server.window_log_message, self.backlog.popleft())
            except (RuntimeError, IndexError):  # the loop closed meanwhile; another thread emptied it
                return


class _ExpectedErrors(logging.Filter):
    """Drops pygls' tracebacks for answers that are errors by design (superseded, stale, cancelled)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, JsonRpcContentModified | JsonRpcRequestCancelled)


def default_log_file() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "unmask" / "lsp.log"


def setup_logging(server: UnmaskServer, log_file: str | None, level: str) -> Path | None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level.upper())
    logging.getLogger("pygls").setLevel(logging.WARNING)  # it logs every message body at info
    logging.getLogger("pygls.protocol.json_rpc").addFilter(_ExpectedErrors())
    err = logging.StreamHandler(sys.stderr)  # stdout carries the protocol; never log there
    err.setLevel(logging.WARNING)
    err.setFormatter(fmt)
    root.addHandler(err)
    path = None
    if log_file != "":
        path = Path(log_file) if log_file else default_log_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(path, encoding="utf-8")
            fh.setFormatter(fmt)
            root.addHandler(fh)
        except OSError as e:
            log.warning("cannot write the log file %s: %s", path, e)
            path = None
    lsp = LspLogHandler(server)
    lsp.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("unmask").addHandler(lsp)
    return path


def quiet_resource_tracker(log_path: Path | None) -> None:
    """Start multiprocessing's resource tracker (the index's worker pool uses it) with the log file, or nothing,
    as its stderr. It inherits stderr, which editors show: when the client leaves while the index's workers
    run, its "leaked semaphore objects" warnings (it unlinks them itself) could reach the editor after ours
    had ended (`finish` unlinks what it can first; a race with the pool's own shutdown left one now and then).
    """
    from multiprocessing import resource_tracker

    try:
        target = open(log_path, "ab") if log_path else open(os.devnull, "wb")  # noqa: SIM115 - closed below
    except OSError:
        return
    saved = os.dup(2)
    try:
        os.dup2(target.fileno(), 2)
        resource_tracker.ensure_running()
    except Exception:  # noqa: BLE001 - then the pool starts it later, with stderr
        log.debug("could not start the resource tracker early", exc_info=True)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        target.close()


# -- entry point ------------------------------------------------------------------------------
def _address(value: str) -> tuple[str | None, int]:
    """``[HOST:]PORT`` -> (HOST or None, PORT); an IPv6 host in brackets: ``[::1]:2087``."""
    host, _, port = value.rpartition(":")
    try:
        return (host.strip("[]") or None), int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, got {value!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="unmask serve",
        description="the unmask language server",
        epilog="--tcp and --ws listen on 127.0.0.1 unless a host is given; any other host needs a token "
        f"(--token or ${transport.TOKEN_ENV}), which every connection must present: over TCP as "
        "initializationOptions.token in initialize, over WebSocket as 'Authorization: Bearer TOKEN' or "
        "?token=TOKEN. WebSocket handshakes with an Origin header are refused unless --allow-origin lists it.",
    )
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (the default)")
    how.add_argument("--tcp", type=_address, metavar="[HOST:]PORT", help="listen on TCP (host: 127.0.0.1)")
    how.add_argument("--ws", type=_address, metavar="[HOST:]PORT", help="listen on WebSocket (host: 127.0.0.1)")
    ap.add_argument("--host", help="address for --tcp/--ws (default 127.0.0.1; any other needs a token)")
    ap.add_argument(
        "--token",
        help=f"token every --tcp/--ws connection must present (default: ${transport.TOKEN_ENV}, which, unlike "
        f"this flag, other users cannot see in the process list; at least {transport.MIN_TOKEN} characters)",
    )
    ap.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="--ws: also accept browser pages from ORIGIN (SCHEME://HOST[:PORT]; repeatable)",
    )
    ap.add_argument("--model", help="model directory (default: the shipped model; modelPath overrides)")
    ap.add_argument(
        "--engine",
        metavar="URL",
        help="complete with a team engine (`unmask engine serve`) at URL instead of the in-process model "
        f"(engine.url overrides; its token: ${ENGINE_TOKEN_ENV})",
    )
    ap.add_argument(
        "--local-fallback",
        action="store_true",
        help="with --engine: also load the local model and answer from it when the engine cannot in time",
    )
    ap.add_argument("--backend", default="onnx", choices=["onnx", "torch"])
    ap.add_argument("--threads", type=int, default=0, help="model intra-op threads (0: runtime default)")
    ap.add_argument("--log-file", default=None, help=f"log file (default: {default_log_file()}; '' for none)")
    ap.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = ap.parse_args(argv)
    if args.host is not None and not (args.tcp or args.ws):
        ap.error("--host goes with --tcp or --ws")
    return args


def listen_on(args: argparse.Namespace) -> tuple[str, int, transport.Guard] | None:
    """Where --tcp/--ws listens and who may connect (None for stdio); exits 2 on unsafe settings."""
    addr = args.tcp or args.ws
    if addr is None:
        return None
    host, port = addr
    if args.host is not None and host is not None and host != args.host:
        sys.exit(f"unmask serve: --host {args.host} and the host in {host}:{port} disagree")
    host = args.host or host or "127.0.0.1"
    try:
        guard = transport.guard_for(host, args.token or os.environ.get(transport.TOKEN_ENV), args.allow_origin)
    except transport.ConfigError as e:
        print(f"unmask serve: {e}", file=sys.stderr)
        sys.exit(2)
    return host, port, guard


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    where = listen_on(args)  # before anything loads: unsafe settings stop here
    one_malloc_arena()  # before any thread starts (lsp/worker.py)
    worker = ModelWorker(backend_config(args.backend, threads=args.threads))
    server = build(worker, args.model)
    if args.engine:
        server.engine_flag = {
            "url": args.engine,
            "token": os.environ.get(ENGINE_TOKEN_ENV),
            "fallback": args.local_fallback,
        }
        worker.backend = server.engine_backend(server.settings)
    path = setup_logging(server, args.log_file, args.log_level)
    quiet_resource_tracker(path)
    log.info("unmask %s serving (pid %d), log file %s", __version__, os.getpid(), path)
    server.watch_load(worker.load(args.model))  # at start, on the model thread, while the client connects
    code = 0
    try:
        if where is None:
            code = transport.serve_stdio(server)
        elif args.tcp:
            transport.serve_tcp(server, *where)
        else:
            transport.serve_ws(server, *where)
    finally:
        finish(server, code)


EXIT_GRACE_S = 1.0  # after the client is gone, how long the threads get to finish before the process exits


def finish(server: UnmaskServer, code: int) -> None:
    """End the process once the client is gone (``exit``, EOF, a closed pipe or socket).

    The threads get :data:`EXIT_GRACE_S` to finish (the model thread its current step, the index's
    process pool its shutdown); the interpreter would otherwise wait for a model load or a long run
    to end before exiting, seconds after the client left.
    """
    server.stop_work()
    end = time.monotonic() + EXIT_GRACE_S
    for t in threading.enumerate():
        if t is not threading.current_thread() and not t.daemon:
            t.join(max(0.0, end - time.monotonic()))
    for p in multiprocessing.active_children():  # the index's worker processes, should they still run
        p.terminate()
        p.join(0.5)
    # What a normal exit would do first: multiprocessing's finalizers of priority >= 0 unlink the worker pool's
    # semaphores (else Python's resource tracker warns of "leaked semaphore objects" on stderr). Not the
    # lower-priority ones: they join queue feeder threads, which can block on a pipe no worker reads.
    run_finalizers = getattr(multiprocessing.util, "_run_finalizers", None)
    if run_finalizers is not None:
        try:
            run_finalizers(0)
        except Exception:  # noqa: BLE001 - exiting regardless
            log.debug("multiprocessing finalizers failed", exc_info=True)
    log.info("exiting (status %d)", code)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)
