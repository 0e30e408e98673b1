"""Next-edit training data from real edits: consecutive released versions of Python packages.

    python -m unmask.engine.release_edits download --out data/releases --versions 8 --minutes 10
    python -m unmask.engine.release_edits diff --releases data/releases --out data/release_edits
    python -m unmask.engine.release_edits stats --out data/release_edits

**download**: for each package, ``pip index versions`` lists its releases (newest first; pre-
and dev releases left out) and ``pip download --no-deps --only-binary :all:`` fetches the wheel
of each of the newest ``--versions`` into ``<out>/<package>/``. A ``manifest.json`` per package
records the version order and which file holds which version (or that none could be had), so a
second run skips what is there. Wheels, not sdists: pure-Python wheels need no build step, but
they hold the package only, so tests and docs are not in the data.

**diff**: the ``.py`` files of two consecutive versions are matched by relative path (an
sdist's top folder and a wheel's ``*.dist-info`` left out). A changed file is cut into hunks
with ``difflib`` (0 context lines: one hunk per run of changed lines). A *change* is kept when
it has ``--min-hunks``..``--max-hunks`` hunks of at most ``--max-hunk-lines`` lines a side, the
file is UTF-8 and at most ``--max-file-lines`` lines, the change is not formatting-only (same
AST and comments), and the first hunk is more than blank lines (the bounds of
``shared/eval/nes``). Each change gives one example per history length k = 1..``--max-history``
(k < hunks): ``history`` = the first k hunks as a unified diff (3 context lines, ``--- a/path``),
``current`` = the old file with those hunks applied, ``remaining`` = the other hunks as
``{start_line, end_line, old_text, new_text}`` (0-based, end-exclusive lines of ``current``),
``cursor`` = the end of the k-th hunk's new text: the schema of ``shared/eval/nes``. A release
diff often has more (or bigger) hunks than one commit: such a change is cut into *windows* of
``--min-hunks``..``--max-hunks`` consecutive small hunks (a big hunk ends a run), each taken as
the change from the file with the earlier hunks applied (``window`` = [i, j) in the example;
``--windows 0`` drops them instead). Examples are
written as JSONL shards ``train-*.jsonl`` / ``heldout-*.jsonl`` with their provenance (package,
versions, path) and ``stats.json``.

**Decontamination** against the evaluation set (``shared/eval/nes``, read only to exclude it;
no eval text is ever written): a change is dropped, and counted per reason, when

* ``package``: the package is one the set is mined from (requests, flask, click);
* ``vendored``: its path is vendored code (a ``_vendor``/``vendor``/``_vendored``/``extern``
  folder: a copy of another project, which may be requests, flask or click, e.g.
  ``pip/_vendor/requests``) or has a folder named requests, flask or click;
* ``eval_path``: its path (``src/`` left out) is a path of an eval example;
* ``eval_file``: the old or new file text is one of the eval's ``before``/``current``/``target``
  texts (compared by a hash of the stripped non-blank lines);
* ``eval_hunk``: one of its hunks is a hunk of an eval commit (history or remaining, same hash;
  hunks with fewer than 40 non-blank characters are too generic to count).

Within the data, a change whose hunks were already seen (same hash, e.g. a file copied between
packages or a change released twice) is dropped as ``duplicate``; held-out packages are cut
first, so a change seen in a held-out package never reaches training.

**Split** by package: the packages are ordered by the SHA-256 of their name and the first
``ceil(--heldout-share * n)`` are held out (never trained on; used for calibration and probes).

It knows files, diffs and pip; nothing of tokens or models. A release diff mixes the commits
of a whole release, so its hunks are less tied to each other than one commit's.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import gzip
import hashlib
import io
import json
import math
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import tokenize
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

EXCLUDED = frozenset({"requests", "flask", "click"})  # the evaluation set's sources
VENDOR_DIRS = frozenset({"_vendor", "vendor", "_vendored", "vendored", "extern", "_extern"})
# pure Python, permissive licenses, released often; none of them is (or vendors) requests/flask/click
PACKAGES = (
    "attrs",
    "packaging",
    "pluggy",
    "idna",
    "six",
    "tomli",
    "more-itertools",
    "iniconfig",
    "platformdirs",
    "filelock",
    "tomlkit",
    "itsdangerous",
    "jinja2",
    "werkzeug",
    "cachetools",
    "pyparsing",
    "sortedcontainers",
    "toolz",
    "python-dateutil",
    "wheel",
    "markdown",
    "pyflakes",
    "pycodestyle",
    "isort",
)
FINAL = re.compile(r"^\d+(\.\d+)*(\.post\d+)?$")
MIN_HUNK_CHARS = 40  # an eval hunk shorter than this (non-blank characters) is too generic to match on


def norm_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- download ------------------------------------------------------------------------------------
def pip_versions(pkg: str) -> list[str]:
    """Final releases of ``pkg`` on the index, newest first (``pip index versions``)."""
    r = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", pkg], capture_output=True, text=True, timeout=180
    )
    m = re.search(r"Available versions:(.*)", r.stdout)
    if not m:
        return []
    return [v.strip() for v in m.group(1).split(",") if FINAL.match(v.strip())]


def pip_download(pkg: str, version: str, dest: Path, kind: str = "wheel") -> str | None:
    """Fetch one release into ``dest``; the new file's name, or None when there is none to have."""
    fmt = ["--only-binary", ":all:"] if kind == "wheel" else ["--no-binary", ":all:"]
    with tempfile.TemporaryDirectory(dir=dest) as tmp:  # one folder per download: jobs run side by side
        r = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", *fmt, "-d", tmp, f"{pkg}=={version}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        new = sorted(Path(tmp).iterdir())
        if r.returncode != 0 or len(new) != 1:
            return None
        new[0].replace(dest / new[0].name)
        return new[0].name


def download(
    packages, out: Path, versions: int = 8, kind: str = "wheel", minutes: float = 10.0, jobs: int = 4, log=print
):
    """Fetch the newest ``versions`` releases of each package (resumable; stops starting work after ``minutes``)."""
    out.mkdir(parents=True, exist_ok=True)
    t_end = time.monotonic() + minutes * 60
    todo: list[tuple[str, str, Path]] = []
    for pkg in packages:
        if norm_name(pkg) in EXCLUDED:
            log(f"skip {pkg}: the evaluation set is mined from it")
    packages = [p for p in packages if norm_name(p) not in EXCLUDED]
    unlisted = [p for p in packages if not _manifest(out / norm_name(p)).get("order")]
    with ThreadPoolExecutor(jobs) as ex:
        for pkg, order in zip(unlisted, ex.map(pip_versions, unlisted)):
            d = out / norm_name(pkg)
            d.mkdir(exist_ok=True)
            _save_manifest(d, {"order": order, "files": {}})
            log(f"{pkg}: {len(order)} releases")
    for pkg in packages:
        d = out / norm_name(pkg)
        man = _manifest(d)
        for v in man["order"][:versions]:
            if v not in man["files"]:
                todo.append((pkg, v, d))
    done = 0

    def one(job):
        pkg, v, d = job
        if time.monotonic() > t_end:
            return job, "timeout"
        return job, pip_download(pkg, v, d, kind)

    with ThreadPoolExecutor(jobs) as ex:
        for (pkg, v, d), name in ex.map(one, todo):
            done += 1
            if name == "timeout":
                continue
            man = _manifest(d)
            man["files"][v] = name  # None: no file of that kind for this version
            _save_manifest(d, man)
            print(f"\r[{done}/{len(todo)}] {pkg}=={v}: {name or 'none'}" + " " * 20, end="", file=sys.stderr)
    print(file=sys.stderr)
    log(f"downloaded {done} of {len(todo)} releases into {out}")


def _manifest(d: Path) -> dict:
    p = d / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else {"order": [], "files": {}}


def _save_manifest(d: Path, man: dict) -> None:
    tmp = d / "manifest.json.tmp"
    tmp.write_text(json.dumps(man, indent=1))
    tmp.replace(d / "manifest.json")


# -- reading releases ----------------------------------------------------------------------------
def read_release(path: Path) -> dict[str, str]:
    """The UTF-8 ``.py`` files of a wheel, zip or tarball, by relative path (top folder of an sdist dropped)."""
    out: dict[str, str] = {}

    def add(name: str, data: bytes) -> None:
        parts = name.split("/")
        if path.suffix != ".whl":
            parts = parts[1:]  # an sdist's pkg-1.0/ folder
        if not parts or any(p.endswith((".dist-info", ".egg-info")) for p in parts):
            return
        try:
            out["/".join(parts)] = data.decode("utf-8")
        except UnicodeDecodeError:
            return

    if path.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.filename.endswith(".py") and not info.is_dir():
                    add(info.filename, z.read(info))
    elif path.name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar")):
        with tarfile.open(path) as t:
            for m in t.getmembers():
                if m.isfile() and m.name.endswith(".py"):
                    f = t.extractfile(m)
                    if f is not None:
                        add(m.name, f.read())
    return out


def releases(d: Path) -> list[tuple[str, Path]]:
    """(version, file) of a package folder, oldest first, in the index's order."""
    man = _manifest(d)
    have = [(v, d / f) for v, f in man.get("files", {}).items() if f and (d / f).exists()]
    rank = {v: i for i, v in enumerate(man.get("order", []))}
    return sorted(have, key=lambda x: -rank.get(x[0], -1))


# -- hunks and cutting ---------------------------------------------------------------------------
@dataclass
class Hunk:
    i1: int  # old lines [i1, i2) ...
    i2: int
    j1: int  # ... become new lines [j1, j2)
    j2: int
    old: list[str]
    new: list[str]


def hunks_of(a: list[str], b: list[str]) -> list[Hunk]:
    """Line hunks from ``a`` to ``b`` with no context (one per run of changed lines)."""
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [Hunk(i1, i2, j1, j2, a[i1:i2], b[j1:j2]) for op, i1, i2, j1, j2 in sm.get_opcodes() if op != "equal"]


def apply_hunks(lines: list[str], hunks: list[Hunk]) -> list[str]:
    """``lines`` with ``hunks`` (old-side line numbers, not overlapping) applied."""
    out = list(lines)
    for h in sorted(hunks, key=lambda h: h.i1, reverse=True):
        out[h.i1 : h.i2] = h.new
    return out


def unified(path: str, a: list[str], b: list[str], n: int = 3) -> str:
    out = []
    for line in difflib.unified_diff(a, b, f"a/{path}", f"b/{path}", n=n):
        out.append(line if line.endswith("\n") else line + "\n")
    return "".join(out)


def utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def cut(path: str, before: str, after: str, k: int, hunks: list[Hunk] | None = None) -> dict:
    """One example: the first ``k`` hunks as the history, the rest to predict (``shared/eval/nes``'s schema)."""
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    hunks = hunks if hunks is not None else hunks_of(a, b)
    if not 0 < k < len(hunks):
        raise ValueError(f"k={k} for {len(hunks)} hunks")
    cur = apply_hunks(a, hunks[:k])
    shift = sum(len(h.new) - len(h.old) for h in hunks[:k])
    remaining = [
        {
            "start_line": h.i1 + shift,
            "end_line": h.i2 + shift,
            "old_text": "".join(h.old),
            "new_text": "".join(h.new),
        }
        for h in hunks[k:]
    ]
    last = hunks[k - 1]
    if last.new:  # the end of the last history hunk's new text (its lines are where they are in ``after``)
        cursor = {"line": last.j2 - 1, "character": utf16_len(b[last.j2 - 1].rstrip("\r\n"))}
    else:
        cursor = {"line": last.j2, "character": 0}
    return {
        "path": path,
        "current": "".join(cur),
        "cursor": cursor,
        "history": unified(path, a, cur),
        "n_history": k,
        "n_remaining": len(remaining),
        "remaining": remaining,
    }


def apply_remaining(current: str, remaining: list[dict]) -> str:
    lines = current.splitlines(keepends=True)
    for r in sorted(remaining, key=lambda r: r["start_line"], reverse=True):
        lines[r["start_line"] : r["end_line"]] = r["new_text"].splitlines(keepends=True)
    return "".join(lines)


def _comments(text: str) -> list[str]:
    return [t.string for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT]


def formatting_only(a: str, b: str) -> bool:
    """Same AST and comments (only layout changed); code that does not parse: same tokens."""
    try:
        if ast.dump(ast.parse(a)) == ast.dump(ast.parse(b)):
            return _comments(a) == _comments(b)
        return False
    except (SyntaxError, ValueError, tokenize.TokenError):
        return a.split() == b.split()


# -- decontamination -----------------------------------------------------------------------------
def text_hash(text: str) -> str:
    """Hash of the stripped non-blank lines: the same text up to indentation and blank lines."""
    norm = "\n".join(ln.strip() for ln in text.splitlines() if ln.strip())
    return hashlib.sha256(norm.encode()).hexdigest()[:20]


def hunk_hash(old: str, new: str) -> str | None:
    """Hash of one hunk's two sides; None for a hunk too short to tell one commit from another."""
    if sum(len(ln.strip()) for ln in (old + new).splitlines()) < MIN_HUNK_CHARS:
        return None
    return text_hash(old) + ":" + text_hash(new)


def diff_hunks(diff: str) -> list[tuple[str, str]]:
    """(old text, new text) of each run of -/+ lines of a unified diff."""
    out, old, new = [], [], []
    for line in diff.splitlines(keepends=True) + [" \n"]:
        if line.startswith(("---", "+++", "@@")):
            continue
        if line.startswith("-"):
            old.append(line[1:])
        elif line.startswith("+"):
            new.append(line[1:])
        elif old or new:
            out.append(("".join(old), "".join(new)))
            old, new = [], []
    return out


@dataclass
class EvalIndex:
    paths: set[str]
    files: set[str]
    hunks: set[str]
    n: int = 0


def strip_src(path: str) -> str:
    return path[4:] if path.startswith("src/") else path


def load_eval(eval_dir: Path) -> EvalIndex:
    """Paths, file hashes and hunk hashes of every example of ``eval_dir/*.jsonl.gz`` (read only to exclude)."""
    ix = EvalIndex(set(), set(), set())
    for f in sorted(Path(eval_dir).glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                ex = json.loads(line)
                ix.n += 1
                ix.paths.add(strip_src(ex["path"]))
                for key in ("before", "current", "target"):
                    if ex.get(key):
                        ix.files.add(text_hash(ex[key]))
                pairs = diff_hunks(ex.get("history", "")) + [(r["old_text"], r["new_text"]) for r in ex["remaining"]]
                ix.hunks.update(h for h in (hunk_hash(o, n) for o, n in pairs) if h)
    return ix


def path_reason(pkg: str, path: str) -> str | None:
    """Why a path must not be trained on (``package`` / ``vendored``), or None."""
    if norm_name(pkg) in EXCLUDED:
        return "package"
    parts = path.split("/")[:-1]
    if any(p in VENDOR_DIRS or p in EXCLUDED for p in parts):
        return "vendored"
    return None


# -- split ---------------------------------------------------------------------------------------
def split_packages(packages, share: float = 0.2) -> tuple[list[str], list[str]]:
    """(train, held-out) packages: deterministic, by the SHA-256 of the normalized name."""
    names = sorted({norm_name(p) for p in packages}, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    k = math.ceil(share * len(names)) if share > 0 else 0
    return sorted(names[k:]), sorted(names[:k])


# -- the diff step -------------------------------------------------------------------------------
@dataclass
class Bounds:
    min_hunks: int = 2
    max_hunks: int = 6
    max_hunk_lines: int = 6
    max_file_lines: int = 1500
    max_history: int = 2
    windows: int = 1  # cut changes with too many or too big hunks into windows of small hunks (0: drop them)


def change_reason(before: str, after: str, hunks: list[Hunk], bd: Bounds) -> str | None:
    """Why a changed file makes no example (a bound it breaks), or None."""
    if len(hunks) < bd.min_hunks:
        return "hunks<min"
    if len(hunks) > bd.max_hunks:
        return "hunks>max"
    if max(max(len(h.old), len(h.new)) for h in hunks) > bd.max_hunk_lines:
        return "hunk_too_big"
    if before.count("\n") > bd.max_file_lines or after.count("\n") > bd.max_file_lines:
        return "file_too_big"
    if not "".join(hunks[0].old + hunks[0].new).strip():
        return "blank_first_hunk"
    if formatting_only(before, after):
        return "formatting_only"
    return None


def windows(hunks: list[Hunk], bd: Bounds) -> list[tuple[int, int]]:
    """Windows [i, j) of consecutive small hunks (``min_hunks``..``max_hunks`` each) of a change too big to
    take whole: big hunks end a run, a run is cut into windows left to right. A window's change is the
    file with the hunks before it applied, to the file with its own hunks applied too."""
    out, i = [], 0
    small = [max(len(h.old), len(h.new)) <= bd.max_hunk_lines for h in hunks]
    while i < len(hunks):
        if not small[i]:
            i += 1
            continue
        j = i
        while j < len(hunks) and small[j] and j - i < bd.max_hunks:
            j += 1
        if j - i >= bd.min_hunks:
            out.append((i, j))
        i = j
    return out


class Writer:
    def __init__(self, out: Path, name: str, per_shard: int):
        self.out, self.name, self.per_shard = out, name, per_shard
        self.n, self.f = 0, None

    def write(self, ex: dict) -> None:
        if self.n % self.per_shard == 0:
            if self.f:
                self.f.close()
            self.f = open(self.out / f"{self.name}-{self.n // self.per_shard:05d}.jsonl", "w", encoding="utf-8")
        self.f.write(json.dumps(ex) + "\n")
        self.n += 1

    def close(self) -> None:
        if self.f:
            self.f.close()


def build(
    releases_dir: Path,
    out: Path,
    eval_dir: Path | None,
    bounds: Bounds | None = None,
    heldout_share: float = 0.2,
    per_shard: int = 2000,
    log=print,
) -> dict:
    """Diff every package's consecutive releases into example shards; returns (and writes) the stats."""
    bd = bounds or Bounds()
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("train-*.jsonl")) + list(out.glob("heldout-*.jsonl")):
        old.unlink()
    ix = load_eval(eval_dir) if eval_dir and Path(eval_dir).exists() else EvalIndex(set(), set(), set())
    pkgs = sorted(p.name for p in Path(releases_dir).iterdir() if (p / "manifest.json").exists())
    excluded = [p for p in pkgs if norm_name(p) in EXCLUDED]  # never read
    train_p, held_p = split_packages([p for p in pkgs if p not in excluded], heldout_share)
    writers = {"train": Writer(out, "train", per_shard), "heldout": Writer(out, "heldout", per_shard)}
    dropped: dict[str, int] = {}
    skipped: dict[str, int] = {}
    seen: set[str] = set()
    per_pkg: dict[str, dict] = {}
    n_pairs = n_files = n_changed = n_multi = 0
    n_kept = [0, 0]  # whole changes, windows

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    for _ in excluded:
        drop("package")

    for pkg in held_p + train_p:  # held-out first: a change seen there never reaches training
        split = "heldout" if pkg in held_p else "train"
        rel = releases(Path(releases_dir) / pkg)
        st = per_pkg[pkg] = {"split": split, "versions": len(rel), "changes": 0, "examples": 0}
        prev = None
        for version, path in rel:
            files = read_release(path)
            if prev is not None:
                pv, pfiles = prev
                n_pairs += 1
                for rp in sorted(set(pfiles) & set(files)):
                    n_files += 1
                    a, b = pfiles[rp], files[rp]
                    if a == b:
                        continue
                    n_changed += 1
                    why = path_reason(pkg, rp)
                    if why:
                        drop(why)
                        continue
                    al, bl = a.splitlines(keepends=True), b.splitlines(keepends=True)
                    hunks = hunks_of(al, bl)
                    if len(hunks) >= 2:
                        n_multi += 1
                    why = change_reason(a, b, hunks, bd)
                    if why:
                        skipped[why] = skipped.get(why, 0) + 1
                    pieces = [(a, b, hunks, None)] if not why else []
                    if why in ("hunks>max", "hunk_too_big") and bd.windows:
                        for i, j in windows(hunks, bd):
                            a2, b2 = "".join(apply_hunks(al, hunks[:i])), "".join(apply_hunks(al, hunks[:j]))
                            h2 = hunks_of(a2.splitlines(keepends=True), b2.splitlines(keepends=True))
                            if change_reason(a2, b2, h2, bd) is None:
                                pieces.append((a2, b2, h2, (i, j)))
                    if pieces and strip_src(rp) in ix.paths:
                        drop("eval_path")
                        continue
                    for a2, b2, h2, win in pieces:
                        if text_hash(a2) in ix.files or text_hash(b2) in ix.files:
                            drop("eval_file")
                            continue
                        if any(h and h in ix.hunks for h in (hunk_hash("".join(h.old), "".join(h.new)) for h in h2)):
                            drop("eval_hunk")
                            continue
                        key = "|".join(text_hash("".join(h.old + ["\0"] + h.new)) for h in h2)
                        key = hashlib.sha256(key.encode()).hexdigest()
                        if key in seen:
                            drop("duplicate")
                            continue
                        seen.add(key)
                        n_kept[win is not None] += 1
                        st["changes"] += 1
                        tag = f"{pkg}:{pv}..{version}:{rp}" + (f":h{win[0]}-{win[1]}" if win else "")
                        for k in range(1, min(bd.max_history, len(h2) - 1) + 1):
                            ex = cut(rp, a2, b2, k, h2)
                            ex = {"id": f"{tag}:k{k}", "package": pkg, "from": pv, "to": version, "window": win} | ex
                            writers[split].write(ex)
                            st["examples"] += 1
            prev = (version, files)
        log(f"{pkg:20s} {split:8s} versions {st['versions']:2d} changes {st['changes']:4d} examples {st['examples']}")
    for w in writers.values():
        w.close()
    stats = {
        "packages": len(pkgs) - len(excluded),
        "train_packages": train_p,
        "heldout_packages": held_p,
        "version_pairs": n_pairs,
        "files_compared": n_files,
        "files_changed": n_changed,
        "multi_hunk_changes": n_multi,
        "changes_kept": n_kept[0],
        "windows_kept": n_kept[1],
        "examples": {s: w.n for s, w in writers.items()},
        "dropped": dict(sorted(dropped.items())),
        "out_of_bounds": dict(sorted(skipped.items())),
        "bounds": bd.__dict__,
        "eval_examples_indexed": ix.n,
        "per_package": per_pkg,
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    return stats


# -- the request the model sees -------------------------------------------------------------------
EXCERPT_LINES = 2  # lines kept around the seed edit and each hole: lsp/nes.py's EXCERPT_LINES (a test keeps them equal)


def edit_prompt(ex: dict, r: int, comment: str = "#", excerpt_lines: int = EXCERPT_LINES) -> tuple[str, str] | None:
    """(text before the hole, new text) for hunk ``r`` of ``ex["remaining"]`` as the only hole of a next-edit
    request, laid out as the server lays one out for the causal engine: the history's ``-``/``+`` lines as
    comments (``CausalEngine.prepare_edit`` on ``edits.history_text``), then the file's lines around the
    cursor and around the hole (``lsp.nes.segments_for``; ``...`` lines between excerpts) up to the hole.
    None when the hole lies past the file's last line (the server has no excerpt there)."""
    from .edits import history_text

    hist = history_text(ex["history"])
    head = "".join(f"{comment} {ln}\n" for ln in hist.splitlines()) if hist.strip() else ""
    head = f"{comment} Recent edit:\n{head}\n" if head else ""
    lines = ex["current"].splitlines(keepends=True)
    s = ex["remaining"][r]["start_line"]
    cur = ex["cursor"]["line"]
    keep = set(range(s - excerpt_lines, s + excerpt_lines + 1)) | set(
        range(cur - excerpt_lines, cur + excerpt_lines + 1)
    )
    keep = sorted(i for i in keep if 0 <= i < len(lines))
    if s not in keep:
        return None
    out, prev = [head], -2
    for i in keep:
        if i == s:
            break
        if i != prev + 1 and len(out) > 1:
            out.append("\n...\n")
        out.append(lines[i])
        prev = i
    if s != prev + 1 and len(out) > 1:
        out.append("\n...\n")
    return "".join(out), ex["remaining"][r]["new_text"]


def iter_examples(d: Path, split: str = "train"):
    """The examples of one split of a ``diff`` output folder, shard by shard."""
    for f in sorted(Path(d).glob(f"{split}-*.jsonl")):
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m unmask.engine.release_edits", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="fetch the newest releases of each package with pip")
    d.add_argument("--out", type=Path, default=Path("data/releases"))
    d.add_argument("--packages", default=",".join(PACKAGES))
    d.add_argument("--versions", type=int, default=8, help="newest releases per package")
    d.add_argument("--kind", choices=("wheel", "sdist"), default="wheel")
    d.add_argument("--minutes", type=float, default=10.0, help="start no download after this")
    d.add_argument("--jobs", type=int, default=4)
    f = sub.add_parser("diff", help="cut consecutive releases into examples")
    f.add_argument("--releases", type=Path, default=Path("data/releases"))
    f.add_argument("--out", type=Path, default=Path("data/release_edits"))
    f.add_argument("--eval-dir", type=Path, default=Path("../shared/eval/nes"), help="only read to exclude it")
    f.add_argument("--heldout-share", type=float, default=0.2)
    for k, v in Bounds().__dict__.items():
        f.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    s = sub.add_parser("stats", help="print a diff output's stats")
    s.add_argument("--out", type=Path, default=Path("data/release_edits"))
    a = ap.parse_args(argv)
    if a.cmd == "download":
        pk = [p.strip() for p in a.packages.split(",") if p.strip()]
        download(pk, a.out, a.versions, a.kind, a.minutes, a.jobs)
    elif a.cmd == "diff":
        if not a.eval_dir.exists():
            print(f"warning: {a.eval_dir} not found: no decontamination against the evaluation set", file=sys.stderr)
        bd = Bounds(**{k: getattr(a, k) for k in Bounds().__dict__})
        st = build(a.releases, a.out, a.eval_dir, bd, a.heldout_share)
        print(json.dumps({k: v for k, v in st.items() if k != "per_package"}, indent=1))
    else:
        print((a.out / "stats.json").read_text())


if __name__ == "__main__":
    main()
