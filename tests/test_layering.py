"""DESIGN.md's import direction holds: engine never imports the LSP stack, context never the model stack."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = "import sys, {mod}; print(','.join(sorted(m for m in sys.modules if m.startswith({banned!r}))))"


@pytest.mark.parametrize(
    "mod,banned",
    [
        ("unmask.engine.infill", ("pygls", "lsprotocol", "unmask.lsp", "unmask.context", "torch")),
        ("unmask.engine.sampler", ("pygls", "lsprotocol", "unmask.lsp", "torch", "onnxruntime")),
        ("unmask.context", ("torch", "onnxruntime", "pygls", "lsprotocol", "unmask.lsp")),
    ],
)
def test_import_direction(mod, banned):
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(mod=mod, banned=banned)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"{mod} pulls in {out}"
