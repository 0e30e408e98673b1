"""Resolve an import statement's module text to workspace files, per language.

``candidates(language, module, from_path)`` turns the text an ``@import.module`` capture
found (``os.path``, ``..util``, ``./lib/foo``, ``crate::net::Conn``, ``"pkg/x.h"``, a Go
import path, a Java package) into workspace-relative path suffixes to look for; the index
matches them against its files (exactly, or as the tail of a longer path: ``src/`` layouts,
Go module prefixes). Relative imports are made relative to the importing file first.

It knows each language's module-to-path convention; it knows nothing about which files
exist (the index does) or what is defined in them. Third-party and system modules simply
resolve to nothing.
"""

from __future__ import annotations

import posixpath
import re

_JS_EXTS = ("", ".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".d.ts", "/index.ts", "/index.tsx", "/index.js")


def candidates(language: str, module: str, from_path: str) -> tuple[list[str], list[str]]:
    """(exact relative paths, path suffixes) a module may live in. Directories end with '/'."""
    here = posixpath.dirname(from_path)
    module = module.strip()
    if language == "python":
        dots = len(module) - len(module.lstrip("."))
        parts = [p for p in module[dots:].split(".") if p]
        if dots:
            base = here
            for _ in range(dots - 1):
                base = posixpath.dirname(base)
            stem = posixpath.join(base, *parts) if parts else base
            exact = (
                [f"{stem}.py", posixpath.join(stem, "__init__.py")] if parts else [posixpath.join(stem, "__init__.py")]
            )
            return [p.lstrip("/") for p in exact], []
        stem = "/".join(parts)
        return [], [f"{stem}.py", f"{stem}/__init__.py", f"{stem}.pyi"]
    if language in ("javascript", "typescript", "tsx"):
        if module.startswith("."):
            stem = posixpath.normpath(posixpath.join(here, module))
            return [stem + e for e in _JS_EXTS if not stem.startswith("..")], []
        if module.startswith(("@/", "~/")):
            return [], [module[2:] + e for e in _JS_EXTS if e]
        return [], []
    if language == "go":
        return [], [module.strip("/") + "/"]
    if language == "rust":
        if module.startswith(("std::", "core::", "alloc::")):
            return [], []
        path = re.sub(r"::\{.*$|::\*$", "", module).split(" as ")[0]
        parts = [p for p in path.split("::") if p and p not in ("crate", "self", "super")]
        if "::" not in module:  # `mod foo;` declares a file beside this one
            return [posixpath.join(here, f"{module}.rs"), posixpath.join(here, module, "mod.rs")], []
        out = []
        for k in range(len(parts), 0, -1):
            stem = "/".join(parts[:k])
            out += [f"{stem}.rs", f"{stem}/mod.rs"]
        return [], out
    if language == "java":
        parts = module.rstrip(".*").split(".")
        if module.endswith("*"):
            return [], ["/".join(parts) + "/"]
        return [], ["/".join(parts) + ".java", "/".join(parts[:-1]) + ".java"] if len(parts) > 1 else []
    if language in ("c", "cpp"):
        return [posixpath.normpath(posixpath.join(here, module))], [module]
    return [], []
