"""The CPU flags every benchmark prints with its figures (timings compare only within one run)."""

from __future__ import annotations

import re
from pathlib import Path

KEEP = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags() -> str:
    """The vector and matrix extensions of this CPU that change ONNX Runtime's and torch's speed."""
    try:
        flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1).split())
    except (OSError, AttributeError):
        return "unknown"
    return " ".join(f for f in KEEP if f in flags) or "none of avx2/avx512/amx"
