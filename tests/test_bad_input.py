"""Bad input through the real server: ``unmask serve`` over stdio, spoken to byte by byte.

Every bad message or document gets a JSON-RPC error or a silent (or empty) answer, the server
keeps running, and a normal completion afterwards still works:

* malformed JSON-RPC: garbage lines, bodies that are not JSON, not UTF-8, not objects, not
  JSON-RPC, nested 100,000 deep; unknown methods; params of the wrong type or shape for
  requests (an InvalidParams error with the request's id) and for notifications (dropped);
* documents: 20 MB, a 2 MB minified one-line file, 100,000 lines, NUL bytes, text that is not
  UTF-8 (raw bytes: the message is dropped; lone surrogates: read as U+FFFD), deeply nested
  code. Each gets an inline completion at its end, then three keystrokes and another one; the
  latencies and the server's per-stage times are printed (``pytest -s``), not asserted.

Framing errors (garbage without a line end, a wrong ``Content-Length``, one larger than memory)
cost the broken message and at most the next one: the reader (``lsp/transport.py``
``read_messages``) resynchronises on the next header. With pygls' own reader the server stayed
up but never read another message, and a ``Content-Length`` larger than memory ended it. See
RELIABILITY.md, "Bad input".
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time

import pytest

SERVER = [sys.executable, "-m", "unmask.lsp.cli", "serve", "--log-file", ""]
INVALID_PARAMS, METHOD_NOT_FOUND = -32602, -32601


class Wire:
    """``unmask serve`` on a pipe: raw bytes in, framed JSON-RPC messages out (a reader thread)."""

    def __init__(self):
        self.proc = subprocess.Popen(SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.inbox: queue.Queue = queue.Queue()
        self.other: list[dict] = []  # notifications and answers nobody waited for
        self.stderr: list[bytes] = []
        self.ids = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        self.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}}, timeout=120)
        self.notify("initialized", {})

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            length = None
            while (line := out.readline()) != b"\r\n":
                if not line:
                    self.inbox.put(None)
                    return
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            self.inbox.put(json.loads(out.read(length)))

    def send_bytes(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    @staticmethod
    def frame(body: bytes) -> bytes:
        return b"Content-Length: %d\r\n\r\n" % len(body) + body

    def send(self, message: dict) -> None:
        self.send_bytes(self.frame(json.dumps(message).encode()))

    def notify(self, method: str, params) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params=None, timeout: float = 60, msg_id=None) -> dict:
        """Send a request and wait for its answer (the whole response message)."""
        self.ids += 1
        msg_id = f"r{self.ids}" if msg_id is None else msg_id
        message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self.answer(msg_id, timeout)

    def answer(self, msg_id, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                m = self.inbox.get(timeout=left)
            except queue.Empty:
                break
            if m is None:
                raise EOFError(f"the server closed stdout (exit status {self.proc.wait(10)}): {self.tail()}")
            if m.get("id") == msg_id and ("result" in m or "error" in m):
                return m
            self.other.append(m)
        raise TimeoutError(f"no answer to {msg_id!r} in {timeout} s")

    def nothing_for(self, msg_ids: list, seconds: float = 0.5) -> None:
        """No answer to any of ``msg_ids`` came (checked after a later request was answered)."""
        time.sleep(seconds)
        while not self.inbox.empty():
            self.other.append(self.inbox.get())
        assert not [m for m in self.other if m.get("id") in msg_ids and ("result" in m or "error" in m)]

    def alive(self) -> bool:
        return "result" in self.request("unmask/stats", {}, timeout=20)

    def tail(self) -> str:
        return b"".join(self.stderr)[-2000:].decode("utf-8", "replace")

    def close(self, graceful: bool = True) -> None:
        try:
            if graceful and self.proc.poll() is None:
                self.request("shutdown", timeout=10)
                self.notify("exit", None)
                self.proc.wait(10)
        except (OSError, EOFError, TimeoutError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def wire():
    w = Wire()
    yield w
    w.close()


def open_doc(w: Wire, uri: str, text: str, language: str = "python") -> None:
    w.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}})


def complete(w: Wire, uri: str, line: int, character: int, invoked: bool = True, msg_id=None) -> dict:
    params = {
        "textDocument": {"uri": uri},
        "position": {"line": line, "character": character},
        "context": {"triggerKind": 1 if invoked else 2},
    }
    return w.request("textDocument/inlineCompletion", params, timeout=120, msg_id=msg_id)


def end_of(text: str) -> tuple[int, int]:
    last = text.split("\n")[-1]
    return text.count("\n"), len(last.encode("utf-16-le")) // 2


def a_normal_completion_works(w: Wire) -> None:
    uri = f"file:///tmp/unmask-bad/normal{w.ids}.py"
    text = "def add(a, b):\n    return "
    open_doc(w, uri, text)
    got = complete(w, uri, *end_of(text))
    assert "result" in got, got
    assert all(i["insertText"].startswith("    return ") for i in got["result"]["items"])
    w.notify("textDocument/didClose", {"textDocument": {"uri": uri}})


# -- malformed JSON-RPC ---------------------------------------------------------------------------
def deep(n: int) -> bytes:
    return b'{"jsonrpc":"2.0","id":"deep","method":"unmask/stats","params":' + b"[" * n + b"]" * n + b"}"


DROPPED = {  # bytes the server reads and drops without an answer (pygls logs them; some show a message)
    "garbage line": b"\x00\xff\xfe garbage \x80 bytes\r\n",
    "blank and unknown header lines": b"\r\n\r\nContent-Type: text/plain\r\nX-Nonsense: 1\r\n\r\n",
    "body not JSON": Wire.frame(b"{this is not json"),
    "body not UTF-8": Wire.frame(b'{"jsonrpc":"2.0","id":"utf","method":"unmask/stats","params":{"a":"\xff\xfe"}}'),
    "body a JSON array": Wire.frame(b"[1, 2, 3]"),
    "body a JSON string": Wire.frame(b'"hello"'),
    "no jsonrpc member": Wire.frame(b'{"id":"nojsonrpc","method":"unmask/stats"}'),
    "nested 100,000 deep": Wire.frame(deep(100_000)),
    "empty body": Wire.frame(b""),
}


@pytest.mark.parametrize("name", list(DROPPED))
def test_unreadable_messages_are_dropped_and_the_server_reads_on(wire: Wire, name: str):
    wire.send_bytes(DROPPED[name])
    assert wire.alive(), wire.tail()
    wire.nothing_for(["utf", "nojsonrpc", "deep"])


REQUESTS = [  # (method, params, expected error code or None for a normal answer)
    ("unknown/method", {}, METHOD_NOT_FOUND),
    ("textDocument/inlineCompletion", [1, 2], INVALID_PARAMS),
    ("textDocument/inlineCompletion", None, INVALID_PARAMS),
    ("textDocument/inlineCompletion", {"textDocument": {"uri": 5}, "position": "x"}, INVALID_PARAMS),
    (
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": "file:///x.py"},
            "position": {"line": -1, "character": 0},
            "context": {"triggerKind": 1},
        },
        INVALID_PARAMS,
    ),
    (
        "textDocument/inlineCompletion",  # well formed, but the document is not open
        {
            "textDocument": {"uri": "file:///nowhere.py"},
            "position": {"line": 0, "character": 0},
            "context": {"triggerKind": 1},
        },
        INVALID_PARAMS,
    ),
    (
        "textDocument/copilotInlineEdit",
        {"textDocument": {"uri": "file:///x.py"}, "position": {"line": "a"}},
        INVALID_PARAMS,
    ),
    ("textDocument/copilotInlineEdit", "x", INVALID_PARAMS),  # was never answered (AttributeError on arrival)
    ("textDocument/copilotInlineEdit", [1], INVALID_PARAMS),
    ("unmask/document", {"textDocument": {"uri": 5}}, INVALID_PARAMS),
    ("unmask/document", None, INVALID_PARAMS),
    ("unmask/timings", {"limit": "x"}, None),  # a bad limit is ignored: all timings
    ("unmask/stats", [1], None),
    ("workspace/executeCommand", {"command": 5}, INVALID_PARAMS),
    ("workspace/executeCommand", {"command": "no.such.command"}, INVALID_PARAMS),
]


@pytest.mark.parametrize("method, params, code", REQUESTS, ids=[f"{m} {json.dumps(p)[:40]}" for m, p, _ in REQUESTS])
def test_bad_requests_get_an_error_with_their_id(wire: Wire, method: str, params, code):
    got = wire.request(method, params, timeout=30)
    if code is None:
        assert "result" in got, got
    else:
        assert got.get("error", {}).get("code") == code, got
    assert wire.alive()


@pytest.mark.parametrize("msg_id", [{"an": "object"}, 10**30, [1]])
def test_a_request_id_of_the_wrong_type_gets_an_error(wire: Wire, msg_id):
    wire.send({"jsonrpc": "2.0", "id": msg_id, "method": "unmask/stats"})
    assert wire.answer(msg_id, 30)["error"]["code"] == INVALID_PARAMS
    assert wire.alive()


def test_bad_notifications_are_dropped(wire: Wire):
    """Notifications have no answer: a bad one is logged and dropped; the documents stay as they were."""
    uri = "file:///tmp/unmask-bad/kept.py"
    open_doc(wire, uri, "abc\ndef")
    for method, params in [
        ("textDocument/didOpen", {"textDocument": {"uri": "file:///tmp/unmask-bad/n.py", "languageId": 1, "text": 5}}),
        ("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": "x"}),
        (
            "textDocument/didChange",
            {"textDocument": {"uri": "file:///not-open.py", "version": 2}, "contentChanges": []},
        ),
        (
            "textDocument/didChange",  # negative positions do not fit the protocol's types
            {
                "textDocument": {"uri": uri, "version": 2},
                "contentChanges": [
                    {"range": {"start": {"line": 0, "character": -1}, "end": {"line": 0, "character": 0}}, "text": "N"}
                ],
            },
        ),
        ("textDocument/didClose", {"textDocument": {"uri": "file:///not-open.py"}}),
        ("textDocument/didSave", {"textDocument": {"uri": "file:///not-open.py"}}),
        ("workspace/didChangeConfiguration", {"settings": [1, 2]}),
        (
            "workspace/didChangeConfiguration",
            {"settings": {"latencyBudgetMs": {"a": 1}, "context": 5, "nextEdit": [1]}},
        ),
        ("$/cancelRequest", {"id": {"x": 1}}),
        ("$/setTrace", {"value": 5}),
        ("unknown/notification", {"a": 1}),
    ]:
        wire.notify(method, params)
        assert wire.alive(), (method, wire.tail())
    got = wire.request("unmask/document", {"textDocument": {"uri": uri}})["result"]
    assert (got["text"], got["version"]) == ("abc\ndef", 1)
    assert "error" in wire.request("unmask/document", {"textDocument": {"uri": "file:///tmp/unmask-bad/n.py"}})
    wire.notify("workspace/didChangeConfiguration", {"settings": {"minConfidence": 0}})  # back to a sane state


def test_positions_outside_the_document_are_clamped(wire: Wire):
    """A change past the last line lands at the end; a character past a line's end at the line's end (LSP);
    a range given end first is an insert at its start (in both of the server's copies: no re-sync)."""
    uri = "file:///tmp/unmask-bad/clamp.py"
    open_doc(wire, uri, "abc\ndef")
    for version, (start, end, text) in enumerate(
        [((10**9, 10**9), (10**9, 10**9), "X"), ((0, 99), (0, 99), "Y"), ((1, 2), (0, 1), "R")], start=2
    ):
        rng = {"start": {"line": start[0], "character": start[1]}, "end": {"line": end[0], "character": end[1]}}
        wire.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"range": rng, "text": text}]},
        )
    assert wire.request("unmask/document", {"textDocument": {"uri": uri}})["result"]["text"] == "abcY\ndeRfX"
    assert "result" in complete(wire, uri, 1, 5)
    assert wire.request("unmask/document", {"textDocument": {"uri": uri}})["result"]["text"] == "abcY\ndeRfX"
    assert not [m for m in wire.other if "drifted" in json.dumps(m)]


def test_after_the_malformed_messages_a_normal_completion_works(wire: Wire):
    a_normal_completion_works(wire)
    assert wire.proc.poll() is None


# -- framing errors (the transport) ---------------------------------------------------------------
STATS = json.dumps({"jsonrpc": "2.0", "id": "lost", "method": "unmask/stats"}).encode()
FRAMING = {
    "garbage without a line end": b"\x00\xffgarbage",
    "Content-Length too small": b"Content-Length: 5\r\n\r\n" + STATS,
    "Content-Length too large": b"Content-Length: %d\r\n\r\n" % (len(STATS) + 20) + STATS,
    "Content-Length larger than memory": b"Content-Length: 99999999999\r\n\r\n{}",
    "Content-Length of 3 GB": b"Content-Length: 3000000000\r\n\r\n{}",
    "header after garbage on its line": b"\x00\xffgarbage" + Wire.frame(STATS),
}


@pytest.mark.parametrize("name", list(FRAMING))
def test_after_a_framing_error_the_server_reads_on(name: str):
    """The reader resynchronises on the next ``Content-Length`` header (``transport.read_messages``): the
    broken message is lost, and at most the one after it; the server stays up and answers the rest."""
    w = Wire()
    try:
        w.send_bytes(FRAMING[name])
        for i in range(3):  # the broken message may take the next one with it; the one after must be answered
            w.send({"jsonrpc": "2.0", "id": f"after{i}", "method": "unmask/stats"})
        w.answer("after2", 4)
        assert w.alive() and w.proc.poll() is None
    finally:
        w.close(graceful=False)
    if "3 GB" in name or "memory" in name:
        assert b"refused a Content-Length" in b"".join(w.stderr)


# -- bad documents --------------------------------------------------------------------------------
LINE = "    total = compute_value(items, index) + offset * 2  # running total of the values\n"
DOCUMENTS = {  # name: (language, text)
    "20 MB": ("python", "def f(items, index, offset):\n" + LINE * (20_000_000 // len(LINE)) + "    return "),
    "2 MB minified, one line": ("javascript", "var a=" + "{b:[1,2,3],c:function(x){return x*2}}," * 52_632 + "z="),
    "100,000 lines": ("python", "def f(items, index, offset):\n" + "    x = 1\n" * 100_000 + "    return "),
    "NUL bytes": ("python", "x = 1\n\x00\x00\x01\x02\x00 binary \x00\n" * 1000 + "y = "),
    "lone surrogates": ("python", "x = '\udcff\ud800'\ny = "),
    "Latin-1 read as text": ("python", "name = 'caf\xe9 na\xefve'\n# \xa9 \xb5 \xff\nvalue = "),
    "brackets nested 5,000 deep": ("python", "x = " + "[" * 5000 + "]" * 5000 + "\ny = "),
    "calls nested 5,000 deep": ("javascript", "f(" * 5000 + ")" * 5000 + ";\nvar y = "),
    "blocks nested 300 deep": ("python", "".join("    " * i + "if x:\n" for i in range(300)) + "    " * 300 + "y = "),
}
TIMINGS: list[str] = []


def stages(w: Wire, msg_id: str) -> tuple[str, dict]:
    t = [x for x in w.request("unmask/timings", {})["result"]["requests"] if x["requestId"] == msg_id][-1]
    return t["outcome"], {k: round(v) for k, v in t["stages"].items() if v >= 1}


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_bad_documents_get_an_answer_and_the_server_stays_up(wire: Wire, name: str):
    language, text = DOCUMENTS[name]
    uri = (
        f"file:///tmp/unmask-bad/{name.replace(' ', '_').replace(',', '')}.{'js' if language == 'javascript' else 'py'}"
    )
    t = time.perf_counter()
    open_doc(wire, uri, text)
    assert wire.alive()
    open_ms = (time.perf_counter() - t) * 1e3
    line, char = end_of(text)
    t = time.perf_counter()
    first = complete(wire, uri, line, char, msg_id=f"{name} 1")
    first_ms = (time.perf_counter() - t) * 1e3
    assert "result" in first, first
    # three keystrokes, then an automatic completion (what typing asks for)
    for i, ch in enumerate("abc"):
        rng = {"start": {"line": line, "character": char + i}, "end": {"line": line, "character": char + i}}
        wire.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": i + 2}, "contentChanges": [{"range": rng, "text": ch}]},
        )
    t = time.perf_counter()
    second = complete(wire, uri, line, char + 3, invoked=False, msg_id=f"{name} 2")
    second_ms = (time.perf_counter() - t) * 1e3
    assert "result" in second, second
    got = wire.request("unmask/document", {"textDocument": {"uri": uri}}, timeout=120)["result"]
    expected = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace") + "abc"
    assert got["text"] == expected and got["version"] == 4
    o1, s1 = stages(wire, f"{name} 1")
    o2, s2 = stages(wire, f"{name} 2")
    TIMINGS.append(
        f"{name}: {len(text):,} characters; didOpen + stats {open_ms:.0f} ms; invoked completion {first_ms:.0f} ms "
        f"({o1}, {len(first['result']['items'])} item) {s1}; "
        f"after 3 keystrokes, automatic {second_ms:.0f} ms ({o2}) {s2}"
    )
    print("\n" + TIMINGS[-1])
    wire.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    assert not [m for m in wire.other if "drifted" in json.dumps(m)]
    a_normal_completion_works(wire)


def test_a_document_that_is_not_utf8_on_the_wire_is_not_opened(wire: Wire):
    """Raw bytes that are not UTF-8 make the whole didOpen unreadable: it is dropped, so the document is
    not open, and a completion in it gets InvalidParams (the client must send text, per the protocol)."""
    body = json.dumps(
        {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": "file:///tmp/unmask-bad/latin1.py", "languageId": "python", "version": 1, "text": "@@"}}}
    ).encode().replace(b"@@", b"x = 'caf\xe9'\\ny = ")  # fmt: skip
    wire.send_bytes(Wire.frame(body))
    got = complete(wire, "file:///tmp/unmask-bad/latin1.py", 1, 4)
    assert got["error"]["code"] == INVALID_PARAMS
    a_normal_completion_works(wire)


@pytest.mark.parametrize("text", ["", "\n"])
def test_a_completion_in_an_empty_document_is_answered(bare: Wire, text: str):
    uri = f"file:///tmp/unmask-bad/empty{len(text)}.py"
    open_doc(bare, uri, text)
    got = complete(bare, uri, *end_of(text))
    bare.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    assert "result" in got, got["error"]["message"][:200]


@pytest.fixture(scope="module")
def bare():
    """A server with no other document open (their text would fill the context)."""
    w = Wire()
    yield w
    w.close()
