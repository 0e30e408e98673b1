"""Where an inline completion's time goes: one :class:`Trace` per request, the last N kept.

A trace starts when the request arrives (after the JSON-RPC message was read and parsed) and
ends when its response has been serialized and written. On the way each stage adds its
milliseconds (see :data:`STAGES`); the model thread adds the engine's stages, with the model's
forward passes timed apart from the engine's own work (tokenizing, sampling, decoding drafts),
so ``engineOverhead = engine - model``. :class:`Timings` keeps the finished traces for the
``unmask/timings`` request.

It knows clocks and stage names; it knows nothing about LSP types, documents or the model.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

STAGES: dict[str, str] = {
    "edit": "applying the didChange events since the document's previous request (text + syntax tree edit)",
    "wait": "request arrival to the handler running (event-loop scheduling)",
    "parse": "bringing the syntax tree up to date (incremental re-parse, lazy)",
    "span": "choosing the span at the cursor (line or block, suppression)",
    "context": "gathering and packing repository context into the token budget",
    "queue": "waiting for the model thread",
    "tokenize": "engine: tokenizing the pieces and laying out the window",
    "encode": "model: the context's forward pass (0 when the engine's cache had it)",
    "denoise": "engine: all denoising steps (wall)",
    "engine": "engine: the whole call, tokenize to last draft (wall)",
    "model": "model: all forward passes (encode + steps)",
    "engineOverhead": "engine - model: the engine's own work around the forward passes",
    "shape": "shaping the answer and converting it to LSP types",
    "serialize": "JSON-encoding and writing the response",
    "server": "request arrival to response written",
}
"""Stage name -> what it measures (milliseconds). Not every request has every stage."""


@dataclass
class Trace:
    """The timings of one inline completion request."""

    request_id: int | str | None
    uri: str
    version: int | None
    arrived: float = field(default_factory=time.perf_counter)
    stages: dict[str, float] = field(default_factory=dict)  # ms, see STAGES
    steps: list[float] = field(default_factory=list)  # wall ms of each denoising step
    step_forward: list[float] = field(default_factory=list)  # model ms of each step
    outcome: str = ""  # items | empty | type-through | superseded | stale | cancelled | <why nothing was computed>
    context: dict | None = None  # what the model was shown (sources, paths, tokens), when context was gathered
    cache: dict | None = None  # the engine's context cache: {"reused": tokens from cache, "prefilled": tokens run}

    def add(self, stage: str, ms: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + ms

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, (time.perf_counter() - t) * 1e3)


class Timings:
    """Traces of requests in flight (by request id) and the last ``keep`` finished ones."""

    def __init__(self, keep: int = 1024):
        self.done: deque[Trace] = deque(maxlen=keep)
        self._open: dict[int | str, Trace] = {}

    def begin(self, request_id: int | str, uri: str, version: int | None) -> Trace:
        tr = Trace(request_id, uri, version)
        self._open[request_id] = tr
        while len(self._open) > 4 * (self.done.maxlen or 1024):  # responses that never went out
            self._open.pop(next(iter(self._open)))
        return tr

    def finish(self, request_id: int | str, serialize_ms: float, error: bool) -> None:
        """The response to ``request_id`` was written (no-op for requests without a trace)."""
        tr = self._open.pop(request_id, None)
        if tr is None:
            return
        tr.add("serialize", serialize_ms)
        tr.stages["server"] = (time.perf_counter() - tr.arrived) * 1e3
        if not tr.outcome:
            tr.outcome = "error" if error else "empty"
        self.done.append(tr)

    def recent(self, limit: int | None = None) -> list[Trace]:
        out = list(self.done)
        return out[-limit:] if limit else out
