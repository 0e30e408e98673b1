"""The workspace index: definitions, references and imports of every source file, kept
current in the background.

:meth:`WorkspaceIndex.start` walks the workspace on a background thread (respecting
``.gitignore`` files via ``pathspec``, skipping hidden and vendored directories), then parses
files in batches — in worker *processes* by default, because py-tree-sitter holds the GIL
while it parses and a big file would otherwise stall a completion for tens of
milliseconds (spawned, so the server's ``__main__`` needs the usual main guard; if the
workers cannot start, the build falls back to this thread with a warning). Results are
merged under a short lock; readers never take it (lookups are plain dict reads of lists
that are replaced, never mutated). A ``progress(done, total, message)`` callback reports
the build; it runs on a background thread.

Skipped files are logged with a reason (``huge``, ``binary``, ``minified``; vendored
directories once each) and counted in :attr:`WorkspaceIndex.stats`.

Nothing outside the root is ever read, and no secret-bearing file is: the walk never follows
symlinks, every read checks that the file's real path lies inside the root (a symlink saved or
watched, ``..`` in a path), and files named like secrets (:data:`SECRET_FILES`: ``.env``,
``*.pem``, ``id_rsa*`` ...) are skipped like gitignored ones, whatever their extension.
:meth:`WorkspaceIndex.excluded` tells the context sources which open documents they must not
show for the same reasons (:func:`is_secret`, ``.gitignore``). :meth:`update_file`,
:meth:`remove_file` and :meth:`on_watched_files` keep the index current on save and on
watched-file changes; they return at once and do the work in the background.

It knows files, paths and tags; it knows nothing about open documents' unsaved text,
cursors, ranking or LSP types (``on_watched_files`` takes plain (path, kind) pairs).
"""

from __future__ import annotations

import bisect
import fnmatch
import logging
import multiprocessing
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import pathspec

from . import imports, languages, ts
from .tags import Definition, FileTags, extract_tags

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]

SECRET_FILES = (
    ".env", ".env.*", "*.env", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "*.keystore", "*.jks",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".netrc", "_netrc", ".npmrc", ".pypirc", ".git-credentials",
)  # fmt: skip
"""File names (fnmatch, case-insensitive, on the base name) whose content never reaches the model."""
_SECRET_RE = re.compile("|".join(fnmatch.translate(p) for p in SECRET_FILES))


def is_secret(path: str | os.PathLike) -> bool:
    """Whether the file's name marks it as secret-bearing (:data:`SECRET_FILES`)."""
    name = os.path.basename(os.fspath(path)).lower()
    return _SECRET_RE.match(name) is not None


def inside(root: str, path: str) -> bool:
    """Whether ``path``'s real location (symlinks resolved) lies inside ``root`` (a real path)."""
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


VENDORED_DIRS = frozenset({
    "node_modules", "bower_components", "vendor", "third_party", "third-party", "thirdparty", "external",
    "site-packages", "dist-packages", "venv", "env", "__pycache__", "build", "dist", "target", "out",
    "Pods", "Carthage", "jspm_packages", "deps", "_deps",
})  # fmt: skip


@dataclass(frozen=True)
class IndexConfig:
    max_file_bytes: int = 1_000_000
    workers: int = 1  # parser processes; 0 parses on the index's own thread (tests, small trees)
    batch: int = 24  # files per worker task
    vendored_dirs: frozenset[str] = VENDORED_DIRS
    skip_hidden: bool = True  # .git, .cache, .idea ...


@dataclass(slots=True)
class FileEntry:
    mtime_ns: int
    size: int
    language: str
    tags: FileTags


@dataclass
class IndexStats:
    files: int = 0
    definitions: int = 0
    seconds: float = 0.0
    skipped: Counter = field(default_factory=Counter)


def index_files(root: str, rels: list[str], max_bytes: int) -> list[tuple]:
    """Parse and tag files: [(rel, mtime_ns, size, FileTags | None, skip reason | None)].

    A top-level function so worker processes can run it.
    """
    out: list[tuple] = []
    parsers: dict[str, object] = {}
    for rel in rels:
        lang = languages.language_for_path(rel)
        if is_secret(rel):
            out.append((rel, 0, 0, None, "secret"))
            continue
        if not inside(root, os.path.join(root, rel)):  # a symlink out of the root, `..`
            out.append((rel, 0, 0, None, "outside"))
            continue
        try:
            st = os.stat(os.path.join(root, rel))
            if st.st_size > max_bytes:
                out.append((rel, st.st_mtime_ns, st.st_size, None, "huge"))
                continue
            with open(os.path.join(root, rel), "rb") as f:
                data = f.read()
        except OSError as e:
            out.append((rel, 0, 0, None, f"unreadable ({e.strerror})"))
            continue
        if b"\0" in data[:8192]:
            reason = "binary"
        elif len(data) > 20_000 and len(data) / (data.count(b"\n") + 1) > 300:
            reason = "minified"
        else:
            reason = None
        if reason or lang is None:
            out.append((rel, st.st_mtime_ns, st.st_size, None, reason or "unsupported"))
            continue
        parser = parsers.get(lang) or parsers.setdefault(lang, languages.new_parser(lang))
        tree = ts.parse(parser, data)
        out.append((rel, st.st_mtime_ns, st.st_size, extract_tags(lang, data, tree, rel), None))
    return out


class _Ignore:
    """.gitignore files along a path, compiled once per directory."""

    def __init__(self, root: str):
        self.root = root
        self._specs: dict[str, pathspec.PathSpec | None] = {}

    def spec(self, d: str) -> pathspec.PathSpec | None:
        if d not in self._specs:
            lines: list[str] = []
            names = [".gitignore"] + ([".git/info/exclude"] if d == "" else [])
            for name in names:
                try:
                    with open(os.path.join(self.root, d, name), encoding="utf-8", errors="replace") as f:
                        lines += f.read().splitlines()
                except OSError:
                    pass
            self._specs[d] = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._specs[d]

    def ignored(self, rel: str, is_dir: bool = False) -> bool:
        parts = rel.split("/")
        for i in range(len(parts)):
            d = "/".join(parts[:i])
            s = self.spec(d)
            if s is not None:
                sub = "/".join(parts[i:]) + ("/" if is_dir else "")
                if s.match_file(sub):
                    return True
        return False

    def forget(self, d: str) -> None:
        self._specs.pop(d, None)


class WorkspaceIndex:
    """Definitions by name and per-file tags for one workspace root."""

    def __init__(self, root: str | os.PathLike, config: IndexConfig | None = None):
        self.root = os.path.realpath(os.fspath(root))
        self.config = config or IndexConfig()
        self.files: dict[str, FileEntry] = {}
        self.stats = IndexStats()
        self.ready = threading.Event()
        self._defs: dict[str, list[Definition]] = {}
        self._by_name: dict[str, list[str]] = {}  # file basename -> rels
        self._by_dir: dict[str, list[str]] = {}  # dir -> rels
        self._sorted_names: list[str] = []
        self._imports_cache: dict[str, frozenset[str]] = {}
        self._ignore = _Ignore(self.root)
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._updater = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unmask-index")
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- paths ----------------------------------------------------------------------------
    def rel(self, path: str | os.PathLike) -> str:
        """A workspace-relative POSIX path ('' components never start with '..' for files inside)."""
        p = os.fspath(path)
        if p.startswith("file://"):
            from urllib.parse import unquote, urlparse

            p = unquote(urlparse(p).path)
        p = os.path.normpath(p)  # `a/../../b` is `../b`: never inside by its spelling
        if os.path.isabs(p):
            if p.startswith(self.root + os.sep):  # the common case, without touching the disk
                p = p[len(self.root) + 1 :]
            else:
                p = os.path.relpath(os.path.realpath(p), self.root)
        return p.replace(os.sep, "/")

    def excluded(self, path: str | os.PathLike) -> str | None:
        """Why a file's text must not be shown to the model ('secret', 'gitignored'), or None.

        For open documents, whose text comes from the editor: a file outside this root gets
        only the secret-name check (another root, or a file the user opened on purpose).
        """
        p = os.fspath(path)
        if not p:
            return None
        if is_secret(p):
            return "secret"
        rel = self.rel(p)
        if _outside_rel(rel):
            return None
        return "gitignored" if self._ignore.ignored(rel) else None

    def read_text(self, rel: str) -> str:
        """An indexed file's text ('' when it is unreadable, secret, or not inside the root)."""
        full = self.abspath(rel)
        if _outside_rel(rel) or is_secret(rel) or not inside(self.root, full):
            return ""
        try:
            with open(full, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def abspath(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    # -- building -------------------------------------------------------------------------
    def walk(self) -> list[str]:
        """Relative paths of the files to index (known languages, not ignored, not vendored)."""
        cfg, out, stack = self.config, [], [""]
        while stack:
            d = stack.pop()
            try:
                entries = sorted(os.scandir(os.path.join(self.root, d)), key=lambda e: e.name)
            except OSError as e:
                log.info("skip %s/: %s", d, e.strerror)
                continue
            for e in entries:
                rel = f"{d}/{e.name}" if d else e.name
                if e.is_symlink():  # never followed: it may point out of the workspace
                    self.stats.skipped["symlink"] += 1
                elif e.is_dir(follow_symlinks=False):
                    if cfg.skip_hidden and e.name.startswith("."):
                        self.stats.skipped["hidden"] += 1
                    elif e.name in cfg.vendored_dirs:
                        log.info("skip %s/: vendored", rel)
                        self.stats.skipped["vendored"] += 1
                    elif self._ignore.ignored(rel, is_dir=True):
                        self.stats.skipped["gitignored"] += 1
                    else:
                        stack.append(rel)
                elif e.is_file(follow_symlinks=False):
                    if is_secret(e.name):
                        self.stats.skipped["secret"] += 1
                    elif languages.language_for_path(e.name) is None:
                        self.stats.skipped["unsupported"] += 1
                    elif e.name.endswith((".min.js", ".min.mjs", ".bundle.js")):
                        log.info("skip %s: vendored (minified bundle)", rel)
                        self.stats.skipped["vendored"] += 1
                    elif self._ignore.ignored(rel):
                        self.stats.skipped["gitignored"] += 1
                    else:
                        out.append(rel)
        return out

    def start(self, progress: Progress | None = None) -> threading.Thread:
        """Build in the background; :attr:`ready` is set when done."""
        self._thread = threading.Thread(target=self.build, args=(progress,), name="unmask-index-build", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> bool:
        return self.ready.wait(timeout)

    def build(self, progress: Progress | None = None) -> IndexStats:
        """Walk and index the whole workspace (blocking; :meth:`start` runs it on a thread)."""
        t0 = time.perf_counter()
        rels = self.walk()
        total = len(rels)
        if progress:
            progress(0, total, f"indexing {total} files")
        n = self.config.batch
        batches = [rels[i : i + n] for i in range(0, total, n)]
        done = 0
        if self.config.workers > 0 and len(batches) > 1:
            try:
                pool = self._get_pool()
                futs = {pool.submit(index_files, self.root, b, self.config.max_file_bytes): b for b in batches}
                for fut in as_completed(futs):
                    if self._closed:
                        break
                    res = fut.result()
                    self._merge(res)
                    batches.remove(futs[fut])
                    done += len(res)
                    if progress:
                        progress(done, total, f"{done}/{total} files")
            except (BrokenProcessPool, OSError, RuntimeError) as e:  # e.g. a __main__ without a main guard
                log.warning("index worker processes failed (%s); indexing on this thread", e)
                self._pool = None
        for b in batches if not self._closed else ():
            if self._closed:
                break
            self._merge(index_files(self.root, b, self.config.max_file_bytes))
            done += len(b)
            if progress:
                progress(done, total, f"{done}/{total} files")
        self._refresh_names()
        self.stats.files = len(self.files)
        self.stats.definitions = sum(len(v) for v in self._defs.values())
        self.stats.seconds = time.perf_counter() - t0
        self.ready.set()
        msg = f"indexed {self.stats.files} files, {self.stats.definitions} definitions in {self.stats.seconds:.1f} s"
        log.info("%s (skipped: %s)", msg, dict(self.stats.skipped))
        if progress:
            progress(total, total, msg)
        return self.stats

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")  # never fork a threaded server
            self._pool = ProcessPoolExecutor(max_workers=self.config.workers, mp_context=ctx)
        return self._pool

    def close(self) -> None:
        """Stop background work and the worker processes."""
        self._closed = True
        self._updater.shutdown(wait=False, cancel_futures=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> WorkspaceIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- updates --------------------------------------------------------------------------
    def update_file(self, path: str | os.PathLike) -> Future:
        """Re-index one file (on save or a watched change) in the background."""
        rel = self.rel(path)
        return self._updater.submit(self._update, rel)

    def remove_file(self, path: str | os.PathLike) -> Future:
        rel = self.rel(path)
        return self._updater.submit(self._apply_removal, rel)

    def on_watched_files(self, changes: Iterable[tuple[str, int | str]]) -> list[Future]:
        """Watched-file events: (path, kind) with kind 1/2/3 (LSP FileChangeType) or created/changed/deleted."""
        futs = []
        for path, kind in changes:
            if os.path.basename(os.fspath(path)) == ".gitignore":
                self._ignore.forget(posixpath_dir(self.rel(path)))
                continue
            futs.append(self.remove_file(path) if kind in (3, "deleted") else self.update_file(path))
        return futs

    def _update(self, rel: str) -> None:
        if _outside_rel(rel) or languages.language_for_path(rel) is None:
            return
        full = self.abspath(rel)
        if not os.path.isfile(full) or self._ignore.ignored(rel) or self._vendored(rel):
            self._apply_removal(rel)
            return
        old = self.files.get(rel)
        try:
            st = os.stat(full)
        except OSError:
            return
        if old is not None and old.mtime_ns == st.st_mtime_ns and old.size == st.st_size:
            return
        res = None
        if self.config.workers > 0:
            try:
                res = self._get_pool().submit(index_files, self.root, [rel], self.config.max_file_bytes).result()
            except (BrokenProcessPool, OSError, RuntimeError) as e:
                log.warning("index worker process failed (%s); indexing on this thread", e)
                self._pool = None
        if res is None:
            res = index_files(self.root, [rel], self.config.max_file_bytes)
        self._merge(res)
        self._refresh_names()

    def _vendored(self, rel: str) -> bool:
        parts = rel.split("/")[:-1]
        return any(p in self.config.vendored_dirs or (self.config.skip_hidden and p.startswith(".")) for p in parts)

    def _apply_removal(self, rel: str) -> None:
        with self._lock:
            self._remove(rel)
        self._refresh_names()

    def _merge(self, results: list[tuple]) -> None:
        with self._lock:
            for rel, mtime, size, tags, reason in results:
                if tags is None:
                    if reason != "unsupported":
                        log.info("skip %s: %s", rel, reason)
                    self.stats.skipped[reason.split(" ")[0]] += 1
                    self._remove(rel)
                    continue
                self._remove(rel)
                self.files[rel] = FileEntry(mtime, size, languages.language_for_path(rel) or "", tags)
                name = sys.intern(rel.rsplit("/", 1)[-1])
                self._by_name[name] = self._by_name.get(name, []) + [rel]
                d = rel.rsplit("/", 1)[0] if "/" in rel else ""
                self._by_dir[d] = self._by_dir.get(d, []) + [rel]
                for df in tags.definitions:
                    self._defs[df.name] = self._defs.get(df.name, []) + [df]
            self._imports_cache = {}

    def _remove(self, rel: str) -> None:
        old = self.files.pop(rel, None)
        if old is None:
            return
        for name in {d.name for d in old.tags.definitions}:
            kept = [d for d in self._defs.get(name, ()) if d.path != rel]
            if kept:
                self._defs[name] = kept
            else:
                self._defs.pop(name, None)
        name = rel.rsplit("/", 1)[-1]
        self._by_name[name] = [r for r in self._by_name.get(name, ()) if r != rel]
        d = rel.rsplit("/", 1)[0] if "/" in rel else ""
        self._by_dir[d] = [r for r in self._by_dir.get(d, ()) if r != rel]
        self._imports_cache = {}

    def _refresh_names(self) -> None:
        self._sorted_names = sorted(self._defs)
        self.stats.files = len(self.files)

    # -- lookups (never block) ------------------------------------------------------------
    def definitions(self, name: str) -> list[Definition]:
        return self._defs.get(name, [])

    def names_with_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        names = self._sorted_names
        i = bisect.bisect_left(names, prefix)
        out = []
        while i < len(names) and len(out) < limit and names[i].startswith(prefix):
            out.append(names[i])
            i += 1
        return out

    def files_referencing(self, name: str) -> list[str]:
        """Files whose tags reference ``name`` (call sites, type uses)."""
        return [rel for rel, e in list(self.files.items()) if name in e.tags.references]

    def resolve(self, language: str, module: str, from_rel: str, limit: int = 8) -> list[str]:
        """Workspace files an import of ``module`` in ``from_rel`` refers to."""
        exact, suffixes = imports.candidates(language, module, from_rel)
        out = [p for p in exact if p in self.files]
        for suf in suffixes:
            if out:
                break
            if suf.endswith("/"):
                d = suf[:-1]
                dirs = [k for k in self._by_dir if k == d or k.endswith("/" + d)]
                for k in sorted(dirs, key=len)[:1]:
                    out += [r for r in self._by_dir[k] if not r.endswith("_test.go")]
            else:
                base = suf.rsplit("/", 1)[-1]
                hits = [r for r in self._by_name.get(base, ()) if r == suf or r.endswith("/" + suf)]
                out += sorted(hits, key=len)[:2]
        return out[:limit]

    def imported_files(self, rel: str) -> frozenset[str]:
        """Workspace files that ``rel`` imports (from its indexed tags; cached)."""
        got = self._imports_cache.get(rel)
        if got is None:
            e = self.files.get(rel)
            mods = e.tags.imports if e is not None else ()
            lang = e.language if e is not None else (languages.language_for_path(rel) or "")
            got = self.imported_files_of(lang, mods, rel)
            self._imports_cache[rel] = got
        return got

    def imported_files_of(self, language: str, modules: Iterable[str], rel: str) -> frozenset[str]:
        out: set[str] = set()
        for m in modules:
            out.update(self.resolve(language, m, rel))
        out.discard(rel)
        return frozenset(out)

    def approx_bytes(self) -> int:
        """A rough deep size of the index's own data (definitions, names, reference sets)."""
        size = sys.getsizeof(self.files) + sys.getsizeof(self._defs)
        seen_str: set[int] = set()
        for lst in self._defs.values():
            size += sys.getsizeof(lst)
            for d in lst:
                size += sys.getsizeof(d) + sys.getsizeof(d.text)
        for e in self.files.values():
            size += sys.getsizeof(e) + sys.getsizeof(e.tags) + sys.getsizeof(e.tags.references)
            size += sys.getsizeof(e.tags.definitions) + sys.getsizeof(e.tags.imports)
            for r in e.tags.references:
                if id(r) not in seen_str:
                    seen_str.add(id(r))
                    size += sys.getsizeof(r)
        return size


def _outside_rel(rel: str) -> bool:
    return rel == ".." or rel.startswith("../") or os.path.isabs(rel)


def posixpath_dir(rel: str) -> str:
    return rel.rsplit("/", 1)[0] if "/" in rel else ""
