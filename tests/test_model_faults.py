"""Model faults (issue 16): broken model files give one clear message naming the file and the fix;
``unmask doctor`` says the same; the server keeps answering (empty) instead of crash-looping, and
serves again once the files are fixed and it is restarted.

Each case works on a copy of the prepared cache in a temporary ``UNMASK_CACHE`` (the base GGUF
linked, or copied where the case breaks it; the runtime directory copied), never on the real one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from unmask.engine.base import BasePin, base_gguf_path, cache_dir
from unmask.engine.causal import runtime_dir
from unmask.engine.infill import Engine
from unmask.engine.runtime import ModelError, ModelInfo, default_model_dir


@pytest.fixture(scope="module")
def real():
    """The real cache's base GGUF and runtime directory (prepared once by the engine)."""
    Engine()
    info = ModelInfo.load(None)
    return base_gguf_path(BasePin.from_meta(info.meta.get("base"))), runtime_dir(info)


@pytest.fixture
def cache(real, tmp_path, monkeypatch):
    """A copy of the prepared cache in tmp_path (UNMASK_CACHE points there); returns (gguf, runtime)."""
    gguf, rt = real
    home = cache_dir()
    monkeypatch.setenv("UNMASK_CACHE", str(tmp_path))
    monkeypatch.setenv("UNMASK_BASE_WHEEL", str(tmp_path / "no-such-wheel.whl"))  # never fetch in a test
    new_gguf, new_rt = tmp_path / gguf.relative_to(home), tmp_path / rt.relative_to(home)
    new_gguf.parent.mkdir(parents=True)
    new_gguf.symlink_to(gguf)
    shutil.copytree(rt, new_rt)
    return new_gguf, new_rt


def break_gguf(gguf: Path, rt: Path) -> Path:
    shutil.rmtree(rt)  # the runtime is rebuilt from the base, which is cut short
    data = gguf.read_bytes()
    gguf.unlink()
    gguf.write_bytes(data[:1_000_000])
    return gguf


def garbage_onnx(gguf: Path, rt: Path) -> Path:
    (rt / "model.onnx").write_bytes(b"not a model" * 100)
    return rt / "model.onnx"


def truncated_onnx(gguf: Path, rt: Path) -> Path:
    data = (rt / "model.onnx").read_bytes()
    (rt / "model.onnx").write_bytes(data[: len(data) // 2])
    return rt / "model.onnx"


def bad_tokenizer(gguf: Path, rt: Path) -> Path:
    (rt / "tokenizer.json").write_text("{not json")
    return rt / "tokenizer.json"


def bad_config(gguf: Path, rt: Path) -> Path:
    (rt / "config.json").write_text("{}")
    return rt / "config.json"


FAULTS = {  # name: (break it, the fix the message must name)
    "truncated base GGUF": (break_gguf, "delete it"),
    "garbage runtime graph": (garbage_onnx, "Delete"),
    "truncated runtime graph": (truncated_onnx, "Delete"),
    "corrupt tokenizer": (bad_tokenizer, "Delete"),
    "corrupt runtime config": (bad_config, "Delete"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_broken_model_file_is_one_message_naming_the_file_and_the_fix(cache, name):
    breaker, fix = FAULTS[name]
    broken = breaker(*cache)
    with pytest.raises(ModelError) as e:
        Engine()
    assert str(broken) in str(e.value) and fix in str(e.value)


def test_a_model_of_an_unknown_kind_says_so(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    meta = json.loads((model / "model.json").read_text())
    meta["kind"] = "causal-base-v9"
    (model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"model\.json is a model of kind 'causal-base-v9'.*upgrade unmask"):
        Engine({"type": "onnx", "path": str(model)})


def test_doctor_says_the_same_and_the_server_serves_empty_then_recovers_after_the_fix(cache, tmp_path):
    gguf, rt = cache
    good = (rt / "tokenizer.json").read_bytes()
    broken = bad_tokenizer(gguf, rt)
    env = dict(os.environ)  # UNMASK_CACHE is set by the fixture
    doctor = subprocess.run(
        [sys.executable, "-m", "unmask.lsp.cli", "doctor"], capture_output=True, text=True, env=env, timeout=300
    )
    assert doctor.returncode == 1 and f"cannot read {broken}" in doctor.stdout and "Delete" in doctor.stdout

    src = tmp_path / "a.py"
    src.write_text("def add(a, b):\n    return \n")
    cmd = [sys.executable, "-m", "unmask.lsp.cli", "complete", str(src), "--line", "1", "--col", "11"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode != 0 and f"cannot read {broken}" in out.stderr and "Traceback" not in out.stderr

    from test_bad_input import Wire  # the server over stdio, byte by byte

    w = Wire()
    try:
        for _ in range(3):  # it keeps answering: every completion is empty, nothing crashes
            assert w.alive()
        stats = w.request("unmask/stats", {}, timeout=30)["result"]
        assert "cannot read" in (stats.get("modelError") or "")
    finally:
        w.close()

    (rt / "tokenizer.json").write_bytes(good)  # fixed; a restart serves again
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip()


def test_files_broken_under_a_running_server_do_not_stop_it(cache, tmp_path):
    """The loaded model serves from memory: files truncated or replaced on disk while the server
    runs (a cache cleanup, a half-finished copy) change nothing until the next start."""
    gguf, rt = cache
    from test_bad_input import Wire, complete, end_of, open_doc

    text = "def add(a, b):\n    return "
    w = Wire()
    try:
        for i in range(60):  # the model loads in the background: ask until it answers
            open_doc(w, f"file:///tmp/unmask-faults/before{i}.py", text)
            if complete(w, f"file:///tmp/unmask-faults/before{i}.py", *end_of(text))["result"]["items"]:
                break
        else:
            pytest.fail("the model never answered")
        truncated_onnx(gguf, rt)  # in place, as a half-finished copy leaves it
        bad_tokenizer(gguf, rt)
        bad_config(gguf, rt)
        gguf.unlink()
        for i in range(3):
            uri = f"file:///tmp/unmask-faults/after{i}.py"
            open_doc(w, uri, text)
            items = complete(w, uri, *end_of(text))["result"]["items"]
            assert items and items[0]["insertText"].startswith("    return ")
        stats = w.request("unmask/stats", {}, timeout=30)["result"]
        assert not stats.get("modelError")
    finally:
        w.close()
    assert "Traceback" not in w.tail()
