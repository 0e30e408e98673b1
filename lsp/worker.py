"""Runs the engine off the event loop: one model, one thread, one model call at a time.

:class:`ModelWorker` owns the :class:`~unmask.engine.infill.Engine` and a single-thread
executor. Loading (and warming up) the model and every completion run there, in order, so
the asyncio loop that speaks LSP is never blocked by model work. A :class:`Job` carries the
engine's ``pieces`` and ``buckets`` (the text around each hole, packed by the context layer)
and a cancel flag that the run checks before it starts and after every denoising step: a job
superseded while queued costs nothing, one superseded mid-way stops at the next step. A
:class:`Call` runs any function of the engine there instead (next-edit prediction): it is
skipped when cancelled before it starts, and otherwise runs to its own deadline.

When a job carries a :class:`~unmask.lsp.timings.Trace`, the run fills in the engine's
stages: the model's backend is wrapped (:class:`TimedBackend`) so its forward passes are
timed apart from the engine's own work. :meth:`ModelWorker.token_counter` counts tokens with
the model's tokenizer (a second instance, so the event loop never shares the engine's).

The model thread hands free memory back to the OS (:meth:`ModelWorker.release_when_idle`): glibc's
free pages (``malloc_trim``) once it has been idle for :data:`IDLE_RELEASE_S` after some work and
every :data:`BUSY_RELEASE_S` between two jobs while it is busy; the runtime's unused arena regions
too (the backend's ``release_memory``, a one-token run) once it has been idle for
:data:`ARENA_RELEASE_S`. Every keystroke frees KV arrays of a new length, and a typing storm grew
RSS by 40-80 MB that was free, not leaked (RELIABILITY.md, Typing storm). A trim takes about 3 ms
and costs the next request nothing; an arena release takes about 20 ms and makes the next cold
request about 6% slower while the arena grows again (``python bench/memory_release.py``), so it
waits until the user has stopped typing, not for every pause between words.

It knows the engine's public API and threads; it knows nothing about LSP, documents or
versions.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from unmask.engine.infill import Engine, InfillDraft
from unmask.engine.runtime import ModelError
from unmask.engine.tokenizer import Tokenizer

from .timings import Trace

log = logging.getLogger("unmask.lsp")

IDLE_RELEASE_S = 1.0  # the model thread idle this long after work: glibc's free pages go back to the OS
BUSY_RELEASE_S = 5.0  # and at most this long apart while it is busy (between two jobs)
ARENA_RELEASE_S = 30.0  # idle this long: the runtime's unused arena regions too (the next request pays ~6%)


@dataclass
class Job:
    """One completion for the engine: the text around the hole(s) and the decoding limits.

    The document is ``pieces[0] + hole_0 + pieces[1] + ...``; ``buckets[i]`` is hole i's slots.
    """

    pieces: list[str]
    buckets: list[int]
    budget_ms: float  # measured from ``created`` (the request's arrival): time spent queued counts against it
    steps: int
    threshold: float
    one_line: bool = False  # single-line mode: the engine ends the text (and its confidence) at the first newline
    comment: str | None = None  # the document language's line comment (how the engine shows code as comments)
    cache: str | None = None  # the engine's context cache to extend (the document's URI)
    on_draft: Callable[[InfillDraft], None] | None = None  # called in the worker thread
    created: float = field(default_factory=time.perf_counter)
    trace: Trace | None = None  # filled with the engine's stages
    label: str = ""  # names the job in debug logs
    submitted: float = 0.0
    started: bool = False
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


@dataclass
class Call:
    """A function of the loaded engine to run on the model thread (e.g. next-edit prediction).

    ``fn(engine)`` runs only if the call was not cancelled before its turn; once started it runs
    to the end (it bounds its own time), and the caller drops its result if cancelled meanwhile.
    """

    fn: Callable[[Engine], Any]
    label: str = ""  # names the call in debug logs
    submitted: float = 0.0
    started: bool = False
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class TimedBackend:
    """The engine's backend with every forward pass timed: the pure model compute of a run."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.name = inner.name
        self.calls: list[tuple[str, float]] = []  # ("encode" | "step", ms), since the last clear()

    def encode(self, *args):
        t = time.perf_counter()
        kv = self.inner.encode(*args)
        self.calls.append(("encode", (time.perf_counter() - t) * 1e3))
        return kv

    def step(self, *args):
        t = time.perf_counter()
        logits = self.inner.step(*args)
        self.calls.append(("step", (time.perf_counter() - t) * 1e3))
        return logits

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class ModelWorker:
    """The engine behind a one-thread executor. ``backend`` is the engine's tagged config."""

    def __init__(self, backend: dict | None = None):
        self.backend = dict(backend or {"type": "onnx"})
        self.engine: Engine | None = None
        self.error: str | None = "the model is still loading"
        self.model_calls = 0
        self._counter: Callable[[str], int] | None = None
        self.loading: Future[str] | None = None  # the latest model load
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unmask-model")
        self._open: set[Future] = set()  # queued or running
        self._loop: asyncio.AbstractEventLoop | None = None  # where the idle release is timed (release_when_idle)
        self._release_timers: list[asyncio.TimerHandle] = []
        self._released_at = 0.0  # perf_counter of the last release
        self.releases = 0  # memory releases done

    @property
    def pending(self) -> int:
        """Loads, jobs and calls queued or running on the model thread."""
        return len(self._open)

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        fut = self._pool.submit(fn, *args)
        self._open.add(fut)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, fut: Future) -> None:  # on the model thread (or the one that cancelled ``fut``)
        self._open.discard(fut)
        if self._loop is None or _malloc_trim is None:
            return
        if time.perf_counter() - self._released_at >= BUSY_RELEASE_S:  # busy for long: trim between jobs
            self._submit_release(arena=False)
        if not self._open:
            try:
                self._loop.call_soon_threadsafe(self._arm_release)
            except RuntimeError:  # the event loop closed: the server stopped
                pass

    def release_when_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        """From now on, return free heap memory to the OS once the model thread has been idle
        :data:`IDLE_RELEASE_S` after work, and every :data:`BUSY_RELEASE_S` between jobs while it is busy;
        the runtime's arena regions too after :data:`ARENA_RELEASE_S` idle (the idle time is timed on
        ``loop``; nothing where libc has no ``malloc_trim``)."""
        self._loop = loop
        self._released_at = time.perf_counter()

    def _arm_release(self) -> None:  # on the event loop: the last open work just finished
        for timer in self._release_timers:
            timer.cancel()
        assert self._loop is not None
        self._release_timers = [
            self._loop.call_later(IDLE_RELEASE_S, self._release_if_idle, False),
            self._loop.call_later(ARENA_RELEASE_S, self._release_if_idle, True),
        ]

    def _release_if_idle(self, arena: bool) -> None:  # on the event loop
        if not self._open:  # else work came meanwhile: its end re-arms the timers
            self._submit_release(arena)

    def _submit_release(self, arena: bool) -> None:
        self._released_at = time.perf_counter()
        try:
            self._pool.submit(self._release, arena)  # not open work: its end arms nothing
        except RuntimeError:  # the pool is shut down
            pass

    def _release(self, arena: bool) -> None:  # on the model thread, between jobs
        """With ``arena``, the runtime's unused arena regions go back to malloc first (a one-token run); then trim."""
        t = time.perf_counter()
        backend = getattr(self.engine, "backend", None)
        if arena and hasattr(backend, "release_memory"):
            try:
                backend.release_memory()
            except Exception as e:  # onnxruntime raises its own types; a failed release must not stop the thread
                log.warning("releasing the model runtime's memory failed: %s", e)
        assert _malloc_trim is not None
        _malloc_trim(0)
        self.releases += 1
        log.debug("returned free memory to the OS in %.0f ms (arena %s)", (time.perf_counter() - t) * 1e3, arena)

    @property
    def model_path(self) -> str:
        return str(self.engine.info.path) if self.engine else ""

    def load(self, path: str | None = None) -> Future[str]:
        """Load and warm up the model at ``path`` (None: the backend's own or the shipped one).

        The future fails with :class:`ModelError`; the previous model, if any, stays in use.
        """
        self.loading = self._submit(self._load, path)
        return self.loading

    def _load(self, path: str | None) -> str:
        cfg = dict(self.backend)
        if path and cfg.get("type") == "remote":  # the model path is the local fallback's
            if cfg.get("fallback") is not None:
                cfg["fallback"] = dict(cfg["fallback"], path=path)
        elif path:
            cfg["path"] = path
        t0 = time.perf_counter()
        try:
            eng = Engine(cfg)
            eng.backend = TimedBackend(eng.backend)
            eng.warmup()
            counter = _counter(Tokenizer.from_file(eng.tokenizer_path, eng.tok.specials))
        except ModelError as e:
            if self.engine is None:
                self.error = str(e)
            raise
        except Exception as e:  # a broken install must read as one message, not a traceback
            if self.engine is None:
                self.error = f"cannot load the model: {e}"
            raise ModelError(f"cannot load the model{f' at {path}' if path else ''}: {e}") from e
        self.engine, self.error, self._counter = eng, None, counter
        log.info(
            "model %s loaded and warmed up in %.0f ms (backend %s)",
            eng.info.path,
            (time.perf_counter() - t0) * 1000,
            eng.backend.name,
        )
        return str(eng.info.path)

    @property
    def window(self) -> int | None:
        """The loaded model's context window in tokens (holes' slots included)."""
        return self.engine.window if self.engine else None

    def token_counter(self) -> Callable[[str], int] | None:
        """Count tokens as the loaded model does (memoized: lines repeat between keystrokes); None before load."""
        return self._counter

    def submit(self, job: Job) -> Future[InfillDraft | None]:
        """Queue ``job``; the future holds the last draft, or None when the job was cancelled."""
        job.submitted = time.perf_counter()
        return self._submit(self._run, job)

    def _run(self, job: Job) -> InfillDraft | None:
        if job.cancelled:
            return None
        eng = self.engine
        if eng is None:
            raise ModelError(self.error or "no model loaded")
        job.started = True
        self.model_calls += 1
        t0 = time.perf_counter()
        budget = max(1.0, job.budget_ms - (t0 - job.created) * 1000)  # budget_ms=0 would mean "no deadline"
        timed = eng.backend if isinstance(eng.backend, TimedBackend) else None
        if timed is not None:
            timed.calls.clear()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("engine pieces %s (buckets %s): %r", job.label, job.buckets, job.pieces)
        last, walls = None, []
        try:
            for draft in eng.stream_holes(
                job.pieces,
                job.buckets,
                steps=job.steps,
                threshold=job.threshold,
                budget_ms=budget,
                one_line=job.one_line,
                comment=job.comment,
                cache=job.cache,
            ):
                walls.append(draft.ms - (last.ms if last is not None else draft.encode_ms))
                last = draft
                if job.cancelled:
                    return None
                if job.on_draft is not None:
                    job.on_draft(draft)
        finally:
            if job.trace is not None:
                _record(
                    job, t0, last, walls, timed.calls if timed is not None else [], getattr(eng, "last_cache", None)
                )
        return last

    def call(self, call: Call) -> Future[Any]:
        """Queue ``call``; the future holds ``call.fn(engine)``, or None when it was cancelled before it started.

        Fails with :class:`ModelError` when no model is loaded.
        """
        call.submitted = time.perf_counter()
        return self._submit(self._call, call)

    def _call(self, call: Call) -> Any:
        if call.cancelled:
            return None
        eng = self.engine
        if eng is None:
            raise ModelError(self.error or "no model loaded")
        call.started = True
        log.debug("running %s after %.0f ms queued", call.label, (time.perf_counter() - call.submitted) * 1e3)
        return call.fn(eng)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _glibc(name: str) -> Any:
    """A function of glibc's malloc (``malloc_trim``, ``mallopt``), or None without glibc (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


_malloc_trim = _glibc("malloc_trim")  # (pad) -> 1 when memory was returned
_mallopt = _glibc("mallopt")  # (param, value) -> 1 on success
M_ARENA_MAX = -8  # mallopt's parameter


def one_malloc_arena() -> None:
    """Make every thread allocate from glibc's main arena (call before starting threads).

    ``malloc_trim`` returns the free pages of every arena, but the model thread's own arena kept its
    free memory in some 19,000 chunks among small ones, pages it could not return: two of four
    2-minute storms ended 56 and 59 MB over their baseline. With one arena, shared with the event
    loop, the trim returned it (+18 and +22 MB); the model's calls are as fast (within noise)."""
    if _mallopt is not None:
        _mallopt(M_ARENA_MAX, 1)


def _counter(tok: Tokenizer) -> Callable[[str], int]:
    @functools.lru_cache(maxsize=4096)
    def count(text: str) -> int:
        return len(tok.encode(text))

    return count


def _record(
    job: Job,
    t0: float,
    last: InfillDraft | None,
    walls: list[float],
    calls: list[tuple[str, float]],
    cache: dict | None = None,
) -> None:
    """The engine's stages of ``job`` into its trace (runs on the model thread)."""
    tr = job.trace
    assert tr is not None
    end = time.perf_counter()
    tr.add("queue", (t0 - job.submitted) * 1e3)
    encode = sum(ms for kind, ms in calls if kind == "encode")
    forward = [ms for kind, ms in calls if kind == "step"]
    if len(forward) < len(walls):  # left to right, the first token comes from the encode's logits: no step call
        forward = [0.0] * (len(walls) - len(forward)) + forward
    engine = (end - t0) * 1e3
    model = encode + sum(forward)
    if last is not None:
        tr.add("tokenize", max(0.0, last.encode_ms - encode))
    tr.add("encode", encode)
    tr.add("denoise", sum(walls))
    tr.add("engine", engine)
    tr.add("model", model)
    tr.add("engineOverhead", engine - model)
    tr.steps, tr.step_forward = [round(w, 3) for w in walls], [round(f, 3) for f in forward]
    tr.cache = dict(cache) if cache is not None else None
