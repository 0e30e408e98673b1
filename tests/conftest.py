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
