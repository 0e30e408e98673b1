"""The server's settings: defaults, the wire names clients use, and validation.

Settings arrive as ``initializationOptions`` and later ``workspace/didChangeConfiguration``
(flat, or nested under an ``"unmask"`` key). Dotted keys (``context.sources``,
``nextEdit.minConfidence``) may also come nested (``{"context": {"sources": ...}}``, as VS Code
sends them). :func:`merge` applies the
keys present onto the current settings; an invalid value falls back to that key's default and yields a message for
the user (the server shows it with ``window/showMessage``). Unknown keys are only logged.

It knows setting names, types and ranges; it knows nothing about LSP transport or the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_BUDGET_MS = 250
CONTEXT_SOURCES = ("scope", "definitions", "recent", "open", "similar")  # unmask.context.SOURCES, in order


@dataclass(frozen=True)
class Settings:
    latency_budget_ms: int = DEFAULT_BUDGET_MS  # deadline of an automatic completion (anytime decoding)
    invoked_budget_ms: int = 1000  # deadline when the user asked explicitly (Invoked trigger)
    min_confidence: float = 0.4  # automatic completions below this mean token confidence are not shown
    steps: int = 32  # the most model calls per completion (left to right: tokens)
    threshold: float = 0.9  # the sampler commits slots at least this confident per step
    model_path: str | None = None  # model directory (None: the --model flag or the shipped model)
    enabled_languages: tuple[str, ...] = ("*",)  # languageIds to complete in; "*" means all
    stream_drafts: bool = False  # send an ``unmask/draft`` notification per denoising step
    context_enabled: bool = True  # pack repository context around the hole (else prefix and suffix only)
    context_sources: tuple[str, ...] = CONTEXT_SOURCES  # the snippet sources to use
    next_edit_enabled: bool = True  # answer textDocument/copilotInlineEdit (else always no edits)
    next_edit_budget_ms: int = DEFAULT_BUDGET_MS  # deadline of a next-edit request, from its arrival
    next_edit_min_confidence: float = 0.75  # less confident proposals are not sent (nes.DEFAULT_MIN_CONFIDENCE)
    next_edit_rename_rule: bool = True  # renamed words: the new word at their other uses, by rule, not by the model
    next_edit_replay_rule: bool = True  # sibling lines of the edited line's shape: the same change, by rule
    next_edit_signature_rule: bool = True  # call sites of a changed signature: arguments rewritten, by rule
    engine_url: str | None = None  # a team engine (``unmask engine serve``) to complete with; None: in-process
    engine_local_fallback: bool = False  # with engine_url: also load the local model, to answer when the engine cannot

    def language_enabled(self, language_id: str | None) -> bool:
        return "*" in self.enabled_languages or (language_id or "") in self.enabled_languages


def _int(lo: int, hi: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v) or not lo <= v <= hi:
            raise ValueError(f"expected a whole number in [{lo}, {hi}]")
        return int(v)

    return check


def _float(lo: float, hi: float) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise ValueError(f"expected a number in [{lo}, {hi}]")
        return float(v)

    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _path(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise ValueError("expected a directory path (string) or null")
    return v


def _url(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str) or not v.startswith(("http://", "https://")) or len(v) > 2048:
        raise ValueError("expected an http:// or https:// URL of a team engine, or null")
    return v


def _sources(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"expected a list of context sources out of {list(CONTEXT_SOURCES)}")
    if "*" in v:
        return CONTEXT_SOURCES
    bad = [x for x in v if x not in CONTEXT_SOURCES]
    if bad:
        raise ValueError(f"unknown context sources {bad}; known: {list(CONTEXT_SOURCES)}")
    return tuple(x for x in CONTEXT_SOURCES if x in v)


def _languages(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list | tuple) or not all(isinstance(x, str) and x for x in v):
        raise ValueError('expected a list of languageIds, e.g. ["python", "rust"] or ["*"]')
    return tuple(v)


# wire name -> (field, validator)
FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "latencyBudgetMs": ("latency_budget_ms", _int(10, 60_000)),
    "invokedBudgetMs": ("invoked_budget_ms", _int(10, 60_000)),
    "minConfidence": ("min_confidence", _float(0.0, 1.0)),
    "steps": ("steps", _int(1, 256)),
    "threshold": ("threshold", _float(0.0, 1.0)),
    "modelPath": ("model_path", _path),
    "enabledLanguages": ("enabled_languages", _languages),
    "streamDrafts": ("stream_drafts", _bool),
    "context.enabled": ("context_enabled", _bool),
    "context.sources": ("context_sources", _sources),
    "nextEdit.enabled": ("next_edit_enabled", _bool),
    "nextEdit.budgetMs": ("next_edit_budget_ms", _int(10, 60_000)),
    "nextEdit.minConfidence": ("next_edit_min_confidence", _float(0.0, 1.0)),
    "nextEdit.renameRule": ("next_edit_rename_rule", _bool),
    "nextEdit.replayRule": ("next_edit_replay_rule", _bool),
    "nextEdit.signatureRule": ("next_edit_signature_rule", _bool),
    "engine.url": ("engine_url", _url),
    "engine.localFallback": ("engine_local_fallback", _bool),
}
DEFAULTS = Settings()


def merge(current: Settings, raw: Any) -> tuple[Settings, list[str], list[str]]:
    """Apply the keys present in ``raw`` onto ``current``.

    Returns the new settings, the problems to show the user (invalid values) and the unknown
    keys (only logged: clients often send their whole configuration).
    """
    if raw is None:
        return current, [], []
    if not isinstance(raw, dict):
        return current, [f"unmask: settings must be an object, got {type(raw).__name__}; keeping the current ones"], []
    if isinstance(raw.get("unmask"), dict):
        raw = raw["unmask"]
    raw = _flatten(raw)
    changes: dict[str, Any] = {}
    problems: list[str] = []
    unknown: list[str] = []
    for key, value in raw.items():
        if key not in FIELDS:
            unknown.append(key)
            continue
        name, check = FIELDS[key]
        try:
            changes[name] = check(value)
        except ValueError as e:
            default = getattr(DEFAULTS, name)
            changes[name] = default
            problems.append(f"unmask: invalid {key} {value!r}: {e}; using the default {default!r}")
    return dataclasses.replace(current, **changes), problems, unknown


def _flatten(raw: dict) -> dict:
    """``{"context": {"sources": x}}`` -> ``{"context.sources": x}``, for the groups that have dotted keys."""
    groups = {k.split(".", 1)[0] for k in FIELDS if "." in k}
    out: dict = {}
    for key, value in raw.items():
        if key in groups and isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out
