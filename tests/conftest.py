"""Shared test helpers.

``skip_unless_ci``: a test that needs an installed tool (an editor, chromium, npm packages)
skips with the reason on a developer machine that lacks it, but *fails* in CI (``CI=true``),
where ``scripts/test.sh`` installs everything, so a green CI run never hides a skipped
real-editor test.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_unless_ci(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI must run this test: {reason}")
    pytest.skip(reason)


def proposing_model_dir() -> str:
    """The shipped model with the model's own next-edit proposals switched on (``next_edit.model_proposals``).

    They are off in the shipped model.json (the rules alone measure better on shared/eval/nes); the
    tests of the model path (asking, gating, superseding and cancelling a model call) use this copy.
    The runtime graph is the shipped one (same name and weights: the same cache entry).
    """
    import json
    import tempfile
    from pathlib import Path

    from unmask.engine.runtime import default_model_dir

    d = Path(tempfile.gettempdir()) / f"unmask-test-proposing-model-{os.getpid()}"
    d.mkdir(exist_ok=True)
    meta = json.loads((default_model_dir() / "model.json").read_text())
    meta.setdefault("next_edit", {})["model_proposals"] = True
    (d / "model.json").write_text(json.dumps(meta))
    return str(d)
