"""Client faults: the client goes away in the middle of things, and the server must go away too.

``unmask serve`` serves one client; when that client is gone (its process died, it closed the
pipe or the socket, a WebSocket disconnected while drafts were streaming) the server must exit
within 2 s (:data:`EXIT_S`), leave no child process behind (the workspace index's process pool),
not spin, and print no traceback. Also: ``shutdown`` + ``exit`` sent before the model has loaded
(the "Event loop is closed" traceback), and ``exit`` from a client that keeps the pipe open.

Each test makes the model slow on purpose where it matters: an invoked completion with a long
budget (``invokedBudgetMs``) and streamed drafts, so the client leaves while the model runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

SERVE = [sys.executable, "-m", "unmask.lsp.cli", "serve"]
EXIT_S = 2.0
ANNOUNCE = re.compile(r"listening on (tcp|ws)://(\S+):(\d+)")
OPTIONS = {"streamDrafts": True, "invokedBudgetMs": 20000, "minConfidence": 0}
TEXT = "def mean(values):\n    total = 0\n    for v in values:\n        total += v\n    return "


def frame(msg: dict) -> bytes:
    body = json.dumps(msg).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def initialize(root: Path | None = None) -> dict:
    params = {"processId": None, "rootUri": root.as_uri() if root else None, "capabilities": {}}
    return {
        "jsonrpc": "2.0",
        "id": "init",
        "method": "initialize",
        "params": params | {"initializationOptions": OPTIONS},
    }


def session_messages(uri: str = "file:///tmp/unmask-faults/a.py") -> list[dict]:
    """After initialize: open a document and ask for an invoked completion at its end (the model runs long)."""
    lines = TEXT.split("\n")
    doc = {"uri": uri, "languageId": "python", "version": 1, "text": TEXT}
    pos = {"line": len(lines) - 1, "character": len(lines[-1])}
    return [
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": doc}},
        {
            "jsonrpc": "2.0",
            "id": "c1",
            "method": "textDocument/inlineCompletion",
            "params": {"textDocument": {"uri": uri}, "position": pos, "context": {"triggerKind": 1}},
        },
    ]


def workspace(tmp_path: Path) -> Path:
    """A small folder, so the server starts its index (and its worker process)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    for i in range(30):
        (ws / f"m{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n")
    return ws


def children(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                parents[int(p)] = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = set(), [pid]
    while todo:
        q = todo.pop()
        kids = {c for c, par in parents.items() if par == q}
        out |= kids
        todo.extend(kids)
    return out


def alive(pid: int) -> bool:
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False


def wait_exit(proc: subprocess.Popen, since: float, kids: set[int]) -> float:
    """Seconds from ``since`` until ``proc`` exited; fails past EXIT_S (and kills it), or when a child lives on."""
    try:
        proc.wait(EXIT_S + 8)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"the server did not exit within {EXIT_S + 8} s of the client leaving")
    took = time.monotonic() - since
    time.sleep(0.5)
    left = [k for k in kids if alive(k)]
    for k in left:
        os.kill(k, 9)
    assert not left, f"child processes left behind: {left}"
    assert took <= EXIT_S, f"the server took {took:.2f} s to exit (at most {EXIT_S})"
    return took


def read_until(stream, want: str, timeout: float = 120) -> list[dict]:
    """LSP messages from a byte stream until one whose id or method is ``want``."""
    got, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        length = None
        while (line := stream.readline()) != b"\r\n":
            if not line:
                raise EOFError(f"closed before {want}: {got[-3:]}")
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        msg = json.loads(stream.read(length))
        got.append(msg)
        if msg.get("id") == want or msg.get("method") == want:
            return got
    raise TimeoutError(want)


def no_traceback(stderr: bytes) -> None:
    text = stderr.decode("utf-8", "replace")
    assert "Traceback" not in text and "Event loop is closed" not in text, text[-3000:]


# -- stdio --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["client killed", "stdin closed"])
def test_stdio_client_gone_mid_request_the_server_exits(tmp_path, how):
    """The model is streaming drafts for an invoked completion when the client dies (both pipes close) or
    just closes stdin: the server exits within 2 s, with its index worker processes, and no traceback."""
    proc = subprocess.Popen(
        [*SERVE, "--log-file", str(tmp_path / "lsp.log")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    err: list[bytes] = []
    threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()
    proc.stdin.write(frame(initialize(workspace(tmp_path))))
    proc.stdin.flush()
    read_until(proc.stdout, "init")
    for m in session_messages():
        proc.stdin.write(frame(m))
    proc.stdin.flush()
    read_until(proc.stdout, "unmask/draft")  # the model is running
    kids = children(proc.pid)
    t = time.monotonic()
    proc.stdin.close()
    if how == "client killed":
        proc.stdout.close()
    wait_exit(proc, t, kids)
    time.sleep(0.2)
    no_traceback(b"".join(err))


def test_client_gone_while_the_workspace_is_indexed_leaves_no_warning(tmp_path):
    """The client leaves while the index's worker processes are busy with a 3,000-file workspace: the
    server exits within 2 s, with its workers, and prints nothing (Python's resource tracker warned of
    "leaked semaphore objects": the process ended before the worker pool's semaphores were unlinked)."""
    ws = tmp_path / "big"
    ws.mkdir()
    body = "".join(f"def f{j}(x):\n    return x + {j}\n" for j in range(50))
    for i in range(3000):
        (ws / f"m{i}.py").write_text(body)
    proc = subprocess.Popen(
        [*SERVE, "--log-file", str(tmp_path / "lsp.log")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdin.write(frame(initialize(ws)))
    proc.stdin.flush()
    read_until(proc.stdout, "init")
    proc.stdin.write(frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while not children(proc.pid) and time.monotonic() < deadline:  # the index has started its processes
        time.sleep(0.05)
    time.sleep(3)  # its worker pool is busy (the warning came from 3 s on, here)
    kids = children(proc.pid)
    t = time.monotonic()
    proc.stdin.close()
    wait_exit(proc, t, kids)
    time.sleep(0.5)  # the resource tracker (a child of the server, gone with it) warned after the exit
    err = proc.stderr.read().decode("utf-8", "replace")
    assert "leaked" not in err and "Traceback" not in err, err[-3000:]


def test_shutdown_before_the_model_loaded_is_clean(tmp_path):
    """``shutdown`` and ``exit`` right after ``initialize``, while the model is still loading: exit status 0
    within 2 s, and no "Event loop is closed" traceback (the model load's callback ran on a closed loop)."""
    proc = subprocess.Popen(
        [*SERVE, "--log-file", ""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdin.write(frame(initialize()))
    proc.stdin.write(frame({"jsonrpc": "2.0", "id": "s", "method": "shutdown"}))
    proc.stdin.flush()
    read_until(proc.stdout, "s", 60)
    t = time.monotonic()
    proc.stdin.write(frame({"jsonrpc": "2.0", "method": "exit"}))
    proc.stdin.flush()  # and the pipe stays open: the server must not wait for it
    wait_exit(proc, t, set())
    assert proc.returncode == 0
    no_traceback(proc.stderr.read())


# -- network ------------------------------------------------------------------------------------------
def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, int, list[bytes]]:
    proc = subprocess.Popen(
        [*SERVE, *args, "--log-file", str(tmp_path / "lsp.log")], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    while line := proc.stderr.readline():
        if m := ANNOUNCE.search(line.decode()):
            err: list[bytes] = []
            threading.Thread(target=err.extend, args=(proc.stderr,), daemon=True).start()
            return proc, int(m.group(3)), err
    proc.kill()
    pytest.fail("the server did not announce its address")


@pytest.mark.parametrize("how", ["close", "reset"])
def test_tcp_client_gone_mid_request_the_server_exits(tmp_path, how):
    """The TCP client leaves while drafts stream: a clean close (FIN), or a reset (RST), which is what
    a close with unread drafts in the client's buffer sends, and what a crashed client's kernel sends.
    The reset ended the server's read with ConnectionResetError, past the shutdown: the server stayed up."""
    proc, port, err = start(tmp_path, "--tcp", "0")
    sock = socket.create_connection(("127.0.0.1", port))
    stream = sock.makefile("rb")
    sock.sendall(frame(initialize(workspace(tmp_path))))
    read_until(stream, "init")
    sock.sendall(b"".join(frame(m) for m in session_messages()))
    read_until(stream, "unmask/draft")
    kids = children(proc.pid)
    if how == "reset":  # linger 0: close sends RST
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    t = time.monotonic()
    stream.close()  # the socket's file object holds it open too
    sock.close()
    wait_exit(proc, t, kids)
    no_traceback(b"".join(err))


@pytest.mark.parametrize("how", ["close", "abort"])
def test_ws_client_gone_while_drafts_stream_the_server_exits(tmp_path, how):
    """A WebSocket client that closes (or just drops the TCP connection) while drafts stream."""
    from websockets.asyncio.client import connect

    proc, port, err = start(tmp_path, "--ws", "0")

    async def session() -> tuple[set[int], float]:
        ws = await connect(f"ws://127.0.0.1:{port}")
        await ws.send(json.dumps(initialize(workspace(tmp_path))))
        while json.loads(await asyncio.wait_for(ws.recv(), 120)).get("id") != "init":
            pass
        for m in session_messages():
            await ws.send(json.dumps(m))
        while json.loads(await asyncio.wait_for(ws.recv(), 120)).get("method") != "unmask/draft":
            pass
        kids, t = children(proc.pid), time.monotonic()
        if how == "close":
            await ws.close()
        else:
            ws.transport.abort()
        return kids, t

    kids, t = asyncio.run(session())
    wait_exit(proc, t, kids)
    no_traceback(b"".join(err))
