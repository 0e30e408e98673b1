"""Runs the engine off the event loop: one model, one thread, one model call at a time.

:class:`ModelWorker` owns the :class:`~unmask.engine.infill.Engine` and a single-thread
executor. Loading (and warming up) the model and every completion run there, in order, so
the asyncio loop that speaks LSP is never blocked by model work. A :class:`Job` carries a
cancel flag that the run checks before it starts and after every denoising step: a job
superseded while queued costs nothing, one superseded mid-way stops at the next step.

It knows the engine's public API and threads; it knows nothing about LSP, documents or
versions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from unmask.engine.infill import Engine, InfillDraft
from unmask.engine.runtime import ModelError

log = logging.getLogger("unmask.lsp")


@dataclass
class Job:
    """One completion for the engine: the text around the cursor and the decoding limits."""

    prefix: str
    suffix: str
    bucket: int
    budget_ms: float  # measured from ``created`` (the request's arrival): time spent queued counts against it
    steps: int
    threshold: float
    one_line: bool = False  # single-line mode: the engine ends the text (and its confidence) at the first newline
    on_draft: Callable[[InfillDraft], None] | None = None  # called in the worker thread
    created: float = field(default_factory=time.perf_counter)
    started: bool = False
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class ModelWorker:
    """The engine behind a one-thread executor. ``backend`` is the engine's tagged config."""

    def __init__(self, backend: dict | None = None):
        self.backend = dict(backend or {"type": "onnx"})
        self.engine: Engine | None = None
        self.error: str | None = "the model is still loading"
        self.model_calls = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unmask-model")

    @property
    def model_path(self) -> str:
        return str(self.engine.info.path) if self.engine else ""

    def load(self, path: str | None = None) -> Future[str]:
        """Load and warm up the model at ``path`` (None: the backend's own or the shipped one).

        The future fails with :class:`ModelError`; the previous model, if any, stays in use.
        """
        return self._pool.submit(self._load, path)

    def _load(self, path: str | None) -> str:
        cfg = dict(self.backend)
        if path:
            cfg["path"] = path
        t0 = time.perf_counter()
        try:
            eng = Engine(cfg)
            eng.warmup()
        except ModelError as e:
            if self.engine is None:
                self.error = str(e)
            raise
        except Exception as e:  # a broken install must read as one message, not a traceback
            if self.engine is None:
                self.error = f"cannot load the model: {e}"
            raise ModelError(f"cannot load the model{f' at {path}' if path else ''}: {e}") from e
        self.engine, self.error = eng, None
        log.info(
            "model %s loaded and warmed up in %.0f ms (backend %s)",
            eng.info.path,
            (time.perf_counter() - t0) * 1000,
            eng.backend.name,
        )
        return str(eng.info.path)

    def submit(self, job: Job) -> Future[InfillDraft | None]:
        """Queue ``job``; the future holds the last draft, or None when the job was cancelled."""
        return self._pool.submit(self._run, job)

    def _run(self, job: Job) -> InfillDraft | None:
        if job.cancelled:
            return None
        eng = self.engine
        if eng is None:
            raise ModelError(self.error or "no model loaded")
        job.started = True
        self.model_calls += 1
        queued_ms = (time.perf_counter() - job.created) * 1000
        budget = max(1.0, job.budget_ms - queued_ms)  # budget_ms=0 would mean "no deadline"
        last = None
        for draft in eng.stream(
            job.prefix,
            job.suffix,
            bucket=job.bucket,
            steps=job.steps,
            threshold=job.threshold,
            budget_ms=budget,
            one_line=job.one_line,
        ):
            if job.cancelled:
                return None
            last = draft
            if job.on_draft is not None:
                job.on_draft(draft)
        return last

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
