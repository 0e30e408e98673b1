"""The team engine (issue 17): one shared model behind Ray Serve, the daemon's remote engine.

Without Ray (fast): batched model calls give each request what it gets alone; request bodies
are checked; newest-wins and the per-user cap; the context cache's namespaces and byte bound;
the remote engine's deadline and local fallback against a stand-in engine that never answers.

With Ray (``slow``; ``unmask engine serve`` as a subprocess on a local Ray instance, with a
token): the remote engine and ``unmask serve --engine URL`` give the same completions as the
in-process engine; bad requests get 400/401/413 and the engine stays up; concurrent requests
are batched; a document's newer request cancels its older one.
"""

from __future__ import annotations

import asyncio
import http.client
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import skip_unless_ci

from unmask.engine.batching import forward_many
from unmask.engine.causal import ContextCache, causal_bias
from unmask.engine.infill import Engine
from unmask.engine.runtime import ModelError
from unmask.engine.team import BadRequest, EngineCore, Inflight, parse_request

TOKEN = "team-engine-test-token-0123456789"
CASES = [
    (["def add(a, b):\n    return ", "\n"], [32]),
    (["import os\n\n\ndef list_py(d):\n    files = ", "\n    return files\n"], [32]),
    (["class Point:\n    def __init__(self, x, y):\n        self.x = x\n        ", "\n"], [32]),
    (["for i in range(10):\n    ", "\n"], [64]),
]


@pytest.fixture(scope="module")
def local():
    return Engine()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- without Ray ----------------------------------------------------------------------------------
def test_batched_calls_give_each_request_its_own_answer(local):
    """Requests of different cache lengths and token counts in one padded batch: each gets the
    logits rows and the cache it gets alone (the next token is the same; caches equal)."""
    dec, tok = local.backend, local.tok
    calls = []
    for text in ("def add(a, b):\n    return a + b\n", "import os\nimport sys\n\nprint(os.getcwd())\n", "x = 1\ny ="):
        ids = tok.encode(text)
        _, past = dec.forward(ids[:-2], range(len(ids) - 2), causal_bias(0, len(ids) - 2), None, len(ids) - 3)
        calls.append((ids[-2:], range(len(ids) - 2, len(ids)), causal_bias(len(ids) - 2, 2), past, 0))
    ids = tok.encode("class A:\n    def f(self):\n")
    calls.append((ids, range(len(ids)), causal_bias(0, len(ids)), None, len(ids) - 1))  # a prefill, no cache
    alone = [dec.forward(*c) for c in calls]
    together = forward_many(dec, calls)
    for (l1, p1), (l2, p2) in zip(alone, together):
        assert l1.shape == l2.shape
        assert (l1.argmax(-1) == l2.argmax(-1)).all()
        assert np.allclose(l1, l2, atol=1.0)  # 8-bit activations are quantized per batch row block
        for (k1, v1), (k2, v2) in zip(p1, p2):
            assert k1.shape == k2.shape and v1.shape == v2.shape
            for a, b in ((k1, k2), (v1, v2)):
                assert np.abs(a - b).max() <= 0.05 * max(1.0, np.abs(a).max())


@pytest.mark.parametrize(
    "body, why",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"pieces": ["only one"]}', "pieces"),
        (b'{"pieces": ["a", 3]}', "pieces"),
        (b'{"pieces": ["a", "b"], "buckets": [0]}', "buckets"),
        (b'{"pieces": ["a", "b"], "buckets": [8, 8]}', "buckets"),
        (b'{"pieces": ["a", "b"], "budget_ms": "soon"}', "budget_ms"),
        (b'{"pieces": ["a", "b"], "steps": 100000}', "steps"),
        (b'{"pieces": ["a", "b"], "doc": 5}', "doc"),
        (b'{"pieces": ["' + b"x" * (3 * 2**20) + b'", "b"]}', "bytes"),
    ],
)
def test_bad_request_bodies_say_what_is_wrong(body, why):
    with pytest.raises(BadRequest, match=why):
        parse_request(body)


def test_good_request_body_gets_defaults():
    req = parse_request(b'{"pieces": ["x = ", "\\n"], "user": "u", "doc": "file:///a.py"}')
    assert req["buckets"] is None and req["steps"] == 64 and req["threshold"] == 0.9 and req["budget_ms"] is None


def test_newest_request_of_a_document_cancels_the_older_and_a_user_has_a_cap():
    inflight = Inflight(per_user=2)
    a, b, c, d = (threading.Event() for _ in range(4))
    assert inflight.start("u1", "doc1", a) == 0
    assert inflight.start("u1", "doc1", b) == 1 and a.is_set() and not b.is_set()
    assert inflight.start("u2", "doc1", c) == 0 and not b.is_set()  # another user's document of the same name
    inflight.start("u1", "doc2", d)
    e = threading.Event()
    assert inflight.start("u1", "doc3", e) == 1 and b.is_set()  # u1's oldest goes: at most 2 in flight
    assert not c.is_set() and not d.is_set() and not e.is_set()
    inflight.end("u1", "doc1", b)  # already replaced: nothing to do
    inflight.end("u1", "doc3", e)
    assert inflight.start("u1", "doc3", threading.Event()) == 0


def _present(n: int, width: int = 8):
    return [(np.zeros((1, 3, n, width), np.float32), np.zeros((1, 3, n, width), np.float32))]


def test_context_cache_reuses_only_its_namespace_and_keeps_its_byte_bound():
    cache = ContextCache(per_ns=2, max_mb=0.01)  # 10 KB; an entry of 10 tokens is 1.9 KB
    cache.store("a", list(range(10)), _present(10))
    assert cache.lookup("a", list(range(12)))[0] == 10
    assert cache.lookup("b", list(range(12))) == (0, None)  # another document never sees it
    cache.store("a", list(range(100, 110)), _present(10))
    cache.store("a", list(range(200, 210)), _present(10))
    assert cache.lookup("a", list(range(12))) == (0, None)  # at most 2 per namespace: the oldest went
    for ns in "bcdefg":
        cache.store(ns, list(range(10)), _present(10))
    assert cache.bytes <= 0.01 * 2**20 and cache.evicted >= 3
    assert cache.lookup("g", list(range(11)))[0] == 10  # the newest stays


class StandIn(http.server.BaseHTTPRequestHandler):
    """A team engine that answers /v1/info and never answers a completion (a stuck or overloaded engine)."""

    info: dict = {}

    def do_GET(self):  # noqa: N802
        body = json.dumps(self.info).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(5)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def stuck_engine():
    core = EngineCore()
    StandIn.info = core.info()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_an_engine_that_does_not_answer_in_time_gives_an_empty_answer_by_the_deadline(stuck_engine):
    remote = Engine({"type": "remote", "url": stuck_engine})
    t = time.perf_counter()
    drafts = list(remote.stream_holes(*CASES[0], budget_ms=300))
    waited = time.perf_counter() - t
    assert drafts == [] and remote.stats["empty"] == 1
    assert waited < 2.0  # the editor is never blocked past its budget (the stand-in would take 5 s)


def test_the_local_engine_answers_when_the_team_engine_does_not(stuck_engine, local):
    remote = Engine({"type": "remote", "url": stuck_engine, "fallback": {"type": "onnx"}})
    remote.fallback.warmup()
    t = time.perf_counter()
    drafts = list(remote.stream_holes(*CASES[0], budget_ms=1500))
    waited = time.perf_counter() - t
    assert drafts and drafts[-1].text == local.infill(CASES[0][0][0], CASES[0][0][1], steps=64).text
    assert remote.stats["fallback"] == 1 and waited < 3.0


def test_an_unreachable_engine_is_one_clear_error_and_the_fallback_serves(local):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ModelError, match="cannot reach the team engine.*unmask engine serve"):
        Engine({"type": "remote", "url": url})
    remote = Engine({"type": "remote", "url": url, "fallback": {"type": "onnx"}})  # loads: the local model serves
    drafts = list(remote.stream_holes(*CASES[0], budget_ms=2000))
    assert drafts and drafts[-1].text == local.infill(CASES[0][0][0], CASES[0][0][1], steps=64).text
    assert remote.stats["fallback"] == 1 and remote.window == local.window


class Canned(StandIn):
    """A team engine that answers every completion with one fixed draft."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        row = {"step": 1, "texts": ["canned_answer"], "confidence": [0.99], "min_confidence": [0.99]}
        row |= {"token_confidence": [[0.99]], "ms": 1.0, "encode_ms": 1.0, "done": True}
        body = (json.dumps(row) + "\n" + json.dumps({"end": True, "cache": None, "engine": {}}) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.asyncio
async def test_the_daemon_connects_to_an_engine_that_starts_after_it(stuck_engine, monkeypatch):
    """``unmask serve --engine URL`` started before its engine: empty answers, then (retrying every 10 s) the
    engine's answers once it is up, without a restart."""
    port = free_port()
    Canned.info = StandIn.info
    result: dict = {}

    async def later():
        await asyncio.sleep(3)
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Canned)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        result["srv"] = srv

    starter = asyncio.ensure_future(later())
    text = "import os\n\n\ndef list_py(d):\n    files = \n    return files\n"
    try:
        items = await _inline_items(["--engine", f"http://127.0.0.1:{port}"], text, 4, 12, dict(os.environ), 40)
    finally:
        await starter
        result["srv"].shutdown()
    assert len(items) == 1 and items[0].endswith("files = canned_answer")


def test_engine_url_setting_switches_the_daemon_to_the_team_engine():
    from unmask.lsp import config
    from unmask.lsp.server import build
    from unmask.lsp.worker import ModelWorker

    server = build(ModelWorker({"type": "onnx", "threads": 2}))
    assert server.engine_backend(server.settings) == {"type": "onnx", "threads": 2}
    new, problems, _ = config.merge(server.settings, {"engine": {"url": "http://10.0.0.5:8719", "localFallback": True}})
    assert not problems
    assert server.engine_backend(new) == {
        "type": "remote",
        "url": "http://10.0.0.5:8719",
        "token": None,
        "fallback": {"type": "onnx", "threads": 2},
    }
    _, problems, _ = config.merge(server.settings, {"engine.url": "ftp://x"})
    assert problems and "engine.url" in problems[0]


def test_engine_serve_refuses_a_network_address_without_a_token():
    env = {k: v for k, v in os.environ.items() if k != "UNMASK_ENGINE_TOKEN"}
    out = subprocess.run(
        [sys.executable, "-m", "unmask.lsp.cli", "engine", "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2 and "refusing to listen on 0.0.0.0 without a token" in out.stderr


# -- with Ray -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def team():
    """``unmask engine serve`` on a free port, a local Ray instance, a token; its URL."""
    yield from engine_serve("--batch-wait-ms", "5")


def engine_serve(*args: str):
    """Start ``unmask engine serve ARGS`` (a local Ray, a token), yield its URL, stop it (a fixture's body)."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        skip_unless_ci("ray[serve] is not installed (pip install -e '.[team]')")
    port = free_port()
    env = dict(os.environ, UNMASK_ENGINE_TOKEN=TOKEN, RAY_AUTH_MODE="disabled")
    proc = subprocess.Popen(
        [sys.executable, "-m", "unmask.lsp.cli", "engine", "serve", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    deadline = time.time() + 240
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if "listening on http://" in line:
            break
    else:
        proc.kill()
        pytest.fail("unmask engine serve did not start in 240 s:\n" + "".join(lines[-30:]))
    if proc.poll() is not None:
        pytest.fail("unmask engine serve exited:\n" + "".join(lines[-30:]))
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # keep draining its log
    yield f"http://127.0.0.1:{port}"
    os.killpg(proc.pid, 15)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def _http(url: str, method: str, path: str, body: bytes | None = None, token: str | None = TOKEN):
    host, port = re.match(r"http://([^:]+):(\d+)", url).groups()
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


@pytest.mark.slow
def test_remote_engine_gives_the_in_process_completions(team, local):
    remote = Engine({"type": "remote", "url": team, "token": TOKEN})
    assert remote.window == local.window and remote.tok.encode("def f(x):") == local.tok.encode("def f(x):")
    for pieces, buckets in CASES:
        want = list(local.stream_holes(pieces, buckets, budget_ms=20_000))
        got = list(remote.stream_holes(pieces, buckets, budget_ms=20_000, cache="file:///same.py"))
        assert [d.texts for d in got] == [d.texts for d in want]
        assert np.allclose(got[-1].confidence, want[-1].confidence, atol=1e-6)
    assert remote.stats["remote"] == len(CASES) and remote.stats["fallback"] == 0


@pytest.mark.slow
def test_engine_requests_need_the_token_and_bad_ones_get_clear_errors(team):
    assert _http(team, "GET", "/v1/info", token=None)[0] == 401
    assert _http(team, "GET", "/v1/info", token="wrong-token-wrong-token")[0] == 401
    with pytest.raises(ModelError, match="HTTP 401"):
        Engine({"type": "remote", "url": team, "token": "wrong-token-wrong-token"})
    status, body = _http(team, "POST", "/v1/complete", b'{"pieces": ["x = "]}')
    assert status == 400 and b"pieces" in body
    assert _http(team, "POST", "/v1/complete", b"x" * (3 * 2**20))[0] == 413
    assert _http(team, "GET", "/v1/nothing")[0] == 404
    status, body = _http(team, "GET", "/v1/health")
    assert status == 200 and json.loads(body)["ok"] is True  # still up


@pytest.mark.slow
def test_concurrent_requests_are_batched_and_a_newer_request_cancels_the_older(team):
    before = json.loads(_http(team, "GET", "/v1/stats")[1])["figures"]
    engines = [Engine({"type": "remote", "url": team, "token": TOKEN}) for _ in range(4)]
    results: dict[int, list] = {}

    def ask(i: int) -> None:
        pieces, buckets = CASES[i % len(CASES)]
        results[i] = list(engines[i].stream_holes(pieces, buckets, budget_ms=20_000, cache=f"file:///doc{i}.py"))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(results[i] and results[i][-1].done for i in range(4))
    after = json.loads(_http(team, "GET", "/v1/stats")[1])["figures"]
    assert max(int(k) for k in after["batch_sizes"]) > 1  # calls of different users shared a forward pass

    # the same user and document: the second request supersedes the first, which stops early
    a = Engine({"type": "remote", "url": team, "token": TOKEN})
    b = Engine({"type": "remote", "url": team, "token": TOKEN})
    b.user = a.user
    long_hole = (["def parse(lines):\n    out = []\n    for line in lines:\n        ", "\n"], [64])
    older = a.stream_holes(*long_hole, budget_ms=20_000, steps=64, cache="d")
    first = [next(older)]  # the older request is running: its first draft is here (no sleep: CI machines differ)
    second = list(b.stream_holes(*CASES[0], budget_ms=20_000, cache="d"))
    first.extend(older)
    assert second and second[-1].done
    assert not first or not first[-1].done  # cut short: its last draft is not a finished one
    final = json.loads(_http(team, "GET", "/v1/stats")[1])["figures"]
    assert final["superseded"] > before["superseded"]


async def _inline_items(
    server_args: list[str], text: str, line: int, col: int, env: dict, tries: int = 60
) -> list[str]:
    """``unmask serve SERVER_ARGS`` through a real LSP client: the inline items at (line, col), invoked."""
    from lsprotocol import types
    from pytest_lsp import make_test_lsp_client

    client = make_test_lsp_client()
    await client.start_io(sys.executable, "-m", "unmask.lsp.cli", "serve", "--log-file", "", *server_args, env=env)
    try:
        await client.initialize_session(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                initialization_options={"minConfidence": 0, "invokedBudgetMs": 20_000, "context.enabled": False},
            )
        )
        uri = "file:///tmp/unmask-team-test/a.py"
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text))
        )
        items: list[str] = []
        for _ in range(tries):  # the model loads in the background: ask until it answers
            res = await client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(line=line, character=col),
                    context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
                )
            )
            res = res.items if isinstance(res, types.InlineCompletionList) else res or []
            items = [str(getattr(i.insert_text, "value", i.insert_text)) for i in res]
            if items:
                break
            await asyncio.sleep(1)
        await client.shutdown_session()
        return items
    finally:
        await client.stop()


@pytest.mark.slow
@pytest.mark.asyncio
async def test_lsp_server_with_engine_url_gives_the_in_process_items(team):
    """``unmask serve --engine URL`` and ``unmask serve`` answer the same inline completions."""
    text = "import os\n\n\ndef list_py(d):\n    files = \n    return files\n"
    env = dict(os.environ, UNMASK_ENGINE_TOKEN=TOKEN)
    remote = await _inline_items(["--engine", team], text, 4, 12, env)
    here = await _inline_items([], text, 4, 12, env)
    assert remote and remote == here


@pytest.mark.slow
def test_doctor_checks_the_team_engine(team):
    def doctor(token: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "unmask.lsp.cli", "doctor", "--engine", team]
        env = dict(os.environ, UNMASK_ENGINE_TOKEN=token)
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)

    out = doctor(TOKEN)
    assert re.search(r"\[ok  \] team engine reachable: .*model smollm2", out.stdout), out.stdout
    assert re.search(r"\[(ok  |warn)\] team engine round trip: .*ms warm", out.stdout), out.stdout
    out = doctor("wrong-token-wrong-token")
    assert out.returncode == 1 and re.search(r"\[FAIL\] team engine reachable: .*HTTP 401", out.stdout), out.stdout


@pytest.mark.slow
def test_a_client_that_goes_away_stops_its_request(team):
    """The connection closes after the first draft: the engine counts it cancelled and runs no more model calls
    for it (a 64-token hole would take dozens)."""
    host, port = re.match(r"http://([^:]+):(\d+)", team).groups()
    before = json.loads(_http(team, "GET", "/v1/stats")[1])["figures"]
    body = json.dumps(
        {
            "pieces": ["def parse(lines):\n    out = []\n    for line in lines:\n        ", "\n"],
            "buckets": [64],
            "steps": 64,
            "user": "goes-away",
            "doc": "d",
        }
    )
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/v1/complete", body=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert json.loads(conn.getresponse().readline())["step"] >= 1
    conn.close()
    for _ in range(50):
        after = json.loads(_http(team, "GET", "/v1/stats")[1])["figures"]
        if after["cancelled"] > before["cancelled"]:
            break
        time.sleep(0.2)
    assert after["cancelled"] == before["cancelled"] + 1
    time.sleep(1.0)
    settled = json.loads(_http(team, "GET", "/v1/stats")[1])["figures"]
    assert settled["model_calls"] - before["model_calls"] < 10
