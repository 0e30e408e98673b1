"""Next-edit suggestions in real headless Neovim 0.12-dev and 0.11 against the real server.

One Neovim session per version (tests/nvim/next_edit_driver.lua) loads the plugin, renames a
local variable by typing in three fresh copies of the rename scenario (tests/samples.py) and
records what the user sees: the suggestions appear, ``<Esc>`` dismisses them, ``<Tab>`` jumps to
a target and ``<Tab>`` applies it, round after round. The session runs with
``nextEdit.minConfidence`` 0 (the server proposes whatever the model says, so the mechanics are
exercised whatever the model's quality), then with the server's defaults for the expected text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import samples
from conftest import skip_unless_ci
from test_editors_nvim import nvim_binaries, run_nvim

from unmask.lsp import config
from unmask.lsp import protocol as ext
from unmask.lsp.nes import apply_edits

DRIVER = Path(__file__).parent / "nvim" / "next_edit_driver.lua"
VERSIONS = ["0.12", "0.11"]


@pytest.fixture(scope="module", params=VERSIONS)
def session(request, tmp_path_factory):
    nvim = nvim_binaries()[request.param]
    if nvim is None:
        skip_unless_ci(f"no Neovim {request.param} binary")
    tmp = tmp_path_factory.mktemp(f"nvim-nes{request.param}")
    files = {}
    for phase in ("dismiss", "accept", "quality"):
        path = tmp / f"{phase}.py"
        path.write_text(samples.RENAME_BEFORE)
        files[phase] = str(path)
    settings: dict = {"nextEdit.minConfidence": 0, "nextEdit.budgetMs": 2000}
    if os.environ.get("UNMASK_TEST_MODEL"):
        settings["modelPath"] = os.environ["UNMASK_TEST_MODEL"]
    driver_env = {
        "UNMASK_FILES": json.dumps(files),
        # `a` after the last character of "total" on its first line (1-based line, 0-based byte column)
        "UNMASK_EDIT": json.dumps(
            {"line": samples.RENAME_LINE + 1, "col": samples.RENAME_COL - 1, "keys": samples.RENAME_TYPED}
        ),
        "UNMASK_QUALITY_SETTINGS": json.dumps(
            {"unmask": {"nextEdit.minConfidence": config.DEFAULTS.next_edit_min_confidence}}
        ),
        "UNMASK_ROUNDS": "6",
    }
    res = run_nvim(nvim, tmp, {"settings": settings}, driver=DRIVER, driver_env=driver_env)
    assert res["error"] is None, f"{res['error']}\nsteps: {res.get('steps')}\nserver log:\n{res['server_log']}"
    assert res["nvim"].startswith(request.param)
    return res


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def _edits(answer: dict) -> list[dict]:
    assert answer is not None and answer["err"] is None, answer
    return answer["result"]["edits"]


RENAMED = samples.RENAME_BEFORE.replace("total = 0", "total_count = 0")  # the buffer after the typed edit


@pytest.mark.slow
def test_server_offers_next_edits(session):
    assert session["capabilities"].get(ext.INLINE_EDIT_CAPABILITY) is True
    health = "\n".join(session["health"])
    assert "next-edit: offered by the server" in health, health


@pytest.mark.slow
def test_suggestions_appear_after_the_edit_and_esc_dismisses_them(session):
    phase = session["phases"]["dismiss"]
    edits = _edits(phase["answer"])
    assert phase["answer"]["params"]["position"]["line"] == samples.RENAME_LINE
    if not edits:
        skip_unless_ci(f"the model {session['model']} proposed nothing for the rename, even ungated")
    assert phase["shown"]
    # one highlighted target per edit, at the edit's range; the proposed text beside it
    targets = sorted((t["row"], t["col"], t["end_row"], t["end_col"]) for t in phase["marks"]["targets"])
    want = sorted(
        (
            e["range"]["start"]["line"],
            e["range"]["start"]["character"],
            e["range"]["end"]["line"],
            e["range"]["end"]["character"],
        )
        for e in edits
    )
    assert targets == want  # the scenario is ASCII: UTF-16 columns are byte columns
    assert sorted(phase["marks"]["proposals"]) == sorted("  → " + e["text"].split("\n")[0] for e in edits)
    assert phase["marks_after_esc"] == {"targets": [], "proposals": []} and not phase["visible_after_esc"]


@pytest.mark.slow
def test_tab_jumps_and_applies_the_servers_edits(session):
    phase = session["phases"]["accept"]
    if not phase["rounds"]:
        skip_unless_ci(f"the model {session['model']} proposed nothing for the rename ({phase['first']})")
    assert _text(phase["rounds"][0]["before"]) == RENAMED
    for i, rnd in enumerate(phase["rounds"]):
        before, after = _text(rnd["before"]), _text(rnd["after"])
        edits = _edits(rnd["answer"])
        # <Tab> went to one of the proposed edits, <Tab> applied exactly that edit from the server's answer
        row, col = rnd["cursor_after_jump"]
        applied = [
            e for e in edits if (e["range"]["start"]["line"] + 1, e["range"]["start"]["character"]) == (row, col)
        ]
        assert applied, f"round {i}: the cursor {row, col} is on none of {edits}"
        assert after == apply_edits(before, applied[:1]), f"round {i}"
        assert rnd["accepted"] == 1  # the edit's command reached the server
        if i + 1 < len(phase["rounds"]):
            assert phase["rounds"][i + 1]["before"] == rnd["after"]


@pytest.mark.slow
def test_accepting_every_suggestion_renames_every_use(session):
    """The server's defaults (renamed words by rule, the rest gated on the model's confidence): Tab, Tab, ...
    until nothing more is proposed leaves every use renamed (the model alone: tests/test_lsp_nes.py)."""
    phase = session["phases"]["quality"]
    answers = [r["answer"]["result"] for r in phase["rounds"]] + [phase["first"] and phase["first"]["result"]]
    assert _text(phase["final"]) == samples.RENAME_EXPECTED, f"model {session['model']} answered {answers}"
