"""The browser playground (editors/web): ``playground.py`` serves the Monaco page, headless chromium
loads it, it talks LSP to a real ``unmask serve --ws``, typing streams drafts and yields a
suggestion that Tab accepts. Screenshot and result land in editors/artifacts/.

Needs ``editors/ci-setup.sh`` (npm packages of editors/web, chromium); skips with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import skip_unless_ci

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "editors" / "web"
ARTIFACTS = ROOT / "editors" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.mark.slow
def test_playground_streams_drafts_and_tab_accepts(tmp_path):
    if shutil.which("node") is None or not (WEB / "node_modules" / "monaco-editor").is_dir():
        skip_unless_ci("editors/web/node_modules is missing: run editors/ci-setup.sh")
    if not Path(CHROMIUM).is_file():
        skip_unless_ci(f"no chromium at {CHROMIUM}: apt-get install chromium")
    build = subprocess.run(["node", "build.mjs"], cwd=WEB, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "playground-result.json").unlink(missing_ok=True)
    env = {
        **os.environ,
        "UNMASK_PYTHON": sys.executable,
        "UNMASK_ARTIFACTS": str(ARTIFACTS),
        "CHROMIUM": CHROMIUM,
        "XDG_STATE_HOME": str(tmp_path / "state"),  # the server's log
    }
    if os.environ.get("UNMASK_TEST_MODEL"):  # another model directory (playground.py --model)
        env["UNMASK_MODEL"] = os.environ["UNMASK_TEST_MODEL"]
    proc = subprocess.run(["node", "e2e.mjs"], cwd=WEB, env=env, capture_output=True, text=True, timeout=400)
    res = json.loads((ARTIFACTS / "playground-result.json").read_text())
    assert res["error"] is None, f"{res['error']}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    assert not res.get("pageErrors"), res["pageErrors"]
    assert res["status"].startswith("ready")  # the page shows the server's model is loaded
    assert res["drafts"] and "step 1" in res["drafts"][0]  # the denoising steps were listed live
    assert (ARTIFACTS / "playground.png").is_file()
    if res.get("noGhost"):
        skip_unless_ci("the model answered nothing at the cursor (screenshot in editors/artifacts)")
    assert res["ghost"].strip()
    assert res["after"] != res["before"] and res["ghost"] in res["after"]  # Tab inserted the suggestion
