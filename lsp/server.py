"""The unmask language server: pygls wiring, thin handlers, transports and logging.

    unmask serve                       stdio (what editors spawn)
    unmask serve --tcp 127.0.0.1:2087  one client over TCP
    unmask serve --ws 2087             one client over WebSocket (loopback unless a host is given)

The model is loaded and warmed up once, at start, on the model thread
(:class:`~unmask.lsp.worker.ModelWorker`); the asyncio loop only speaks LSP. Each handler has
one shape: get the document → the text around the cursor (:mod:`unmask.lsp.convert`) → the
completer (:mod:`unmask.lsp.completer`) → convert back → return. Custom methods live in
:mod:`unmask.lsp.protocol` and are documented in ``docs/protocol.md``.

Logs go to ``window/logMessage`` (info and up) and to a log file; nothing is ever sent over
the network beyond the client connection itself.

It knows LSP and the pieces above; it holds no model logic and no text heuristics.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import logging
import os
import sys
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

from . import config, convert
from . import protocol as ext
from .completer import Completer, Request, Stale, Superseded
from .worker import ModelWorker

log = logging.getLogger("unmask.lsp")

try:
    __version__ = version("unmask")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"


_arrival: contextvars.ContextVar[Request | None] = contextvars.ContextVar("unmask_arrival", default=None)


class UnmaskProtocol(LanguageServerProtocol):
    """pygls' protocol with these additions, all at message arrival (pygls runs async handlers later):

    * each content change is recorded, with the text it replaced, before it is applied;
    * a request whose params do not fit its method gets an InvalidParams answer (pygls sends none),
      and ``$/cancelRequest`` for a request in flight is counted;
    * an inline completion request snapshots the document (text, version, cursor) as it is
      when the request arrives, so a didChange read meanwhile cannot slip under it.
    """

    _server: UnmaskServer

    def _handle_request(self, msg_id, method_name, params):
        if method_name == types.TEXT_DOCUMENT_INLINE_COMPLETION and isinstance(params, types.InlineCompletionParams):
            doc = open_document(self.workspace, params.text_document.uri)
            if doc is not None:
                _arrival.set(convert.request(doc, params, msg_id))  # the handler's task copies this context
        super()._handle_request(msg_id, method_name, params)

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
            self._server.completer.stats.cancelled += 1
        super()._handle_cancel_notification(msg_id)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        doc = open_document(self.workspace, params.text_document.uri)
        if doc is None:
            log.warning("didChange for %s, which is not open: ignored", params.text_document.uri)
            return
        for change in params.content_changes:
            edit = convert.edit(doc, change, params.text_document.version)
            self.workspace.update_text_document(params.text_document, change)
            self._server.completer.edited(doc.uri, edit)
        if (user_handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield user_handler, (params,), None


_ANSWERED = object()  # a malformed request that already got its error response


def open_document(ws, uri: str) -> TextDocument | None:
    """The open document at ``uri`` (pygls would otherwise read an unopened one from disk)."""
    return ws.text_documents.get(unquote(uri))


class UnmaskServer(LanguageServer):
    def __init__(self, worker: ModelWorker, model_flag: str | None = None):
        super().__init__("unmask", __version__, protocol_cls=UnmaskProtocol)
        self.settings = config.Settings()
        self.worker = worker
        self.model_flag = model_flag  # --model; settings' modelPath overrides it
        self.completer = Completer(worker, lambda: self.settings, self.send_draft)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pending_loads: list[Future] = []

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
        if new.model_path != old.model_path:
            self.watch_load(self.worker.load(new.model_path or self.model_flag))

    def watch_load(self, fut: Future) -> None:
        """Tell the user when a model load fails (once the event loop runs)."""
        if self.loop is None:
            self._pending_loads.append(fut)
            return
        loop = self.loop
        fut.add_done_callback(lambda f: loop.call_soon_threadsafe(self._load_done, f))

    def _load_done(self, fut: Future) -> None:
        if (e := fut.exception()) is None:
            return
        using = f" Still using {self.worker.model_path}." if self.worker.engine else " No completions until fixed."
        msg = f"unmask: {e}{using}"
        log.error("%s", msg)
        self.window_show_message(types.ShowMessageParams(type=types.MessageType.Error, message=msg))

    def send_draft(self, req, draft) -> None:
        """Stream one denoising step to the client (``unmask/draft``)."""
        self.protocol.notify(ext.DRAFT, ext.to_wire(convert.draft(req, draft)))

    def stats(self) -> ext.Stats:
        s = self.completer.stats
        s.model_calls = self.worker.model_calls
        s.model = self.worker.model_path
        return s


def build(worker: ModelWorker, model_flag: str | None = None) -> UnmaskServer:
    """The server with all handlers registered."""
    server = UnmaskServer(worker, model_flag)

    @server.feature(types.INITIALIZE)
    def initialize(ls: UnmaskServer, params: types.InitializeParams) -> None:
        """Adopt the event loop and the client's initializationOptions."""
        ls.loop = asyncio.get_running_loop()
        for fut in ls._pending_loads:
            ls.watch_load(fut)
        ls._pending_loads.clear()
        ls.apply_settings(params.initialization_options, "initializationOptions")

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
        """Start tracking the document."""
        ls.completer.opened(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: UnmaskServer, params: types.DidCloseTextDocumentParams) -> None:
        """Forget the document and cancel its work."""
        ls.completer.closed(params.text_document.uri)

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
        return convert.inline_list(doc, params.position, req, out.text, out.id)

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

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: UnmaskServer, params: Any) -> None:
        """Stop model work."""
        ls.worker.close()

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


# -- entry point ------------------------------------------------------------------------------
def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, got {value!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="unmask serve", description="the unmask language server")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (the default)")
    how.add_argument("--tcp", type=_address, metavar="[HOST:]PORT", help="listen on TCP (host: 127.0.0.1)")
    how.add_argument("--ws", type=_address, metavar="[HOST:]PORT", help="listen on WebSocket (host: 127.0.0.1)")
    ap.add_argument("--model", help="model directory (default: the shipped model; modelPath overrides)")
    ap.add_argument("--backend", default="onnx", choices=["onnx", "torch"])
    ap.add_argument("--threads", type=int, default=0, help="model intra-op threads (0: runtime default)")
    ap.add_argument("--log-file", default=None, help=f"log file (default: {default_log_file()}; '' for none)")
    ap.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    backend: dict[str, Any] = {"type": args.backend}
    if args.threads:
        backend["threads"] = args.threads
    worker = ModelWorker(backend)
    server = build(worker, args.model)
    path = setup_logging(server, args.log_file, args.log_level)
    log.info("unmask %s serving (pid %d), log file %s", __version__, os.getpid(), path)
    server.watch_load(worker.load(args.model))  # at start, on the model thread, while the client connects
    if args.tcp:
        server.start_tcp(*args.tcp)
    elif args.ws:
        server.start_ws(*args.ws)
    else:
        server.start_io()
