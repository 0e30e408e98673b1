"""The network transports of ``unmask serve`` (``--tcp``, ``--ws``) and who may connect to them.

* **Loopback by default.** Without ``--host`` (or a host in ``--tcp``/``--ws HOST:PORT``) the
  server listens on 127.0.0.1. Any other address needs a token (``--token`` or
  ``$UNMASK_TOKEN``, at least :data:`MIN_TOKEN` characters); without one the server refuses to
  start (:func:`guard_for` raises :class:`ConfigError` with what to do).
* **A token, when set, is checked on every connection** before anything reaches the LSP
  server. TCP: the first message must be ``initialize`` with ``initializationOptions.token``
  (any LSP client can send it; it is removed from the params before the server sees them, so
  it is never logged or taken for a setting); otherwise the client gets an error response and
  the connection is closed. WebSocket: the handshake carries ``Authorization: Bearer TOKEN``
  or, for browser pages that cannot set headers, ``?token=TOKEN``; otherwise HTTP 401.
* **TCP speaks LSP framing only.** The first message must be ``Content-Length``/``Content-Type``
  headers and a JSON body; anything else (an HTTP request: a web page's cross-site ``fetch``
  POST to the port, which pygls alone would run as JSON-RPC) is dropped unanswered.
* **WebSocket checks ``Origin``** (cross-site WebSocket hijacking): a handshake with an Origin
  header not in the allowed list gets HTTP 403. Allowed: no Origin (editors, CLI clients) and
  each ``--allow-origin`` (the playground passes its own page's origin).
* **One client.** pygls serves one connection and the server stops when it ends, as before; a
  refused connection never stops the server, and a connection arriving while a client is
  served is turned away.
* **Framing errors cost one message, never the connection** (stdio and TCP,
  :func:`read_messages` in place of pygls' ``run_async``): a ``Content-Length`` header is
  found at the end of any line, so garbage without a line end or a wrong length loses the
  broken message (and at most the one after it) and reading goes on at the next header; a
  length over :data:`MAX_CONTENT_LENGTH` is refused with an error in the log instead of
  reading (or allocating) that much.

A start-up line on stderr and in the log says where the server listens, whether it is loopback
only, whether a token is required and which origins are allowed; it never shows the token.

It knows sockets, framing and handshakes; it knows nothing about LSP methods beyond ``initialize``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import re
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from threading import Event
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pygls.exceptions import JsonRpcException
from pygls.io_ import StdinAsyncReader, StdoutWriter

log = logging.getLogger("unmask.lsp")

TOKEN_ENV = "UNMASK_TOKEN"
MIN_TOKEN = 16  # characters
FIRST_MESSAGE_S = 30.0  # a TCP connection that sends no complete first message by then is closed
MAX_FIRST_MESSAGE = 16 << 20  # bytes of the first message's body
INVALID_REQUEST = -32600
MAX_CONTENT_LENGTH = 64 << 20  # bytes of one message body: a longer Content-Length is a framing error
MAX_HEADER_LINE = 64 << 10  # bytes read as one header line at most (garbage without a line end)
_CONTENT_LENGTH = re.compile(rb"content-length[ \t]*:[ \t]*(\d+)[ \t]*\r?\n\Z", re.IGNORECASE)
_HEADER = re.compile(rb"(content-length|content-type)[ \t]*:[ \t]*([^\r\n]*)\r\n", re.IGNORECASE)
_MAKE_TOKEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"


class ConfigError(ValueError):
    """Transport settings the server refuses to start with; the message says what to do."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to anything


def normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


@dataclass(frozen=True)
class Guard:
    """Who may connect: the token (None: whoever reaches the address) and the allowed WebSocket origins."""

    token: str | None = None
    origins: frozenset[str] = frozenset()

    def token_ok(self, presented: Any) -> bool:
        if self.token is None:
            return True
        return isinstance(presented, str) and hmac.compare_digest(presented.encode(), self.token.encode())

    def ws_refusal(self, path: str, headers: Any) -> tuple[HTTPStatus, str] | None:
        """Why a WebSocket handshake is refused, or None to accept it."""
        origin = headers.get("Origin")
        if origin is not None and normalize_origin(origin) not in self.origins:
            return HTTPStatus.FORBIDDEN, f"origin {origin!r} is not allowed (unmask serve --allow-origin ORIGIN)"
        if self.token is not None:
            auth = headers.get("Authorization") or ""
            presented: str | None = auth[7:].strip() if auth[:7].lower() == "bearer " else None
            if presented is None:
                q = parse_qs(urlsplit(path).query).get("token")
                presented = q[0] if q else None
            if not self.token_ok(presented):
                return HTTPStatus.UNAUTHORIZED, "missing or wrong token (Authorization: Bearer TOKEN, or ?token=TOKEN)"
        return None


def guard_for(host: str, token: str | None, origins: Iterable[str] = ()) -> Guard:
    """The guard for listening on ``host``; :class:`ConfigError` when the settings are unsafe or malformed."""
    token = token or None
    if token is not None and len(token) < MIN_TOKEN:
        raise ConfigError(
            f"the token (--token or {TOKEN_ENV}) has {len(token)} characters; use at least {MIN_TOKEN} random ones, "
            f"e.g. export {TOKEN_ENV}=$({_MAKE_TOKEN})"
        )
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without a token: anyone who can reach that address could drive the "
            f"server and see your code through its repository context. Set {TOKEN_ENV} (or --token) to a long "
            f"random string, e.g. export {TOKEN_ENV}=$({_MAKE_TOKEN}), and give the client the same token "
            "(docs/protocol.md, Security); or leave out --host to listen on 127.0.0.1 only"
        )
    allowed = set()
    for o in origins:
        u = urlsplit(o.strip())
        if u.scheme not in ("http", "https") or not u.netloc or u.path not in ("", "/") or u.query:
            raise ConfigError(f"--allow-origin {o!r}: expected SCHEME://HOST[:PORT], e.g. http://127.0.0.1:8765")
        allowed.add(normalize_origin(o))
    return Guard(token, frozenset(allowed))


def announce(kind: str, sockets: Iterable[Any], host: str, guard: Guard) -> str:
    """The start-up line (stderr and the log): where, loopback or not, token, origins. Never the token."""
    urls = []
    for sock in sockets:
        h, p = sock.getsockname()[:2]
        urls.append(f"{kind}://{'[' + h + ']' if ':' in h else h}:{p}")
    parts = [f"unmask serve: listening on {', '.join(urls)}"]
    parts.append("loopback only" if is_loopback(host) else "reachable from other machines")
    if guard.token is None:
        parts.append("no token (set UNMASK_TOKEN to require one)")
    elif kind == "tcp":
        parts.append("token required: initializationOptions.token in the first message, initialize")
    else:
        parts.append("token required: Authorization: Bearer TOKEN or ?token=TOKEN")
    if kind == "ws":
        parts.append("origins allowed: no Origin header" + "".join(f", {o}" for o in sorted(guard.origins)))
    msg = "; ".join(parts)
    log.info("%s", msg)
    print(msg, file=sys.stderr, flush=True)
    return msg


# -- LSP framing (stdio and TCP) ---------------------------------------------------------------
def handle(protocol: Any, body: bytes, error_handler: Any = None) -> None:
    """One message's body to pygls' protocol, as pygls' readers do: a body that is not a message is
    logged (and passed to ``error_handler``) and dropped."""
    try:
        protocol.handle_message(json.loads(body, object_hook=protocol.structure_message))
    except Exception as exc:
        log.exception("Unable to handle message")
        if error_handler is not None:
            error_handler(exc, JsonRpcException)


async def read_messages(stop: Event, reader: Any, protocol: Any, error_handler: Any = None) -> None:
    """Read framed messages from ``reader`` and hand each to ``protocol`` until EOF or ``stop``.

    pygls' ``run_async`` takes ``Content-Length`` only from a line that is exactly that header,
    and a message body has no line end, so after one framing error it never found a header
    again (the server stayed up, deaf), and it read whatever length it was told (99,999,999,999
    ended the server with MemoryError). Here the header is taken from the end of any line
    (whatever came before it on the line is skipped), and a length over
    :data:`MAX_CONTENT_LENGTH` is refused. A body that is not a message is logged and dropped,
    as pygls does.
    """
    length: int | None = None
    while not stop.is_set():
        try:
            line = await reader.readline()
        except ValueError:  # asyncio: a line over the stream's limit (dropped); read on
            log.warning("LSP framing: dropped a header line over the stream's limit")
            continue
        except ConnectionError as e:  # a reset (RST) ends the session as EOF does
            log.info("the client's connection ended (%s)", type(e).__name__)
            break
        if not line:
            break
        if (m := _CONTENT_LENGTH.search(line)) is not None:
            if m.start():
                log.warning("LSP framing: skipped %d bytes that were not a message before a header", m.start())
            length = int(m.group(1))
            if length > MAX_CONTENT_LENGTH:
                log.error(
                    "LSP framing: refused a Content-Length of %d bytes (at most %d); the message is skipped",
                    length,
                    MAX_CONTENT_LENGTH,
                )
                length = None
            continue
        if line.strip():  # another header (Content-Type), or bytes that are not a message
            continue
        if length is None:  # a blank line with no Content-Length before it
            continue
        n, length = length, None
        try:
            body = await reader.readexactly(n) if n else b""
        except (asyncio.IncompleteReadError, ConnectionError):  # EOF or a reset in the body
            log.info("the client's connection ended in a message body")
            break
        if len(body) < n:  # EOF in the body (stdin's reader returns it short)
            break
        handle(protocol, body, error_handler)


class StdioReader(StdinAsyncReader):
    """pygls' stdin reader, reading a header line of at most :data:`MAX_HEADER_LINE` bytes, on a thread of its
    own (on pygls' pool, each read was often queued before the last one's thread counted as idle again, so the
    pool grew a thread at a time to its maximum during a typing storm, and the threads stayed)."""

    def __init__(self, stdin: Any):
        super().__init__(stdin, ThreadPoolExecutor(max_workers=1, thread_name_prefix="unmask-stdin"))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def readline(self) -> Any:
        return self.loop.run_in_executor(self.executor, self.stdin.readline, MAX_HEADER_LINE)


class StdioWriter(StdoutWriter):
    """pygls' stdout writer that takes a closed pipe as the client leaving: the write is dropped, reading
    stops (``gone``), and nothing is raised (pygls logged a BrokenPipeError traceback for each message)."""

    def __init__(self, stdout: Any, gone: Any):
        super().__init__(stdout)
        self.gone, self.closed = gone, False

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            super().write(data)
        except (BrokenPipeError, ConnectionError, ValueError):  # ValueError: stdout itself was closed
            self.closed = True
            log.info("the client closed its end of the pipe: shutting down")
            self.gone()


def serve_stdio(server: Any) -> int:
    """Serve one LSP client over stdin/stdout (pygls' ``start_io``, reading with :func:`read_messages`).

    Returns the exit status: ``exit``'s (0 after ``shutdown``, else 1), 0 when the client is gone
    (stdin ended or stdout closed)."""
    server._stop_event = stop = Event()
    reader = StdioReader(sys.stdin.buffer)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        server.protocol.set_writer(StdioWriter(sys.stdout.buffer, task.cancel))
        await read_messages(stop, reader, server.protocol, server.report_server_error)

    code = 0
    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    except SystemExit as e:  # pygls' exit handler
        code = e.code if isinstance(e.code, int) else 0
    finally:
        reader.close()
        server.shutdown()
    return code


# -- TCP ----------------------------------------------------------------------------------------
class Refused(Exception):
    def __init__(self, why: str, reply: bytes | None = None, quiet: bool = False):
        super().__init__(why)
        self.reply, self.quiet = reply, quiet


def _frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def _error(msg_id: Any, message: str) -> bytes | None:
    if msg_id is None:
        return None
    err = {"jsonrpc": "2.0", "id": msg_id, "error": {"code": INVALID_REQUEST, "message": message}}
    return _frame(json.dumps(err).encode())


async def first_message(reader: asyncio.StreamReader, guard: Guard) -> tuple[bytes, Any]:
    """Read and check a TCP connection's first LSP message: (the bytes to hand on to pygls, token
    removed; its id)."""
    length = None
    for _ in range(8):
        try:
            line = await reader.readline()
        except ValueError:  # a line over the stream's limit
            raise Refused("not an LSP message (an over-long header line)") from None
        if not line:
            raise Refused("closed before its first message", quiet=True)
        if line == b"\r\n":
            break
        m = _HEADER.fullmatch(line)
        if m is None:
            raise Refused("not an LSP message (an HTTP request from a web page?)")
        if m.group(1).lower() == b"content-length":
            length = int(m.group(2)) if m.group(2).strip().isdigit() else None
    else:
        raise Refused("not an LSP message (too many header lines)")
    if length is None or length > MAX_FIRST_MESSAGE:
        raise Refused("not an LSP message (no usable Content-Length)")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise Refused("closed in its first message", quiet=True) from None
    try:
        msg = json.loads(body)
    except ValueError:
        raise Refused("the first message is not JSON") from None
    msg_id = msg.get("id") if isinstance(msg, dict) else None
    if guard.token is None:
        return _frame(body), msg_id
    params = msg.get("params") if isinstance(msg, dict) else None
    opts = params.get("initializationOptions") if isinstance(params, dict) else None
    if not isinstance(msg, dict) or msg.get("method") != "initialize":
        why = "this server needs a token: the first message must be initialize with initializationOptions.token"
        raise Refused(why, _error(msg_id, f"unmask serve: {why}"))
    if not isinstance(opts, dict) or not guard.token_ok(opts.get("token")):
        why = "missing or wrong token in initializationOptions.token (the value of --token or UNMASK_TOKEN)"
        raise Refused(why, _error(msg_id, f"unmask serve: {why}"))
    del opts["token"]
    return _frame(json.dumps(msg).encode()), msg_id


class _Replay:
    """A stream reader that first serves ``head`` (the checked first message), then the connection."""

    def __init__(self, head: bytes, reader: asyncio.StreamReader):
        self.head, self.reader = head, reader

    async def readline(self) -> bytes:
        if self.head:
            i = self.head.find(b"\n")
            if i >= 0:
                line, self.head = self.head[: i + 1], self.head[i + 1 :]
                return line
            rest, self.head = self.head, b""
            return rest + await self.reader.readline()
        return await self.reader.readline()

    async def readexactly(self, n: int) -> bytes:
        if self.head:
            got, self.head = self.head[:n], self.head[n:]
            return got if len(got) == n else got + await self.reader.readexactly(n - len(got))
        return await self.reader.readexactly(n)


def serve_tcp(server: Any, host: str, port: int, guard: Guard) -> None:
    """Serve one LSP client over TCP (pygls' ``start_tcp``, with the checks above)."""
    server._stop_event = stop = Event()
    busy = False

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal busy
        peer = writer.get_extra_info("peername")
        try:
            head, msg_id = await asyncio.wait_for(first_message(reader, guard), FIRST_MESSAGE_S)
            if busy:
                why = "another client is connected"
                raise Refused(why, _error(msg_id, f"unmask serve: {why}"))
        except (Refused, TimeoutError, ConnectionError) as e:
            why = str(e) or "no first message in time"
            level = logging.DEBUG if getattr(e, "quiet", False) else logging.WARNING
            log.log(level, "refused a TCP connection from %s: %s", peer, why)
            try:
                if getattr(e, "reply", None):
                    writer.write(e.reply)
                    await writer.drain()
                writer.close()
            except ConnectionError:
                pass
            return
        busy = True
        log.info("client connected over TCP from %s", peer)
        server.protocol.set_writer(writer)
        try:
            await read_messages(stop, _Replay(head, reader), server.protocol, server.report_server_error)
        finally:  # whatever ended the read, the one client is gone: so is the server
            server.shutdown()

    _run(server, "tcp", lambda: asyncio.start_server(connection, host, port), host, guard)


# -- WebSocket ----------------------------------------------------------------------------------
def serve_ws(server: Any, host: str, port: int, guard: Guard) -> None:
    """Serve one LSP client over WebSocket (pygls' ``start_ws``, with the checks above)."""
    from websockets.asyncio.server import serve

    server._stop_event = stop = Event()
    busy = False

    def check(connection: Any, request: Any) -> Any:
        refusal = guard.ws_refusal(request.path, request.headers)
        if refusal is None and busy:
            refusal = HTTPStatus.CONFLICT, "another client is connected"
        if refusal is None:
            return None
        status, why = refusal
        log.warning("refused a WebSocket connection from %s: %s", connection.remote_address, why)
        return connection.respond(status, why + "\n")

    async def handler(websocket: Any) -> None:
        nonlocal busy
        busy = True
        log.info("client connected over WebSocket from %s", websocket.remote_address)
        try:
            await read_websocket(stop, websocket, server.protocol, server.report_server_error)
        finally:
            server.shutdown()

    _run(server, "ws", lambda: serve(handler, host, port, process_request=check), host, guard)


class WebSocketWriter:
    """Sends each message as a WebSocket text frame; once the client is gone, drops them (pygls' writer left a
    ``ConnectionClosed`` in a task per message: "Task exception was never retrieved", with a traceback)."""

    def __init__(self, websocket: Any):
        self.ws = websocket

    async def close(self) -> None:
        await self.ws.close()

    async def write(self, data: bytes) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self.ws.send(data)
        except ConnectionClosed:
            pass  # the read loop sees it too, and ends the session


async def read_websocket(stop: Event, websocket: Any, protocol: Any, error_handler: Any = None) -> None:
    """pygls' ``run_websocket`` with :class:`WebSocketWriter`: one message per frame until the client leaves."""
    from websockets.exceptions import ConnectionClosed

    protocol.set_writer(WebSocketWriter(websocket), include_headers=False)
    while not stop.is_set():
        try:
            data = await websocket.recv(decode=False)
        except ConnectionClosed:
            log.info("the WebSocket client disconnected: shutting down")
            break
        handle(protocol, data, error_handler)
    stop.set()
    await websocket.close()


def _run(server: Any, kind: str, start: Any, host: str, guard: Guard) -> None:
    """Start the listening server ``start()`` makes, say where it listens, serve until stopped."""

    async def main() -> None:
        server._server = srv = await start()
        announce(kind, srv.sockets, host, guard)
        async with srv:
            await srv.serve_forever()

    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        pass
