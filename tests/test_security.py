"""Security properties of ``unmask serve`` and the repository context (issue 16; RELIABILITY.md, Security).

* Network transports: loopback unless a host is given; a non-loopback host needs a token, which
  every connection must present (TCP: ``initializationOptions.token`` in the first message,
  ``initialize``; WebSocket: ``Authorization: Bearer`` or ``?token=``); TCP drops an HTTP request
  sent to its port (a web page's cross-site POST); WebSocket refuses foreign ``Origin`` s (checked
  with the ``websockets`` client and from a page in a real chromium).
* Repository context never reads outside the workspace folders (escaping symlinks, ``..`` in
  paths) and never shows the model secret-bearing or gitignored files, even open in the editor.
* Nothing leaves the machine: a completion and a next-edit request through the real server,
  traced with strace (every ``connect``/``sendto``/``sendmsg`` of the server and its children),
  in a network namespace of its own where ``unshare -n`` works.

The transport tests start the server with a model directory that does not exist: they need no
model (the server says so and keeps serving), which keeps them fast.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import samples
from conftest import skip_unless_ci
from lsprotocol import types
from pytest_lsp import LanguageClient

from unmask.context import ContextConfig, IndexConfig, WorkspaceIndex, gather_context
from unmask.context.document import ParsedDocument
from unmask.lsp import protocol as ext
from unmask.lsp.repo import RepoContext

ROOT = Path(__file__).resolve().parent.parent
UNMASK = [sys.executable, "-m", "unmask.lsp.cli"]
TOKEN = "t0ken-for-the-security-tests-3f9a2c"
ANNOUNCE = re.compile(r"listening on (tcp|ws)://(\S+):(\d+)")

# -- repository context ---------------------------------------------------------------------------
# Each planted file holds its own canary; none may ever reach what the model sees.
SECRET_FILES = {
    ".env": "SECRET_TOKEN=canary-dotenv\nAPI_KEY=canary-dotenv-key\n",
    ".env.local": "SECRET_TOKEN=canary-dotenv-local\n",
    ".env.py": 'def env_api_key(key="canary-dotenv-py"):\n    return key\n',  # a source extension: indexable
    "server.pem": "-----BEGIN PRIVATE KEY-----\ncanary-pem\n-----END PRIVATE KEY-----\n",
    "server.key": "canary-key-file\n",
    "id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\ncanary-id-rsa\n",
    "id_rsa_tools.py": 'def rsa_passphrase(phrase="canary-id-rsa-py"):\n    return phrase\n',
    "id_ed25519": "-----BEGIN OPENSSH PRIVATE KEY-----\ncanary-id-ed25519\n",
    ".netrc": "machine example.com login me password canary-netrc\n",
    ".npmrc": "//registry.npmjs.org/:_authToken=canary-npmrc\n",
    ".pypirc": "[pypi]\npassword = canary-pypirc\n",
    "local_settings.py": 'def get_api_key(key="canary-gitignored"):\n    return key\n',  # .gitignore'd
    "private/creds.py": 'def database_password(pw="canary-gitignored-dir"):\n    return pw\n',
}
OUTSIDE = 'def leaked_helper(x="canary-outside"):\n    return x\n'
CANARIES = [*re.findall(r"canary-[a-z0-9-]+", "".join(SECRET_FILES.values())), "canary-outside"]

APP = """import os
from local_settings import get_api_key
from private.creds import database_password
from linked import leaked_helper
from settings import load_settings

SECRET_TOKEN = os.environ["SECRET_TOKEN"]
API_KEY = get_api_key() or env_api_key() or rsa_passphrase()
password = database_password()
helper = leaked_helper()
config = load_settings()
"""


def make_workspace(tmp: Path) -> Path:
    """A workspace with every kind of secret file, a gitignored file and dir, and symlinks out of it."""
    ws, out = tmp / "ws", tmp / "outside"
    (ws / "private").mkdir(parents=True)
    (ws / "sub").mkdir()
    out.mkdir()
    (ws / ".git").mkdir()
    (ws / ".gitignore").write_text("local_settings.py\nprivate/\n")
    for name, text in SECRET_FILES.items():
        (ws / name).write_text(text)
    (out / "leak.py").write_text(OUTSIDE)
    (ws / "linked.py").symlink_to(out / "leak.py")  # a file symlink that escapes
    (ws / "linkdir").symlink_to(out, target_is_directory=True)  # a directory symlink that escapes
    (ws / "settings.py").write_text('def load_settings():\n    return {"debug": True}\n')
    (ws / "app.py").write_text(APP)
    return ws


def assert_no_canary(seen: str) -> None:
    leaked = [c for c in CANARIES if c in seen]
    assert not leaked, f"secrets reached the model's context: {leaked}"


def test_context_cli_never_shows_secret_or_ignored_files(tmp_path):
    """``unmask context`` (workspace index + every source) on a file that uses names from the secret files."""
    ws = make_workspace(tmp_path)
    line = APP.count("\n")  # the empty last line
    out = subprocess.run(
        [*UNMASK, "context", str(ws / "app.py"), "--line", str(line), "--col", "0", "--json"]
        + ["--root", str(ws), "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert_no_canary(out.stdout)
    texts = "".join(p["text"] for p in res["pieces"])
    assert "def load_settings" in texts  # the context works: a plain workspace definition is shown
    assert res["index"]["skipped"].get("secret", 0) >= 2  # .env.py and id_rsa_tools.py


def test_server_context_never_shows_secret_or_ignored_open_documents(tmp_path):
    """The server's path (lsp/repo.py): the secret and gitignored files are open in the editor too,
    with recent edits, so the ``open`` and ``recent`` sources see them; none reaches the context."""
    ws = make_workspace(tmp_path)
    repo = RepoContext(IndexConfig(workers=0))
    try:
        ix = repo.add_root(str(ws))
        assert ix is not None and ix.wait(60)
        for name, text in SECRET_FILES.items():
            uri = (ws / name).resolve().as_uri()
            repo.open(uri, "python" if name.endswith(".py") else "plaintext", text, 1)
            repo.change(uri, (0, 0), (0, 0), "# edited\n", 2)  # an edit: the ``recent`` source
        app = (ws / "app.py").as_uri()
        repo.open(app, "python", APP, 1)
        line = APP.count("\n")
        from unmask.context import SpanChoice

        span = SpanChoice("line", 16, False, "", None, len(APP.encode()))
        res = repo.gather(
            app,
            (line, 0),
            span,
            sources=["scope", "definitions", "recent", "open", "similar"],
            count_tokens=None,
            window=None,
        )
        seen = json.dumps(res.to_dict())
        assert_no_canary(seen)
        assert "def load_settings" in seen
    finally:
        repo.shutdown()


def test_gather_context_skips_secret_open_documents(tmp_path):
    """The context layer itself (``gather_context`` with open documents, no server): same rule."""
    ws = make_workspace(tmp_path)
    with WorkspaceIndex(ws, IndexConfig(workers=0)) as ix:
        ix.build()
        others = [ParsedDocument(SECRET_FILES[n], None, str(ws / n), 1) for n in (".env", ".npmrc", "server.pem")]
        doc = ParsedDocument(APP, "python", str(ws / "app.py"), 1)
        res = gather_context(doc, APP.count("\n"), 0, index=ix, open_docs=others, config=ContextConfig())
        assert_no_canary(json.dumps(res.to_dict()))


def test_index_never_reads_outside_the_workspace(tmp_path):
    """Symlinks that escape and ``..`` in paths or URIs: nothing outside the root is indexed or read."""
    ws = make_workspace(tmp_path)
    with WorkspaceIndex(ws, IndexConfig(workers=0)) as ix:
        ix.build()
        assert not ix.definitions("leaked_helper")  # the walk never follows symlinks
        ix.update_file(str(ws / "linked.py")).result(10)  # a save of the symlink
        ix.update_file(f"{ws}/sub/../../outside/leak.py").result(10)  # `..` in the path
        ix.update_file(f"file://{ws}/sub/../../outside/leak.py").result(10)
        ix.update_file(str(ws / "linkdir" / "leak.py")).result(10)  # through a directory symlink
        ix.update_file(str(ws / ".env.py")).result(10)  # a secret file, saved
        for f in ix.on_watched_files([(str(ws / "linked.py"), 1), (f"{ws}/sub/../../outside/leak.py", 2)]):
            f.result(10)
        assert not ix.definitions("leaked_helper"), ix.definitions("leaked_helper")
        assert not ix.definitions("env_api_key")
        assert not any(".." in r or "outside" in r or "link" in r for r in ix.files), sorted(ix.files)
    repo = RepoContext(IndexConfig(workers=0))
    try:
        ix = repo.add_root(str(ws))
        assert ix is not None and ix.wait(60)
        repo.saved(f"file://{ws}/sub/../../outside/leak.py")
        repo.watched([((ws / "linked.py").as_uri(), 1), (f"file://{ws}/sub/%2E%2E/%2E%2E/outside/leak.py", 1)])
        time.sleep(0.5)
        ix.update_file(str(ws / "settings.py")).result(10)  # the updater is one queue: the above ran
        assert not ix.definitions("leaked_helper")
    finally:
        repo.shutdown()


# -- transports -----------------------------------------------------------------------------------
def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "UNMASK_TOKEN"}
    return {**env, **extra}


def start_server(tmp_path: Path, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, str, int, str]:
    """``unmask serve ARGS`` without a model; waits for its start-up line. (proc, host, port, the line)."""
    cmd = [*UNMASK, "serve", *args, "--model", str(tmp_path / "no-model"), "--log-file", str(tmp_path / "lsp.log")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env or _env())
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if m := ANNOUNCE.search(line):
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
            return proc, m.group(2), int(m.group(3)), line
    proc.kill()
    pytest.fail(f"unmask serve {' '.join(args)} did not announce its address:\n{''.join(lines)[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def frame(msg: dict) -> bytes:
    body = json.dumps(msg).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_frame(sock: socket.socket) -> dict | None:
    """One LSP message from ``sock``; None when the server closed the connection."""
    f = sock.makefile("rb")
    length = None
    while True:
        line = f.readline()
        if not line:
            return None
        if line == b"\r\n":
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return json.loads(f.read(length))


def initialize(options: dict | None = None, msg_id: int = 1) -> dict:
    params = {"processId": None, "rootUri": None, "capabilities": {}}
    if options is not None:
        params["initializationOptions"] = options
    return {"jsonrpc": "2.0", "id": msg_id, "method": "initialize", "params": params}


def raw_exchange(port: int, data: bytes) -> tuple[dict | None, bytes]:
    """Send ``data`` on a fresh connection: (the first LSP message back, or None when the server closes
    the connection without one; the bytes received)."""
    raw = b""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(data)
        while True:
            m = re.search(rb"Content-Length: (\d+)\r\n(?:[^\r\n]*\r\n)*\r\n", raw)
            if m and len(raw) >= m.end() + int(m.group(1)):
                return json.loads(raw[m.end() : m.end() + int(m.group(1))]), raw
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None, raw
            raw += chunk


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (/proc/net/tcp and tcp6, hex as the kernel writes it)."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            addr, hexport = cols[1].rsplit(":", 1)
            if int(hexport, 16) == port and cols[3] == "0A":  # LISTEN
                out.add(addr)
    return out


HTTP_POST = (
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\n\r\n"
)


def test_tcp_binds_loopback_by_default_and_says_so(tmp_path):
    proc, host, port, line = start_server(tmp_path, "--tcp", "0")
    try:
        assert host == "127.0.0.1" and "loopback" in line
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only
        assert "listening on tcp://127.0.0.1" in (tmp_path / "lsp.log").read_text()  # the log line
    finally:
        stop(proc)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_non_loopback_host_refused_without_a_token(tmp_path, transport):
    for args in (["--host", "0.0.0.0"], ["--host", "192.0.2.2"], [], ["--host", "0.0.0.0", "--token", "short"]):
        where = "0.0.0.0:0" if not args else "0"
        proc = subprocess.run(
            [*UNMASK, "serve", f"--{transport}", where, *args, "--log-file", ""],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
        )
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert "token" in proc.stderr and "UNMASK_TOKEN" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_tcp_token_required_from_every_connection(tmp_path):
    """On 0.0.0.0 with UNMASK_TOKEN: no token, a wrong one, an HTTP request and a bare probe are turned
    away without stopping the server; a real client with the token in initializationOptions is served."""
    proc, host, port, line = start_server(tmp_path, "--tcp", "0", "--host", "0.0.0.0", env=_env(UNMASK_TOKEN=TOKEN))
    try:
        assert host == "0.0.0.0" and "token required" in line and TOKEN not in line
        for bad in (None, {}, {"token": "wrong-token-wrong-token"}, {"token": TOKEN[:-1]}):
            msg, _ = raw_exchange(port, frame(initialize(bad)))
            assert msg is not None and "error" in msg and "token" in msg["error"]["message"], msg
        msg, _ = raw_exchange(port, frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
        assert msg is None or "error" in msg  # not initialize first: refused
        body = json.dumps(initialize({"token": TOKEN})).encode()
        msg, raw = raw_exchange(port, HTTP_POST % len(body) + body)  # even with the token: not LSP framing
        assert msg is None and b"capabilities" not in raw
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # a port probe
        assert proc.poll() is None

        async def real_client():
            client = LanguageClient(configuration={})
            await client.start_tcp("127.0.0.1", port)
            try:
                res = await client.initialize_session(
                    types.InitializeParams(
                        capabilities=types.ClientCapabilities(),
                        initialization_options={"token": TOKEN, "minConfidence": 0},
                    )
                )
                assert res.capabilities.inline_completion_provider
                await client.shutdown_session()
            finally:
                await client.stop()

        asyncio.run(real_client())
        proc.wait(20)
        log = (tmp_path / "lsp.log").read_text()
        assert TOKEN not in log and "refused" in log
    finally:
        stop(proc)


def test_tcp_drops_an_http_request_from_a_web_page(tmp_path):
    """Loopback without a token: a page's cross-site ``fetch(..., {method: 'POST', mode: 'no-cors'})``
    reaches the port as HTTP with a JSON-RPC body; pygls alone would run it. It is dropped."""
    proc, _, port, _ = start_server(tmp_path, "--tcp", "0")
    try:
        body = json.dumps(initialize({})).encode()
        msg, raw = raw_exchange(port, HTTP_POST % len(body) + body)
        assert msg is None and b"capabilities" not in raw, raw[:500]
        assert proc.poll() is None  # and the server still waits for its editor
        msg, _ = raw_exchange(port, frame(initialize({})))
        assert msg is not None and "capabilities" in msg["result"]
    finally:
        stop(proc)


async def _ws_try(port: int, path: str = "/", origin: str | None = None, headers: dict | None = None) -> int | dict:
    """Open a WebSocket; the HTTP status when refused, else the answer to ``initialize``."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    try:
        async with connect(f"ws://127.0.0.1:{port}{path}", origin=origin, additional_headers=headers) as ws:
            await ws.send(json.dumps(initialize({})))
            return json.loads(await asyncio.wait_for(ws.recv(), 20))
    except InvalidStatus as e:
        return e.response.status_code


def test_ws_rejects_foreign_origins(tmp_path):
    """Cross-site WebSocket hijacking: a page on another site, or on another loopback port, is refused."""
    allowed = "http://127.0.0.1:5555"
    proc, _, port, line = start_server(tmp_path, "--ws", "0", "--allow-origin", allowed)
    try:
        assert allowed in line
        for origin in (
            "http://evil.example",
            "http://127.0.0.1:6666",
            "http://localhost:5555",
            "null",
            "https://127.0.0.1:5555",
        ):
            assert asyncio.run(_ws_try(port, origin=origin)) == 403, origin
        assert proc.poll() is None
        got = asyncio.run(_ws_try(port, origin=allowed))
        assert isinstance(got, dict) and "capabilities" in got["result"]
    finally:
        stop(proc)
    proc, _, port, _ = start_server(tmp_path, "--ws", "0")
    try:
        assert asyncio.run(_ws_try(port, origin="http://127.0.0.1:5555")) == 403  # not allowed by default
        got = asyncio.run(_ws_try(port))  # no Origin: an editor or a CLI client
        assert isinstance(got, dict) and "capabilities" in got["result"]
    finally:
        stop(proc)


def test_ws_token_required(tmp_path):
    proc, _, port, line = start_server(tmp_path, "--ws", "0", "--token", TOKEN)
    try:
        assert "token required" in line
        assert asyncio.run(_ws_try(port)) == 401
        assert asyncio.run(_ws_try(port, "/?token=nope-nope-nope-nope")) == 401
        assert asyncio.run(_ws_try(port, headers={"Authorization": "Bearer nope-nope-nope-nope"})) == 401
        got = asyncio.run(_ws_try(port, headers={"Authorization": f"Bearer {TOKEN}"}))
        assert isinstance(got, dict) and "capabilities" in got["result"]
    finally:
        stop(proc)
    proc, _, port, _ = start_server(tmp_path, "--ws", "0", env=_env(UNMASK_TOKEN=TOKEN))
    try:
        got = asyncio.run(_ws_try(port, f"/?token={TOKEN}"))  # what a browser page can do
        assert isinstance(got, dict) and "capabilities" in got["result"]
        assert TOKEN not in (tmp_path / "lsp.log").read_text()
    finally:
        stop(proc)


BROWSER_JS = """
const { chromium } = require(process.env.PW);
(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'] });
  const out = {};
  try {
    const page = await browser.newPage();
    await page.goto(process.env.PAGE);
    for (const [name, url] of Object.entries(JSON.parse(process.env.TARGETS))) {
      out[name] = await page.evaluate((u) => new Promise((resolve) => {
        const ws = new WebSocket(u);
        ws.onopen = () => { ws.close(); resolve('open'); };
        ws.onerror = () => resolve('error');
        setTimeout(() => resolve('timeout'), 15000);
      }), url);
    }
  } finally { await browser.close(); }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.mark.slow
def test_ws_origin_check_from_a_real_browser(tmp_path):
    """A page served on another loopback port, in headless chromium, opens ``ws://127.0.0.1:PORT``:
    refused; the same page is let in once its origin is passed with ``--allow-origin``."""
    pw = ROOT / "editors" / "web" / "node_modules" / "playwright-core"
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if shutil.which("node") is None or not pw.is_dir():
        skip_unless_ci("node or editors/web/node_modules/playwright-core is missing: run editors/ci-setup.sh")
    if not Path(chromium).is_file():
        skip_unless_ci(f"no chromium at {chromium}")
    (tmp_path / "page").mkdir()
    (tmp_path / "page" / "index.html").write_text("<!doctype html><title>another site</title>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "page"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    page = f"http://127.0.0.1:{httpd.server_address[1]}"
    foreign, _, p1, _ = start_server(tmp_path, "--ws", "0")
    allowed, _, p2, _ = start_server(tmp_path, "--ws", "0", "--allow-origin", page)
    try:
        (tmp_path / "ws.cjs").write_text(BROWSER_JS)
        env = {
            **os.environ,
            "PW": str(pw),
            "CHROMIUM": chromium,
            "PAGE": page + "/",
            "TARGETS": json.dumps({"foreign": f"ws://127.0.0.1:{p1}", "allowed": f"ws://127.0.0.1:{p2}"}),
        }
        run = subprocess.run(["node", str(tmp_path / "ws.cjs")], capture_output=True, text=True, timeout=180, env=env)
        assert run.returncode == 0, run.stderr[-3000:]
        got = json.loads(run.stdout.strip().splitlines()[-1])
        assert got == {"foreign": "error", "allowed": "open"}, got
        assert foreign.poll() is None  # the refused page did not stop the server
    finally:
        httpd.shutdown()
        stop(foreign)
        stop(allowed)


# -- nothing leaves the machine -------------------------------------------------------------------
_ADDR = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')


def outgoing(trace: str) -> list[str]:
    """strace lines that address a non-loopback IPv4/IPv6 peer."""
    bad = []
    for line in trace.splitlines():
        for v4, v6 in _ADDR.findall(line):
            addr = v4 or v6
            if not (addr.startswith("127.") or addr in ("::1", "::ffff:127.0.0.1") or addr.startswith("::ffff:127.")):
                bad.append(line)
    return bad


def test_nothing_leaves_the_machine(tmp_path):
    """A completion and a next-edit request through the real server (stdio, a workspace being indexed by
    worker processes) while strace records every connect/sendto/sendmsg of the server and its children:
    none addresses anything but loopback. Runs with the base model already in the cache (~/.cache/unmask
    or $UNMASK_CACHE); first use fetches it with pip, the one download unmask makes, before this test."""
    if shutil.which("strace") is None:
        skip_unless_ci("strace is not installed")
    if subprocess.run(["strace", "-f", "-e", "trace=connect", "-o", os.devnull, "true"]).returncode != 0:
        skip_unless_ci("strace cannot trace here (ptrace not permitted)")
    if not os.environ.get("UNMASK_TEST_MODEL"):
        from unmask.engine.base import base_gguf_path, fetch_base

        if not base_gguf_path().is_file():
            fetch_base()  # outside the trace: the first-use download is not what this test checks
    probe = tmp_path / "probe.txt"  # the trace and its reading catch a real attempt (refused at once here)
    code = "import socket; s = socket.socket(); s.setblocking(False); s.connect_ex(('192.0.2.1', 9))"
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(probe), sys.executable, "-c", code])
    assert outgoing(probe.read_text()), probe.read_text()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "stats.py").write_text(samples.PYTHON)
    (ws / "util.py").write_text("def mean(values):\n    return sum(values) / len(values)\n")
    trace = tmp_path / "strace.txt"
    serve = [*UNMASK, "serve", "--log-file", str(tmp_path / "lsp.log")]
    if os.environ.get("UNMASK_TEST_MODEL"):
        serve += ["--model", os.environ["UNMASK_TEST_MODEL"]]
    strace = ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-e", "signal=none"]
    strace += ["-o", str(trace)]
    isolated = subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    cmd = (["unshare", "-n"] if isolated else []) + strace + serve

    async def session() -> tuple[dict, dict, dict]:
        client = LanguageClient(configuration={})
        await client.start_io(*cmd)
        try:
            await client.initialize_session(
                types.InitializeParams(
                    capabilities=types.ClientCapabilities(),
                    root_uri=ws.as_uri(),
                    workspace_folders=[types.WorkspaceFolder(uri=ws.as_uri(), name="ws")],
                    initialization_options={
                        "minConfidence": 0,
                        "nextEdit.minConfidence": 0,
                        "nextEdit.renameRule": False,
                        "nextEdit.budgetMs": 2000,
                    },
                )
            )
            uri = (ws / "stats.py").as_uri()
            client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    types.TextDocumentItem(uri=uri, language_id="python", version=1, text=samples.PYTHON)
                )
            )
            for _ in range(300):  # the model loads in the background
                st = (await client.protocol.send_request_async(ext.STATS, {}))._asdict()
                if st["model"] and not st["indexing"]:
                    break
                await asyncio.sleep(0.2)
            comp = await client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(9, 16),
                )
            )
            nes_uri = (ws / "summary.py").as_uri()  # the rename scenario (tests/samples.py), typed in
            client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    types.TextDocumentItem(uri=nes_uri, language_id="python", version=1, text=samples.RENAME_BEFORE)
                )
            )
            line, col = samples.RENAME_LINE, samples.RENAME_COL
            for version, ch in enumerate(samples.RENAME_TYPED, start=2):
                client.text_document_did_change(
                    types.DidChangeTextDocumentParams(
                        types.VersionedTextDocumentIdentifier(version=version, uri=nes_uri),
                        [
                            types.TextDocumentContentChangePartial(
                                range=types.Range(types.Position(line, col), types.Position(line, col)), text=ch
                            )
                        ],
                    )
                )
                col += 1
            nes = await client.protocol.send_request_async(
                ext.INLINE_EDIT,
                {
                    "textDocument": {"uri": nes_uri, "version": 1 + len(samples.RENAME_TYPED)},
                    "position": {"line": line, "character": col},
                },
            )
            st = (await client.protocol.send_request_async(ext.STATS, {}))._asdict()
            await client.shutdown_session()
            return comp, ext.plain(nes), st
        finally:
            await client.stop()

    comp, nes, st = asyncio.run(session())
    assert st["model"], "the model never loaded"
    assert st["modelCalls"] >= 1 and st["nextEditRequests"] >= 1 and st["indexedFiles"] >= 2, st
    assert isinstance(nes.get("edits"), list)
    text = trace.read_text()
    assert text.strip(), "strace recorded nothing"
    assert not outgoing(text), "outgoing connections:\n" + "\n".join(outgoing(text)[:20])


# -- the playground's session endpoint --------------------------------------------------------
class _Sessions:
    """Stands in for the playground's server spawner: counts the sessions a POST would start."""

    def __init__(self):
        self.started = 0

    def new(self) -> str:
        self.started += 1
        return "ws://127.0.0.1:1"


def test_playground_session_endpoint_refuses_other_origins_and_hosts():
    """A page on another site (simple POST, no preflight) or a rebound DNS name must not start or stop
    the user's playground session; the playground page itself may."""
    import http.client

    from unmask.web.playground import Handler

    sessions = _Sessions()
    handler = type("H", (Handler,), {"sessions": sessions})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = httpd.server_address[1]
    handler.origins = (f"http://127.0.0.1:{port}", f"http://localhost:{port}")
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def post(headers: dict) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/session", body=b"", headers=headers)
        status = conn.getresponse().status
        conn.close()
        return status

    try:
        assert post({"Origin": "https://evil.example"}) == 403
        assert post({"Origin": "null"}) == 403
        assert post({"Host": f"rebound.example:{port}"}) == 403
        assert sessions.started == 0
        assert post({"Origin": f"http://127.0.0.1:{port}"}) == 200
        assert post({"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"}) == 200
        assert post({}) == 200  # no Origin: not a browser page (http.client sends the right Host)
        assert sessions.started == 3
    finally:
        httpd.shutdown()
