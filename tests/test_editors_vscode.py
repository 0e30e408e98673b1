"""The VS Code extension (editors/vscode): unit checks in Node, the .vsix build, and an end-to-end
run in code-server driven by playwright-core and Debian's chromium against the real server.

Needs what ``editors/ci-setup.sh`` installs (npm packages, code-server on Node 24, chromium);
each test skips with the reason when its part is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import skip_unless_ci

ROOT = Path(__file__).resolve().parent.parent
EXT = ROOT / "editors" / "vscode"
E2E = EXT / "e2e"
ARTIFACTS = ROOT / "editors" / "artifacts"  # screenshots and logs; CI keeps them
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _npm(*args: str, cwd: Path = EXT, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["npm", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _need_node_modules() -> None:
    if shutil.which("npm") is None:
        skip_unless_ci("npm is not installed")
    if not (EXT / "node_modules" / "vscode-languageclient").is_dir():
        skip_unless_ci("editors/vscode/node_modules is missing: run editors/ci-setup.sh")


def test_extension_unit_checks():
    """Server discovery, settings mapping, next-edit targets, package.json settings (node --test)."""
    _need_node_modules()
    proc = _npm("test")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout


@pytest.fixture(scope="module")
def vsix() -> Path:
    _need_node_modules()
    proc = _npm("run", "package")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return EXT / "unmask.vsix"


@pytest.mark.slow
def test_vsix_holds_the_extension_and_its_client_library(vsix):
    names = zipfile.ZipFile(vsix).namelist()
    assert "extension/out/extension.js" in names
    assert "extension/node_modules/vscode-languageclient/package.json" in names
    assert not any(n.startswith("extension/src/") or n.startswith("extension/e2e/") for n in names)
    manifest = json.loads(zipfile.ZipFile(vsix).read("extension/package.json"))
    assert manifest["main"] == "./out/extension.js"


@pytest.mark.slow
def test_code_server_ghost_text_tab_accepts_and_saves(vsix):
    if not (E2E / "node_modules" / "code-server" / "out" / "node" / "entry.js").is_file():
        skip_unless_ci("code-server is not installed in editors/vscode/e2e: run editors/ci-setup.sh")
    if not Path(CHROMIUM).is_file():
        skip_unless_ci(f"no chromium at {CHROMIUM}: apt-get install chromium")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "result.json").unlink(missing_ok=True)
    env = {
        **os.environ,
        "UNMASK_VSIX": str(vsix),
        "UNMASK_ARTIFACTS": str(ARTIFACTS),
        "UNMASK_SERVER": str(Path(sys.executable).parent / "unmask"),
        "CHROMIUM": CHROMIUM,
    }
    if os.environ.get("UNMASK_TEST_MODEL"):  # another model directory, through the unmask.modelPath setting
        env["UNMASK_SETTINGS"] = json.dumps({"unmask.modelPath": os.environ["UNMASK_TEST_MODEL"]})
    proc = subprocess.run(["node", str(E2E / "run.mjs")], cwd=E2E, env=env, capture_output=True, text=True, timeout=590)
    res = json.loads((ARTIFACTS / "result.json").read_text())
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert res["error"] is None, f"{res['error']}\n{log}"
    assert "unmask" in res["statusReady"]  # the status bar says the model is loaded
    assert (ARTIFACTS / "vscode-ghost.png").is_file()
    if res.get("noGhost"):
        skip_unless_ci("the model answered nothing at the cursor (screenshot in editors/artifacts)")
    typed, line = "        total", 22  # the line run.mjs typed on
    ghost = res["ghost"].split("\n")  # as drawn: the part after the cursor, then the lines below
    assert ghost[0].strip(), res
    # Tab accepted the ghost text; the saved file has exactly it where it was shown
    saved = res["saved"].split("\n")
    assert saved[line - 1] == typed + ghost[0], res
    assert saved[line : line - 1 + len(ghost)] == ghost[1:], res
    assert " ms" in res["statusAfter"]  # the last latency is in the status bar
