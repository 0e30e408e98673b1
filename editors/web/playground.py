"""``unmask playground``: the browser playground, served on loopback.

    unmask playground [--port 8765] [--open] [--model DIR]
    python editors/web/playground.py ...          (the same, from a checkout)

Serves the page built into ``dist/`` (``npm ci && npm run build`` in editors/web: Monaco,
bundled by a pinned esbuild) and one endpoint, ``POST /session``: it starts a fresh
``unmask serve --ws 127.0.0.1:PORT --allow-origin ORIGIN`` with this page's own origin (pygls'
WebSocket server takes one client and stops with it; pages from other origins are refused),
stops the previous one, and answers ``{"ws": "ws://127.0.0.1:PORT"}``. The page then talks
LSP to the server directly. Everything binds to 127.0.0.1; nothing else is reachable.

It knows HTTP and how to start the server; it knows nothing about completions.
"""

from __future__ import annotations

import argparse
import atexit
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import webbrowser
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DIST = Path(__file__).resolve().parent / "dist"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Sessions:
    """One ``unmask serve --ws`` at a time: a new page gets a fresh server, the old one stops."""

    def __init__(self, serve_args: list[str]):
        self.serve_args = serve_args
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def new(self) -> str:
        with self.lock:
            self.stop()
            port = free_port()
            cmd = [sys.executable, "-m", "unmask.lsp.cli", "serve", "--ws", f"{HOST}:{port}", *self.serve_args]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # until it listens (the model loads in the background)
                if self.proc.poll() is not None:
                    raise RuntimeError(f"unmask serve exited with {self.proc.returncode}")
                try:
                    socket.create_connection((HOST, port), timeout=0.2).close()
                    return f"ws://{HOST}:{port}"
                except OSError:
                    time.sleep(0.1)
            raise RuntimeError("unmask serve did not listen within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


class Handler(SimpleHTTPRequestHandler):
    sessions: Sessions
    origins: tuple[str, ...] = ()  # this page's own origins; a browser POST from any other is refused

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.split("?")[0] != "/session":
            self.send_error(404)
            return
        # another site's page can send a simple POST here (no CORS preflight) and so stop the user's
        # session; a rebound DNS name reaches 127.0.0.1 with a foreign Host: both are refused
        origin, host = self.headers.get("Origin"), self.headers.get("Host", "")
        if (origin is not None and origin not in self.origins) or f"http://{host}" not in self.origins:
            self.send_error(403, "this page's origin only")
            return
        try:
            body, code = {"ws": self.sessions.new()}, 200
        except RuntimeError as e:
            body, code = {"error": str(e)}, 500
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args) -> None:  # quiet: only errors
        if args and str(args[1]).startswith(("4", "5")):
            super().log_message(fmt, *args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="unmask playground", description="the browser playground (loopback only)")
    ap.add_argument("--port", type=int, default=8765, help="HTTP port on 127.0.0.1 (0: any free port)")
    ap.add_argument("--open", action="store_true", help="open the page in the default browser")
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    ap.add_argument("--log-file", default=None, help="the server's log file (default: its own default)")
    args = ap.parse_args(argv)
    if not (DIST / "index.html").is_file():
        print(f"unmask playground: {DIST} is missing: run `npm ci && npm run build` in {DIST.parent}", file=sys.stderr)
        return 1
    serve_args = (["--model", args.model] if args.model else []) + (
        ["--log-file", args.log_file] if args.log_file is not None else []
    )
    sessions = Sessions(serve_args)
    atexit.register(sessions.stop)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    handler = type("PlaygroundHandler", (Handler,), {"sessions": sessions})
    httpd = ThreadingHTTPServer((HOST, args.port), partial(handler, directory=str(DIST)))
    url = f"http://{HOST}:{httpd.server_address[1]}/"
    handler.origins = (url.rstrip("/"), f"http://localhost:{httpd.server_address[1]}")  # this page's origins only
    for origin in handler.origins:
        sessions.serve_args += ["--allow-origin", origin]
    print(f"unmask playground: {url}  (Ctrl+C stops it)", flush=True)
    if args.open:
        webbrowser.open(url)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        sessions.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
