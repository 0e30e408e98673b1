"""The engine API over HTTP: completions from a team engine (``unmask engine serve``).

:class:`RemoteEngine` has the public API the daemon uses of the in-process engine
(``stream_holes``, ``infill``, ``warmup``, ``tok``, ``window``, ``tokenizer_path``), so the
daemon's worker, context packing and LSP code run unchanged; only the model and the sampler
move to the shared engine. It speaks the team engine's protocol (:mod:`.team`):

* ``GET /v1/info`` once at load: the model's name, window, special tokens and tokenizer (so
  the daemon counts tokens exactly as the engine does without having the model itself);
* ``POST /v1/complete``: the pieces around the hole(s) and the decoding limits, answered as a
  stream of drafts (one JSON line per model call), so anytime drafts still reach the editor.
  The request names its cache (``user`` and ``doc``): the engine keeps a context cache per
  document and cancels a document's older request when a newer one arrives (newest wins).

**Deadlines.** The engine ends decoding at the request's budget once there is text, as the
in-process engine does (a cold context may take longer to show its first words); the daemon
waits for drafts at most ``LATE_FACTOR`` times the budget (plus a small grace), then the drafts
so far are the answer: a stuck or overloaded engine never holds a request longer. With a
local ``fallback`` engine, a remote engine that cannot be reached, or that has not sent its
first draft by ``FIRST_DRAFT_SHARE`` of the budget, is left and the local engine answers in
the time that remains; an unreachable engine is not tried again for ``RETRY_S`` seconds.
Without a fallback the answer is empty.

Standard library HTTP (``http.client``, one kept-alive connection): the worker calls from one
thread, and the protocol is a POST and a line stream. It knows the engine API and the wire
protocol; it knows nothing about LSP, documents or Ray.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .infill import LINE_BUCKET, InfillDraft
from .runtime import ModelError
from .tokenizer import Specials, Tokenizer

log = logging.getLogger("unmask.engine")

PROTOCOL = 1  # the /v1 wire protocol's version (info["protocol"])
FIRST_DRAFT_SHARE = 0.6  # with a fallback: no first draft by this share of the budget -> answer locally
GRACE_MS = 40.0  # how long past the hard deadline a draft already in flight is awaited
LATE_FACTOR = 2.0  # the most the daemon waits for a remote answer, in budgets (the engine stops at 1 once it has text)
RETRY_S = 5.0  # an engine that could not be reached is not tried again for this long (when there is a fallback)
CONNECT_S = 2.0


class RemoteBackend:
    """Stands where the in-process engine's decoder is: the model runs elsewhere (no forward passes here)."""

    name = "remote"

    def __init__(self, url: str):
        self.url = url


class RemoteInfo:
    def __init__(self, url: str, meta: dict):
        self.path, self.meta = url, meta


class RemoteEngine:
    """A team engine at ``url`` behind the engine API (see the module docstring)."""

    def __init__(
        self, url: str, token: str | None = None, fallback: Any | None = None, user: str | None = None, timeout_s=10.0
    ):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ModelError(f"engine URL must be http://HOST:PORT or https://HOST:PORT, not {url!r}")
        self._prefix = parts.path.rstrip("/")  # an engine behind a path (a proxy, or one of several Serve apps)
        self.url = f"{parts.scheme}://{parts.netloc}{self._prefix}"
        self._https, self._host, self._port = parts.scheme == "https", parts.hostname, parts.port
        self._token = token
        self.fallback = fallback
        self.user = user or uuid.uuid4().hex[:12]  # this daemon: the engine's fairness and cache key
        self._conn: http.client.HTTPConnection | None = None
        self._down_until = 0.0
        self.stats = {"remote": 0, "fallback": 0, "empty": 0, "errors": 0, "cancelled": 0}
        self.last_cache: dict | None = None
        self.last_engine: dict | None = None  # the engine's own figures for the latest request
        self.backend = RemoteBackend(self.url)
        self._pending = False  # True until the engine has answered /v1/info (only with a fallback)
        try:
            info = self._info(timeout_s)
        except ModelError as e:
            if fallback is None:
                raise
            # the local engine serves until the team engine answers (tried again every RETRY_S)
            log.warning("%s; the local model answers until it does", e)
            self._pending, self._down_until = True, time.monotonic() + RETRY_S
            self.meta, self.info, self.model_name = fallback.meta, RemoteInfo(self.url, fallback.meta), ""
            self.window, self.tokenizer_path, self.tok = fallback.window, fallback.tokenizer_path, fallback.tok
            self.buckets, self.long_bucket = fallback.buckets, fallback.long_bucket
            return
        self.meta = info["meta"]
        self.info = RemoteInfo(self.url, self.meta)
        self.window = int(info["window"])
        self.buckets = list(self.meta.get("buckets", [8, 16, 32, 64]))
        self.long_bucket = int(self.meta.get("long_bucket", 128))
        self.tokenizer_path = _save_tokenizer(info["tokenizer"])
        self.tok = Tokenizer.from_file(self.tokenizer_path, specials=Specials(**self.meta["specials"]))
        self.model_name = info.get("name", "")

    def _info(self, timeout_s: float) -> dict:
        try:
            info = self._get("/v1/info", timeout_s)
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise ModelError(
                f"cannot reach the team engine at {self.url}: {e}. Start it with `unmask engine serve`, "
                "or check the URL and token (engine.url, --engine, UNMASK_ENGINE_TOKEN)."
            ) from e
        if info.get("protocol") != PROTOCOL:
            raise ModelError(f"the team engine at {self.url} speaks protocol {info.get('protocol')}, not {PROTOCOL}")
        return info

    @property
    def proposes_edits(self) -> bool:
        # next-edit proposals run in the daemon: only a local model can make them
        return bool(self.fallback is not None and getattr(self.fallback, "proposes_edits", False))

    def __getattr__(self, name: str) -> Any:  # prepare_edit / stream_prepared: the local engine's, if any
        if name in ("prepare_edit", "stream_prepared", "stream_edit") and self.__dict__.get("fallback") is not None:
            return getattr(self.fallback, name)
        raise AttributeError(name)

    # -- HTTP ----------------------------------------------------------------------------------
    def _headers(self) -> dict:
        # x-session-id: Ray Serve's consistent-hash routing sends all of this daemon's requests to one replica
        h = {"Content-Type": "application/json", "Accept": "application/x-ndjson", "X-Session-Id": self.user}
        if self._token:
            h["Authorization"] = f"Bearer {self._token}"
        return h

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None or self._conn.sock is None:  # new, or the engine closed it after an answer
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=min(timeout, CONNECT_S))
            self._conn.connect()
            self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn.sock.settimeout(timeout)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _get(self, path: str, timeout: float) -> dict:
        try:
            conn = self._connection(timeout)
            conn.request("GET", self._prefix + path, headers=self._headers())
            resp = conn.getresponse()
            body = resp.read()
        except BaseException:
            self._drop()
            raise
        if resp.status != 200:
            raise ValueError(f"HTTP {resp.status}: {body[:200].decode(errors='replace')}")
        return json.loads(body)

    def health(self, timeout: float = 5.0) -> dict:
        """The engine's ``/v1/stats`` (model, replica figures); raises OSError or ValueError."""
        return self._get("/v1/stats", timeout)

    # -- completions ---------------------------------------------------------------------------
    def stream_holes(
        self,
        pieces: list[str],
        buckets: list[int] | None = None,
        *,
        budget_ms: float | None = None,
        steps: int = 64,
        threshold: float = 0.9,
        one_line: bool = False,
        comment: str | None = None,
        cache: str | None = None,
        **kw,
    ) -> Iterator[InfillDraft]:
        """Drafts from the team engine (one per model call there); see the module docstring for deadlines."""
        t0 = time.perf_counter()
        deadline = t0 + budget_ms / 1000 if budget_ms else None
        hard = t0 + LATE_FACTOR * budget_ms / 1000 if budget_ms else None
        body = {
            "pieces": pieces,
            "buckets": buckets,
            "budget_ms": budget_ms,
            "steps": steps,
            "threshold": threshold,
            "one_line": one_line,
            "comment": comment,
            "user": self.user,
            "doc": cache or "",
            **{k: v for k, v in kw.items() if k in ("block", "block_steps")},  # the rest are not on the wire
        }
        self.last_cache, self.last_engine = None, None
        got = 0
        if self._pending and time.monotonic() >= self._down_until:
            try:
                self.model_name = self._info(CONNECT_S).get("name", "")
                self._pending = False
                log.info("team engine %s answers now", self.url)
            except ModelError:
                self._down_until = time.monotonic() + RETRY_S
        if not self._pending and (time.monotonic() >= self._down_until or self.fallback is None):
            try:
                for d in self._remote(body, deadline, hard, t0):
                    got += 1
                    yield d
            except GeneratorExit:
                self._drop()  # cancelled by the caller mid-stream: the engine sees the connection close
                self.stats["cancelled"] += 1
                raise
            except (OSError, http.client.HTTPException, ValueError) as e:
                self._drop()
                self.stats["errors"] += 1
                if got == 0 and not isinstance(e, TimeoutError):
                    self._down_until = time.monotonic() + RETRY_S
                log.warning("team engine %s: %s (%d drafts received)", self.url, e, got)
        if got:
            self.stats["remote"] += 1
            return
        left = None if deadline is None else (deadline - time.perf_counter()) * 1000
        if self.fallback is not None and (left is None or left > 1):
            self.stats["fallback"] += 1
            yield from self.fallback.stream_holes(
                pieces, buckets, budget_ms=left, steps=steps, threshold=threshold, one_line=one_line, comment=comment
            )
        else:
            self.stats["empty"] += 1

    def _remote(self, body: dict, deadline: float | None, hard: float | None, t0: float) -> Iterator[InfillDraft]:
        first_by = None
        if deadline is not None and self.fallback is not None:
            first_by = time.perf_counter() + (deadline - time.perf_counter()) * FIRST_DRAFT_SHARE

        def wait() -> float:  # seconds the next read may block
            now = time.perf_counter()
            if first_by is not None:
                return max(0.001, first_by - now)
            if hard is None:
                return 60.0
            return max(0.001, hard - now + GRACE_MS / 1000)

        conn = self._connection(wait())
        data = json.dumps(body).encode()
        conn.request("POST", self._prefix + "/v1/complete", body=data, headers=self._headers())
        resp = conn.getresponse()
        if resp.status != 200:
            msg = resp.read()[:300].decode(errors="replace")
            raise ValueError(f"HTTP {resp.status}: {msg}")
        done = False
        while True:
            if conn.sock is not None:
                conn.sock.settimeout(wait())
            line = resp.readline()
            if not line:
                break
            row = json.loads(line)
            if "error" in row:
                raise ValueError(f"the engine failed: {row['error']}")
            if row.get("end"):
                self.last_cache, self.last_engine = row.get("cache"), row.get("engine")
                done = True
                break
            first_by = None
            d = _draft(row)
            d.ms = (time.perf_counter() - t0) * 1000  # the editor's wait, network included
            yield d
        if done:
            resp.read()  # the terminating chunk: the connection is kept for the next request
        else:
            self._drop()  # the stream ended early: the connection is not reusable

    def stream(self, prefix: str, suffix: str, bucket: int = LINE_BUCKET, **kw) -> Iterator[InfillDraft]:
        return self.stream_holes([prefix, suffix], [bucket], **kw)

    def infill(self, prefix: str, suffix: str, bucket: int = LINE_BUCKET, **kw) -> InfillDraft:
        drafts = list(self.stream(prefix, suffix, bucket, **kw))
        if not drafts:
            raise ModelError(f"the team engine at {self.url} gave no answer in time")
        return drafts[-1]

    def warmup(self) -> None:
        if self.fallback is not None:
            self.fallback.warmup()
        for _ in self.stream_holes(["def f(x):\n    return", "\n"], [LINE_BUCKET], steps=2, cache="warmup"):
            pass

    def close(self) -> None:
        self._drop()


def draft_row(d: InfillDraft) -> dict:
    """A draft as one line of the wire protocol."""
    return {
        "step": d.step,
        "texts": d.texts,
        "confidence": d.confidence,
        "min_confidence": d.min_confidence,
        "token_confidence": d.token_confidence,
        "ms": round(d.ms, 3),
        "encode_ms": round(d.encode_ms, 3),
        "done": d.done,
    }


def _draft(row: dict) -> InfillDraft:
    return InfillDraft(
        step=int(row["step"]),
        texts=list(row["texts"]),
        confidence=list(row["confidence"]),
        min_confidence=list(row["min_confidence"]),
        token_confidence=[list(x) for x in row["token_confidence"]],
        ms=float(row["ms"]),
        encode_ms=float(row["encode_ms"]),
        done=bool(row["done"]),
    )


def _save_tokenizer(text: str) -> Path:
    from .base import cache_dir

    d = cache_dir() / "remote" / hashlib.sha256(text.encode()).hexdigest()[:16]
    f = d / "tokenizer.json"
    if not f.is_file():
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f"tokenizer.json.{uuid.uuid4().hex[:8]}"
        tmp.write_text(text)
        tmp.replace(f)
    return f
