"""The team engine: one shared model on Ray Serve, batching model calls across users.

``unmask engine serve`` starts a Ray Serve application (a local Ray instance, or an existing
cluster with ``--address``) whose deployment :class:`EngineReplica` holds the model. The
daemons (``unmask serve --engine URL``, :mod:`.remote`) keep context gathering, span choice
and LSP; they send the pieces around the hole and get drafts back.

**Batching.** Each request decodes on its own thread with the ordinary engine
(:class:`~unmask.engine.causal.CausalEngine`), whose decoder is a
:class:`~unmask.engine.batching.BatchedDecoder`: every model call (a prefill, a decoding step)
goes to :meth:`EngineReplica.forward`, a ``@serve.batch`` method, so calls from different
users that arrive within ``batch_wait_ms`` run as one padded batch
(:func:`~unmask.engine.batching.forward_many`). ``max_batch_size`` 1 turns batching off. While
anything runs on the model, new calls wait and are let go together (Serve forms the next batch
without waiting for the model, so under load batches otherwise stay at one call). A long prefill
(more than ``batching.PAD_ROWS`` new tokens: a cold context) runs alone, in turn: batching it gains
nothing (it is compute-bound) and would hold the other calls of its batch until it ends.

**Caches and fairness.** A request names its user (one daemon) and document; the engine keeps
a context cache per document (``cache_mb`` in all, least recently used out, at most 4
entries per document), and a document's newer request cancels its older one (newest wins,
as in the daemon); a user has at most ``MAX_PER_USER`` requests in flight (the oldest is
cancelled). A cancelled request stops before its next model call; so does one whose client
disconnected, and one older than twice its budget (the daemon has stopped waiting for it); a
decoding call still queued for such a request is dropped, not run, so an overload drains (a
prefill still runs: it is the document's cache for its next request).

**Replicas.** With more than one replica, each user's requests go to one replica (consistent
hashing of the ``X-Session-Id`` header, the user, by Ray Serve's ``ConsistentHashRouter``; the
next replica on the ring only when that one is full): caches, newest-wins and the per-user cap
are per replica, so they hold only if a user's requests stay on one. Adding or losing a replica
moves about 1/N of the users. ``--routing load`` turns this off.

**Protocol** (HTTP/JSON, ``/v1``; :mod:`.remote` is the client): ``GET /v1/info`` (model,
window, tokenizer), ``GET /v1/health``, ``GET /v1/stats`` (our figures: requests, batch
sizes, queue wait, steps per request, caches), ``POST /v1/complete`` (a stream of drafts,
one JSON line each, then an ``end`` line). Bodies over ``MAX_BODY`` bytes are refused (413);
with a token every request needs ``Authorization: Bearer TOKEN`` (401). The same figures go to
Ray's metrics (Prometheus, with Ray Serve's own) as ``unmask_*``.

It knows the engine API, Ray Serve and HTTP; it knows nothing about LSP or editors.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Any

import numpy as np

from .batching import BatchedDecoder, forward_many
from .remote import LATE_FACTOR, PROTOCOL, draft_row

log = logging.getLogger("unmask.engine")

MAX_BODY = 2 * 2**20  # bytes of one request (the daemon sends a window of text, well under this)
MAX_PER_USER = 4  # requests of one user in flight at once (completions and their successors)
MAX_PIECES = 64
DEFAULT_BATCH = 8  # bench/team_load.py: see BENCHMARKS.md, "Team engine"
DEFAULT_WAIT_MS = 2.0


class BadRequest(ValueError):
    pass


class Abandoned(Exception):
    """A model call whose request was cancelled or expired before its turn: not run."""


def parse_request(body: bytes) -> dict:
    """A ``/v1/complete`` body, checked: raises BadRequest with what is wrong."""
    if len(body) > MAX_BODY:
        raise BadRequest(f"request body over {MAX_BODY} bytes")
    try:
        req = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"not JSON: {e}") from None
    if not isinstance(req, dict):
        raise BadRequest("the body must be a JSON object")
    pieces = req.get("pieces")
    if not (isinstance(pieces, list) and 2 <= len(pieces) <= MAX_PIECES and all(isinstance(p, str) for p in pieces)):
        raise BadRequest(f"'pieces' must be a list of 2 to {MAX_PIECES} strings (the text around each hole)")
    buckets = req.get("buckets")
    if buckets is not None and (
        not isinstance(buckets, list)
        or len(buckets) != len(pieces) - 1
        or not all(isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 256 for b in buckets)
    ):
        raise BadRequest("'buckets' must be one whole number from 1 to 256 per hole")
    out: dict[str, Any] = {"pieces": pieces, "buckets": buckets}
    for name, kind, lo, hi, default in (
        ("budget_ms", float, 1, 60_000, None),
        ("steps", int, 1, 512, 64),
        ("threshold", float, 0.0, 1.0, 0.9),
        ("block", int, 1, 64, None),
        ("block_steps", int, 1, 64, None),
    ):
        v = req.get(name, default)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
                raise BadRequest(f"'{name}' must be a number from {lo} to {hi}")
            v = kind(v)
        out[name] = v
    for name in ("comment", "user", "doc"):
        v = req.get(name)
        if v is not None and (not isinstance(v, str) or len(v) > 4096):
            raise BadRequest(f"'{name}' must be a string")
        out[name] = v
    out["one_line"] = bool(req.get("one_line", False))
    return out


class Figures:
    """Our counters for ``/v1/stats`` (and Ray's metrics when running under Serve)."""

    def __init__(self, ray_metrics: bool = False):
        self.lock = threading.Lock()
        self.requests = self.cancelled = self.expired = self.superseded = self.errors = 0
        self.model_calls = self.batches = self.prefills = self.dropped = 0
        self.prefill_ms: deque[float] = deque(maxlen=4096)
        self.batch_sizes: dict[int, int] = {}
        self.model_ms: dict[int, deque[float]] = {}  # batch size -> ms of its forward passes
        self.queue_ms: deque[float] = deque(maxlen=4096)
        self.steps: deque[int] = deque(maxlen=4096)
        self.request_ms: deque[float] = deque(maxlen=4096)
        self._ray = None
        if ray_metrics:
            try:
                from ray.serve import metrics

                self._ray = {
                    "batch": metrics.Histogram(
                        "unmask_batch_size", "model calls per batched forward", boundaries=[1, 2, 4, 8, 16, 32, 64]
                    ),
                    "wait": metrics.Histogram(
                        "unmask_queue_wait_ms", "ms a model call waited for its batch", boundaries=[1, 2, 5, 10, 20, 50]
                    ),
                    "steps": metrics.Histogram(
                        "unmask_steps_per_request", "model calls per request", boundaries=[1, 2, 4, 8, 16, 32, 64]
                    ),
                    "requests": metrics.Counter("unmask_requests", "completion requests", tag_keys=("outcome",)),
                }
            except Exception:  # noqa: BLE001 - outside a Serve replica there is no metrics agent
                self._ray = None

    def batch(self, size: int, waits_ms: list[float], model_ms: float = 0.0) -> None:
        with self.lock:
            self.model_ms.setdefault(size, deque(maxlen=512)).append(model_ms)
            self.batches += 1
            self.model_calls += size
            self.batch_sizes[size] = self.batch_sizes.get(size, 0) + 1
            self.queue_ms.extend(waits_ms)
        if self._ray:
            self._ray["batch"].observe(size)
            for w in waits_ms:
                self._ray["wait"].observe(w)

    def drop(self, n: int = 1) -> None:
        with self.lock:
            self.dropped += n

    def prefill(self, wait_ms: float, model_ms: float) -> None:
        with self.lock:
            self.prefills += 1
            self.prefill_ms.append(model_ms)
            self.queue_ms.append(wait_ms)

    def request(self, outcome: str, steps: int, ms: float) -> None:
        with self.lock:
            self.requests += 1
            self.steps.append(steps)
            self.request_ms.append(ms)
            if outcome == "cancelled":
                self.cancelled += 1
            elif outcome == "expired":
                self.expired += 1
            elif outcome == "error":
                self.errors += 1
        if self._ray:
            self._ray["steps"].observe(steps)
            self._ray["requests"].inc(tags={"outcome": outcome})

    def as_dict(self) -> dict:
        def pct(xs, q):
            return round(float(np.percentile(list(xs), q)), 2) if xs else None

        with self.lock:
            return {
                "requests": self.requests,
                "cancelled": self.cancelled,
                "expired": self.expired,
                "superseded": self.superseded,
                "errors": self.errors,
                "model_calls": self.model_calls,
                "batches": self.batches,
                "mean_batch": round(self.model_calls / self.batches, 2) if self.batches else None,
                "batch_sizes": dict(sorted(self.batch_sizes.items())),
                "batch_ms_p50": {k: pct(v, 50) for k, v in sorted(self.model_ms.items())},
                "prefills_alone": self.prefills,
                "dropped_calls": self.dropped,
                "prefill_ms": {"p50": pct(self.prefill_ms, 50), "p95": pct(self.prefill_ms, 95)},
                "queue_wait_ms": {"p50": pct(self.queue_ms, 50), "p95": pct(self.queue_ms, 95)},
                "steps_per_request": {"p50": pct(self.steps, 50), "max": max(self.steps) if self.steps else None},
                "request_ms": {"p50": pct(self.request_ms, 50), "p95": pct(self.request_ms, 95)},
            }


class Inflight:
    """Newest wins per document, at most ``MAX_PER_USER`` per user: who to cancel when a request arrives."""

    def __init__(self, per_user: int = MAX_PER_USER):
        self.per_user = per_user
        self._by_user: dict[str, OrderedDict[str, threading.Event]] = {}

    def start(self, user: str, doc: str, cancel: threading.Event) -> int:
        """Register a request; cancel what it supersedes; return how many were cancelled."""
        mine = self._by_user.setdefault(user, OrderedDict())
        n = 0
        old = mine.pop(doc, None)
        if old is not None and not old.is_set():
            old.set()
            n += 1
        mine[doc] = cancel
        while len(mine) > self.per_user:
            _, ev = mine.popitem(last=False)
            if not ev.is_set():
                ev.set()
                n += 1
        return n

    def end(self, user: str, doc: str, cancel: threading.Event) -> None:
        mine = self._by_user.get(user)
        if mine is not None and mine.get(doc) is cancel:
            del mine[doc]
            if not mine:
                del self._by_user[user]


class EngineCore:
    """The replica's work, without Ray: one engine shared by request threads, model calls batched
    by ``batcher`` (an async function of a list of calls; under Serve the ``@serve.batch`` method)."""

    def __init__(
        self,
        model: str | None = None,
        threads: int = 0,
        cache_mb: float = 2048,
        device: str = "auto",
        ray_metrics: bool = False,
    ):
        from .infill import Engine
        from .runtime import backend_config

        cfg = backend_config("onnx", model, threads)
        if device != "auto":
            cfg["device"] = device
        self.engine = Engine(cfg, cache_mb=cache_mb)
        self.inner = self.engine.backend
        self.figures = Figures(ray_metrics)
        self.inflight = Inflight()
        self.requests_pool = ThreadPoolExecutor(max_workers=256, thread_name_prefix="unmask-req")
        self.model_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unmask-model")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.batcher = None
        self.idle: asyncio.Event | None = None  # set while nothing runs on the model thread (see attach)
        self._req = threading.local()  # the request a request thread runs: (cancel event, expiry)
        self.busy = 0
        self.token: str | None = None
        self.started = time.time()

    def attach(self, loop: asyncio.AbstractEventLoop, batcher) -> None:
        """Route the engine's model calls through ``batcher`` on ``loop`` (once, from the loop)."""
        if self.loop is not None:
            return
        self.loop, self.batcher = loop, batcher
        self.idle = asyncio.Event()
        self.idle.set()

        async def gated(item: tuple) -> tuple:
            # Serve forms the next batch while the previous one runs (its concurrency limit is taken after the
            # batch is formed), so under load calls trickled into batches of one, each waiting its turn. Calls
            # wait here while the model is busy and are let go together when it is free: they form one batch.
            await self.idle.wait()
            return await self.batcher(item)

        def submit(call: tuple) -> tuple:
            t, req = time.perf_counter(), self._request()
            out = asyncio.run_coroutine_threadsafe(gated((t, call, req)), loop).result()
            if isinstance(out, Abandoned):
                raise out
            return out

        def alone(call: tuple) -> tuple:  # a prefill: on the model thread, in turn, in no batch
            t = time.perf_counter()
            return asyncio.run_coroutine_threadsafe(self._on_model(lambda: self._forward_alone(t, call)), loop).result()

        self.engine.backend = BatchedDecoder(self.inner, submit, alone)

    def _request(self) -> tuple:
        """(cancel event, expiry) of the request this thread runs (None outside a request)."""
        return getattr(self._req, "state", None)

    @staticmethod
    def _abandoned(req) -> bool:
        return req is not None and (req[0].is_set() or (req[1] is not None and time.perf_counter() > req[1]))

    def _forward_alone(self, t: float, call: tuple) -> tuple:
        # a prefill runs even when its request went away meanwhile: it fills the document's cache, which
        # the next request of that document (waiting on ContextCache.prefilling) reuses
        now = time.perf_counter()
        out = self.inner.forward(*call)
        self.figures.prefill((now - t) * 1000, (time.perf_counter() - now) * 1000)
        return out

    async def _on_model(self, fn):
        """Run ``fn`` on the model thread; while anything runs there, batched calls wait at the gate."""
        self.busy += 1
        self.idle.clear()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.model_pool, fn)
        finally:
            self.busy -= 1
            if not self.busy:
                self.idle.set()

    async def run_batch(self, items: list[tuple]) -> list:
        """One batched forward for ``items`` ((queued at, call, request) triples), on the model thread; the
        calls of requests that went away meanwhile are dropped (an :class:`Abandoned` in their place)."""

        def run() -> list:
            now = time.perf_counter()  # queue wait = submitted -> the model thread starts the batch
            live = [i for i, (_, _, req) in enumerate(items) if not self._abandoned(req)]
            out: list = [Abandoned()] * len(items)
            if len(live) < len(items):
                self.figures.drop(len(items) - len(live))
            if live:
                for i, res in zip(live, forward_many(self.inner, [items[i][1] for i in live])):
                    out[i] = res
                waits = [(now - items[i][0]) * 1000 for i in live]
                self.figures.batch(len(live), waits, (time.perf_counter() - now) * 1000)
            return out

        if self.idle is None:  # not attached (tests): no gate
            return await asyncio.get_running_loop().run_in_executor(self.model_pool, run)
        return await self._on_model(run)

    def info(self) -> dict:
        from .llama_onnx import GRAPH_VERSION

        meta = dict(self.engine.meta)
        return {
            "protocol": PROTOCOL,
            "name": meta.get("name", ""),
            "kind": meta.get("kind", ""),
            "graph_version": GRAPH_VERSION,
            "window": self.engine.window,
            "meta": meta,
            "tokenizer": self.engine.tokenizer_path.read_text(),
        }

    def stats(self) -> dict:
        cache = getattr(self.engine, "_cache", None)
        return {
            "name": self.engine.meta.get("name", ""),
            "uptime_s": round(time.time() - self.started, 1),
            "pid": os.getpid(),
            "providers": getattr(self.inner, "providers", None),
            "figures": self.figures.as_dict(),
            "cache": cache.as_dict() if cache is not None and hasattr(cache, "as_dict") else None,
        }

    def authorized(self, header: str | None) -> bool:
        if not self.token:
            return True
        return bool(header) and hmac.compare_digest(header.encode(), f"Bearer {self.token}".encode())

    async def complete(self, req: dict):
        """The drafts for ``req`` (checked by :func:`parse_request`), as wire rows; then the end row."""
        loop = asyncio.get_running_loop()
        user, doc = req["user"] or "anonymous", req["doc"] or ""
        cancel = threading.Event()
        superseded = self.inflight.start(user, doc, cancel)
        if superseded:
            with self.figures.lock:
                self.figures.superseded += superseded
        q: asyncio.Queue = asyncio.Queue()
        t0 = time.perf_counter()
        state = {"steps": 0, "outcome": "ok"}
        # past this the daemon has stopped listening (remote.LATE_FACTOR budgets): no more work for it
        expires = t0 + LATE_FACTOR * req["budget_ms"] / 1000 if req["budget_ms"] else None

        def put(item) -> None:
            loop.call_soon_threadsafe(q.put_nowait, item)

        def run() -> None:
            self._req.state = (cancel, expires)
            try:
                if cancel.is_set():
                    state["outcome"] = "cancelled"
                    return
                kw = {k: req[k] for k in ("block", "block_steps") if req.get(k)}
                for d in self.engine.stream_holes(
                    req["pieces"],
                    req["buckets"],
                    budget_ms=req["budget_ms"],
                    steps=req["steps"],
                    threshold=req["threshold"],
                    one_line=req["one_line"],
                    comment=req["comment"],
                    cache=f"{user}\x00{doc}",
                    **kw,
                ):
                    state["steps"] = d.step
                    put(("draft", draft_row(d)))
                    if cancel.is_set():
                        state["outcome"] = "cancelled"
                        return
                    if expires is not None and time.perf_counter() > expires:
                        state["outcome"] = "expired"
                        return
            except CancelledError:  # its model call was cancelled with the request (the client went away)
                state["outcome"] = "cancelled"
            except Abandoned:
                state["outcome"] = "cancelled" if cancel.is_set() else "expired"
            except Exception as e:  # noqa: BLE001 - the request fails, the replica stays up
                log.exception("request failed")
                state["outcome"] = "error"
                put(("error", f"{type(e).__name__}: {e}"))
            finally:
                put(("end", dict(self.engine.last_cache)))

        fut = loop.run_in_executor(self.requests_pool, run)
        try:
            while True:
                kind, x = await q.get()
                if kind == "draft":
                    yield json.dumps(x) + "\n"
                elif kind == "error":
                    yield json.dumps({"error": x}) + "\n"
                else:
                    ms = (time.perf_counter() - t0) * 1000
                    figures = {"ms": round(ms, 2), "steps": state["steps"], "pid": os.getpid()}  # pid: the replica
                    yield json.dumps({"end": True, "cache": x, "engine": figures})
                    yield "\n"
                    break
        finally:
            cancel.set()  # a client that went away stops the run before its next model call
            self.inflight.end(user, doc, cancel)
            try:
                await asyncio.shield(fut)
            except BaseException:  # noqa: BLE001 - cancelled with the request: the run has stopped or will
                if state["outcome"] == "ok":
                    state["outcome"] = "cancelled"
            finally:
                self.figures.request(state["outcome"], state["steps"], (time.perf_counter() - t0) * 1000)


def build_app(
    model: str | None = None,
    *,
    affinity: bool = True,
    max_batch_size: int = DEFAULT_BATCH,
    batch_wait_ms: float = DEFAULT_WAIT_MS,
    cache_mb: float = 2048,
    threads: int = 0,
    token: str | None = None,
    replicas: int = 1,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    cpus_per_replica: float = 1.0,
    gpus_per_replica: float = 0.0,
    device: str = "auto",
):
    """The Ray Serve application (import Ray here only: the daemon never needs it).

    ``affinity``: each user's requests go to one replica, chosen by consistent hashing of the
    ``x-session-id`` header the daemon sends (its user id), so a document's cache, newest-wins and the
    per-user cap all live in one place; otherwise Serve's default (the less busy of two random replicas)."""
    from ray import serve
    from ray.serve.config import RequestRouterConfig
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse

    @serve.deployment(
        name="unmask-engine",
        max_ongoing_requests=256,
        ray_actor_options={"num_cpus": cpus_per_replica, "num_gpus": gpus_per_replica},
        health_check_period_s=10,
    )
    class EngineReplica:
        def __init__(self):
            self.core = EngineCore(model, threads, cache_mb, device, ray_metrics=True)
            self.core.token = token
            self.forward.set_max_batch_size(max_batch_size)
            self.forward.set_batch_wait_timeout_s(batch_wait_ms / 1000)

        @serve.batch(max_batch_size=DEFAULT_BATCH, batch_wait_timeout_s=DEFAULT_WAIT_MS / 1000)
        async def forward(self, items: list[tuple]) -> list:  # (queued at, call, request) triples
            return await self.core.run_batch(items)

        async def __call__(self, request: Request):
            core = self.core
            core.attach(asyncio.get_running_loop(), self.forward)
            if not core.authorized(request.headers.get("authorization")):
                return JSONResponse({"error": "a bearer token is required"}, status_code=401)
            path = request.url.path.rstrip("/")
            prefix = request.scope.get("root_path", "").rstrip("/")  # the app's route prefix, if any
            if prefix and path.startswith(prefix):
                path = path[len(prefix) :]
            if request.method == "GET" and path == "/v1/info":
                return JSONResponse(core.info())
            if request.method == "GET" and path == "/v1/health":
                return JSONResponse({"ok": True})
            if request.method == "GET" and path == "/v1/stats":
                return JSONResponse(core.stats())
            if request.method == "POST" and path == "/v1/complete":
                size = request.headers.get("content-length")
                if size is not None and size.isdigit() and int(size) > MAX_BODY:
                    return JSONResponse({"error": f"request body over {MAX_BODY} bytes"}, status_code=413)
                body = b""
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > MAX_BODY:
                        return JSONResponse({"error": f"request body over {MAX_BODY} bytes"}, status_code=413)
                try:
                    req = parse_request(body)
                except BadRequest as e:
                    return JSONResponse({"error": str(e)}, status_code=400)
                return StreamingResponse(core.complete(req), media_type="application/x-ndjson")
            return JSONResponse({"error": f"no such endpoint: {request.method} {path}"}, status_code=404)

    opts: dict[str, Any] = {}
    if affinity:
        opts["request_router_config"] = RequestRouterConfig(
            request_router_class="ray.serve.experimental.consistent_hash_router.ConsistentHashRouter",
            request_router_kwargs={"num_fallback_replicas": 1},  # a replica at max_ongoing_requests: the next one
        )
    if min_replicas is not None or max_replicas is not None:
        lo = min_replicas if min_replicas is not None else 1
        opts["autoscaling_config"] = {
            "min_replicas": lo,
            "max_replicas": max(lo, max_replicas or lo),
            "target_ongoing_requests": 16,
        }
        opts["num_replicas"] = "auto"
    else:
        opts["num_replicas"] = replicas
    return EngineReplica.options(**opts).bind()


# -- unmask engine serve ----------------------------------------------------------------------
TOKEN_ENV = "UNMASK_ENGINE_TOKEN"
MIN_TOKEN = 16
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parse_args(argv: list[str] | None):
    import argparse

    ap = argparse.ArgumentParser(
        prog="unmask engine serve",
        description="serve the model to many editors: a Ray Serve application (daemons connect with "
        "`unmask serve --engine http://HOST:PORT`)",
        epilog=f"Any --host but loopback needs a token (${TOKEN_ENV}, at least {MIN_TOKEN} characters) that every "
        "request presents as 'Authorization: Bearer TOKEN'; daemons read it from the same variable.",
    )
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8719, help="HTTP port (default 8719)")
    ap.add_argument("--address", help="join this Ray cluster (e.g. auto, ray://HEAD:10001); default: start a local Ray")
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    ap.add_argument("--replicas", type=int, default=1, help="model replicas (default 1)")
    ap.add_argument("--min-replicas", type=int, help="autoscale: at least this many replicas")
    ap.add_argument("--max-replicas", type=int, help="autoscale: at most this many replicas")
    ap.add_argument(
        "--routing",
        choices=["user", "load"],
        default="user",
        help="user (default): each daemon's requests go to one replica, where its documents' caches are; "
        "load: to the less busy of two random replicas (caches miss across replicas)",
    )
    ap.add_argument("--cpus-per-replica", type=float, default=1.0)
    ap.add_argument("--gpus-per-replica", type=float, help="default: 1 when Ray sees a GPU, else 0")
    ap.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULT_BATCH,
        help=f"model calls batched across requests (1: no batching; default {DEFAULT_BATCH})",
    )
    ap.add_argument(
        "--batch-wait-ms",
        type=float,
        default=DEFAULT_WAIT_MS,
        help=f"how long a model call waits for others to batch with (default {DEFAULT_WAIT_MS})",
    )
    ap.add_argument("--cache-mb", type=float, default=2048, help="context caches per replica, MB (default 2048)")
    ap.add_argument("--threads", type=int, default=0, help="model intra-op threads per replica (0: runtime default)")
    ap.add_argument("--metrics-port", type=int, help="Prometheus metrics port (Ray's and unmask_*), local Ray only")
    args = ap.parse_args(argv)
    if args.max_batch_size < 1 or args.batch_wait_ms < 0:
        ap.error("--max-batch-size must be at least 1 and --batch-wait-ms not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    import signal
    import sys

    args = parse_args(argv)
    token = os.environ.get(TOKEN_ENV) or None
    if args.host not in LOOPBACK and not token:
        print(
            f"unmask engine serve: refusing to listen on {args.host} without a token: set {TOKEN_ENV} "
            f"(at least {MIN_TOKEN} characters, e.g. `export {TOKEN_ENV}=$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(24))')`) here and for every daemon",
            file=sys.stderr,
        )
        return 2
    if token and len(token) < MIN_TOKEN:
        print(f"unmask engine serve: {TOKEN_ENV} must be at least {MIN_TOKEN} characters", file=sys.stderr)
        return 2
    # the model must load here first: a broken install is one message, not a crash-looping replica
    from .infill import Engine
    from .runtime import ModelError, backend_config

    try:
        probe = Engine(backend_config("onnx", args.model))
    except ModelError as e:
        print(f"unmask engine serve: {e}", file=sys.stderr)
        return 2
    if getattr(probe, "meta", {}).get("kind") != "causal-base":
        print("unmask engine serve: the team engine serves causal-base models only", file=sys.stderr)
        return 2
    del probe

    import ray
    from ray import serve

    init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if args.address:
        init["address"] = args.address
    else:
        init["object_store_memory"] = 128 * 2**20  # requests carry text; nothing large goes through the store
        if args.metrics_port:
            init["_metrics_export_port"] = args.metrics_port
    ray.init(**init)
    gpus = args.gpus_per_replica
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    serve.start(http_options={"host": args.host, "port": args.port})
    app = build_app(
        args.model,
        affinity=args.routing == "user",
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        cache_mb=args.cache_mb,
        threads=args.threads,
        token=token,
        replicas=args.replicas,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        cpus_per_replica=args.cpus_per_replica,
        gpus_per_replica=gpus,
        device="cuda" if gpus else "cpu",
    )
    serve.run(app, name="unmask", route_prefix="/")
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"unmask engine serve: listening on http://{shown}:{args.port}; "
        f"{'loopback only' if args.host in LOOPBACK else 'network'}; "
        f"{'token required' if token else 'no token'}; batch {args.max_batch_size} / {args.batch_wait_ms} ms; "
        f"{'GPU' if gpus else 'CPU'}",
        file=sys.stderr,
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()
    return 0
