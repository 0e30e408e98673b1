"""A typing storm against ``unmask serve``: keystrokes at a fixed rate, every one with requests.

    python bench/soak.py                          # 30 keystrokes/s for 5 minutes (the RELIABILITY.md figures)
    python bench/soak.py --minutes 0.5 --rate 30  # what tests/test_storm.py runs
    python bench/soak.py --json out.json          # the report as JSON too

The client speaks JSON-RPC over the server's stdin/stdout itself (framing, a reader thread), as
an editor does: it never waits for an answer before the next keystroke. Each keystroke sends a
``didChange`` (typing a real source file character by character, with backspaces, pasted words,
and a full-text change back to the start when the file is typed out), a ``$/cancelRequest`` for
the previous completion request if it is still open (what VS Code does), an automatic
``textDocument/inlineCompletion`` and a ``textDocument/copilotInlineEdit``. Drafts are streamed
(``streamDrafts``). Afterwards one last keystroke and its requests, which must be answered.

Typing comes in bursts, as people type: now and then (1 keystroke in ``--pause-every``) the
typist stops for ``--pause-ms`` and then catches up as fast as the pipe takes it, so the mean
rate stays ``--rate`` while some requests live long enough to be answered (at a steady 30/s
every request is superseded before the model is done, and only cancellation would be tested).
Half of the open completion requests are cancelled (``--cancel``) when the next one is sent.

Checked, each one a line of the report and a key of :class:`Report`:

* **no stale answer applied**: every completion item's range ends at the cursor it was asked
  for and its ``insertText`` starts with the text the range covers *in the document version the
  request was sent for*; every next edit names that version and lies inside that text; every
  error is ContentModified or RequestCancelled;
* **the last request answered** (a result, not an error) for both methods;
* **no crash, no unhandled exception**: the server is up; no traceback and no ERROR line in its
  log file or stderr, no error ``window/logMessage``;
* **memory and leftovers**: RSS (``/proc/PID/status`` VmRSS) at the first answer, after a warm-up
  storm (``--warmup`` seconds: the baseline, with the bounded caches filled), at its peak, and after
  the storm (the baseline and after alike: once the work has settled and the server has idled
  ``IDLE_S``, so both come after its idle heap trim and arena release); the server's threads
  (``/proc/PID/task``, and Python's from ``unmask/stats``) and its open requests and model jobs
  (``unmask/stats``) back at their baseline; CPU used while idle after the storm (a busy loop would show);
* **exit**: ``shutdown`` + ``exit`` end the process, timed.

It knows LSP framing, the server's methods and ``/proc``; it knows nothing of the model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTENT_MODIFIED, REQUEST_CANCELLED = -32801, -32800
URI = "file:///tmp/unmask-soak/typed.py"
TICK = os.sysconf("SC_CLK_TCK")
sys.path.insert(0, str(ROOT))
from unmask.lsp.worker import ARENA_RELEASE_S  # noqa: E402

# idle seconds before the baseline and after the storm (RSS, CPU): the server trims its heap after 1 s
# and hands back the model runtime's unused arena after ARENA_RELEASE_S (the user stopped typing)
IDLE_S = ARENA_RELEASE_S + 2.0


@dataclass
class Report:
    seconds: float = 0.0  # storm length
    rate: float = 0.0  # keystrokes per second asked for
    keystrokes: int = 0
    achieved_rate: float = 0.0
    completions: dict = field(default_factory=dict)  # outcome -> count
    next_edits: dict = field(default_factory=dict)
    cancels_sent: int = 0
    drafts: int = 0
    completion_ms: dict = field(default_factory=dict)  # p50/p95/max of answered ones (sent -> received)
    unanswered: int = 0  # requests of the storm with no answer at the end
    bad_answers: list = field(default_factory=list)  # answers that do not match their version (must be empty)
    bad_errors: list = field(default_factory=list)  # errors other than ContentModified / RequestCancelled
    last_completion: str = ""  # "result" or what came instead
    last_next_edit: str = ""
    alive: bool = False
    log_problems: list = field(default_factory=list)  # tracebacks, ERROR lines, error logMessages
    rss_mb: dict = field(default_factory=dict)  # first_answer / baseline (after the warm-up) / peak / after
    threads: dict = field(default_factory=dict)  # baseline / peak / after (/proc tasks)
    py_threads: dict = field(default_factory=dict)  # baseline / after (unmask/stats)
    cache_mb: dict = field(default_factory=dict)  # the engine's context KV caches, baseline / after (unmask/stats)
    memory_releases: int = 0  # the server's idle returns of free heap memory to the OS, over the whole run
    open_after: dict = field(default_factory=dict)  # openRequests / modelJobs after the storm
    idle_cpu_pct: float = 0.0  # CPU used in the idle seconds after the storm
    exit_s: float | None = None  # shutdown + exit -> process gone
    exit_code: int | None = None

    def failures(self, max_rss_growth_mb: float = 50.0) -> list[str]:
        """What breaks the promises in RELIABILITY.md; empty when the storm passed."""
        out = []
        if self.bad_answers:
            out.append(f"{len(self.bad_answers)} answers do not match their version: {self.bad_answers[:3]}")
        if self.bad_errors:
            out.append(f"unexpected errors: {self.bad_errors[:3]}")
        if self.unanswered:
            out.append(f"{self.unanswered} requests never answered")
        if self.last_completion != "result" or self.last_next_edit != "result":
            out.append(f"last requests: completion {self.last_completion}, next edit {self.last_next_edit}")
        if not self.alive:
            out.append("the server is not up after the storm")
        if self.log_problems:
            out.append(f"log: {self.log_problems[:3]}")
        if self.rss_mb.get("after", 0) - self.rss_mb.get("baseline", 0) > max_rss_growth_mb:
            out.append(f"RSS grew {self.rss_mb['after'] - self.rss_mb['baseline']:.1f} MB (limit {max_rss_growth_mb})")
        if self.open_after.get("openRequests") or self.open_after.get("modelJobs"):
            out.append(f"work left open after the storm: {self.open_after}")
        if self.threads.get("after", 0) > self.threads.get("baseline", 0):
            out.append(f"threads not back to baseline: {self.threads}")
        if self.py_threads.get("after", 0) > self.py_threads.get("baseline", 0):
            out.append(f"Python threads not back to baseline: {self.py_threads}")
        if self.idle_cpu_pct > 10:
            out.append(f"{self.idle_cpu_pct:.0f}% CPU while idle after the storm")
        if self.exit_code is None:
            out.append("the server did not exit after shutdown + exit")
        return out


# -- the wire -------------------------------------------------------------------------------------
class Wire:
    """``unmask serve`` on pipes: framed JSON-RPC out, a reader thread that files what comes back."""

    def __init__(self, cmd: list[str], env: dict | None = None):
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.answers: dict = {}  # id -> (message, time received)
        self.arrived = threading.Condition()
        self.drafts = 0
        self.log_errors: list[str] = []
        self.stderr: list[bytes] = []
        self._lock = threading.Lock()
        self._ids = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            length = None
            while (line := out.readline()) != b"\r\n":
                if not line:
                    with self.arrived:
                        self.answers[None] = None  # EOF
                        self.arrived.notify_all()
                    return
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            msg = json.loads(out.read(length))
            now = time.perf_counter()
            if "id" in msg and "method" in msg:  # a request from the server: decline politely
                self.send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
            elif "id" in msg:
                with self.arrived:
                    self.answers[msg["id"]] = (msg, now)
                    self.arrived.notify_all()
            elif msg.get("method") == "unmask/draft":
                self.drafts += 1
            elif msg.get("method") == "window/logMessage" and msg["params"].get("type") == 1:
                self.log_errors.append(msg["params"]["message"][:300])

    def send(self, message: dict) -> None:
        body = json.dumps(message).encode()
        with self._lock:
            self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.proc.stdin.flush()

    def notify(self, method: str, params) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params) -> str:
        """Send a request; returns its id (the answer lands in :attr:`answers`)."""
        with self._lock:
            self._ids += 1
            msg_id = f"{method.rsplit('/', 1)[-1][:6]}{self._ids}"
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return msg_id

    def wait(self, msg_id: str, timeout: float) -> dict | None:
        end = time.monotonic() + timeout
        with self.arrived:
            while msg_id not in self.answers and None not in self.answers:
                left = end - time.monotonic()
                if left <= 0 or not self.arrived.wait(left):
                    break
        got = self.answers.get(msg_id)
        return got[0] if got else None

    def call(self, method: str, params, timeout: float = 60) -> dict:
        got = self.wait(self.request(method, params), timeout)
        if got is None:
            raise TimeoutError(f"no answer to {method} in {timeout} s: {self.tail()}")
        return got

    def tail(self) -> str:
        return b"".join(self.stderr)[-1500:].decode("utf-8", "replace")


# -- /proc ----------------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def n_threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


# -- the typist -----------------------------------------------------------------------------------
class Typist:
    """Types ``source`` into a document one keystroke at a time: mostly its next character, sometimes a
    backspace (then the character again) or a pasted word; back to ``source[:start]`` once it is typed out.
    The document opens with ``source[:start]`` in it, so the model's context window is full from the start
    (typing into an empty file, the context and its cache grow for a minute or more, which reads as RSS growth)."""

    def __init__(self, source: str, seed: int, start: int = 0):
        self.source, self.rng, self.start = source, random.Random(seed), start
        self.text, self.typed, self.version = source[:start], start, 1

    def position(self, offset: int) -> dict:
        line = self.text.count("\n", 0, offset)
        col = self.text[self.text.rfind("\n", 0, offset) + 1 : offset]
        return {"line": line, "character": len(col.encode("utf-16-le")) // 2}

    def key(self) -> tuple[list[dict], dict]:
        """One keystroke: (the content changes, the cursor after it); the version goes up by one."""
        self.version += 1
        if self.typed >= len(self.source):  # typed out: start again (a full-text change)
            self.text, self.typed = self.source[: self.start], self.start
            return [{"text": self.text}], self.position(len(self.text))
        end = len(self.text)
        r = self.rng.random()
        if r < 0.06 and self.text and self.text[-1] != "\n":  # a typo taken back
            change = {"range": {"start": self.position(end - 1), "end": self.position(end)}, "text": ""}
            self.text, self.typed = self.text[:-1], self.typed - 1
        else:
            n = self.rng.randint(4, 12) if r > 0.98 else 1  # a pasted word now and then
            piece = self.source[self.typed : self.typed + n]
            at = self.position(end)
            change = {"range": {"start": at, "end": at}, "text": piece}
            self.text, self.typed = self.text + piece, self.typed + len(piece)
        return [change], self.position(len(self.text))


def covered(text: str, rng: dict) -> str | None:
    """The text a range covers (UTF-16 positions); None when the range is not inside ``text``."""
    lines = text.split("\n")

    def offset(p: dict) -> int | None:
        if p["line"] >= len(lines):
            return None
        units = lines[p["line"]].encode("utf-16-le")
        if p["character"] * 2 > len(units):
            return None
        col = len(units[: p["character"] * 2].decode("utf-16-le"))
        return sum(len(x) + 1 for x in lines[: p["line"]]) + col

    a, b = offset(rng["start"]), offset(rng["end"])
    return None if a is None or b is None or b < a else text[a:b]


def check_completion(msg: dict, sent: dict) -> str | None:
    """Why a completion answer does not fit the document version it was asked for (None: it fits)."""
    for item in msg["result"]["items"] if isinstance(msg["result"], dict) else msg["result"] or []:
        rng = item.get("range")
        if rng is None or rng["end"] != sent["position"]:
            return f"v{sent['version']}: item range {rng} does not end at the cursor {sent['position']}"
        old = covered(sent["text"], rng)
        if old is None or not item["insertText"].startswith(old):
            return f"v{sent['version']}: insertText {item['insertText'][:40]!r} does not start with {old!r}"
    return None


def check_next_edit(msg: dict, sent: dict) -> str | None:
    for e in msg["result"].get("edits", []):
        if e["textDocument"] != {"uri": URI, "version": sent["version"]}:
            return f"v{sent['version']}: next edit for {e['textDocument']}"
        if covered(sent["text"], e["range"]) is None:
            return f"v{sent['version']}: next edit range {e['range']} outside the text"
    return None


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    v = sorted(values)
    return {p: round(v[min(len(v) - 1, int(len(v) * q))], 1) for p, q in (("p50", 0.5), ("p95", 0.95))} | {
        "max": round(v[-1], 1)
    }


# -- the storm ------------------------------------------------------------------------------------
def storm(
    seconds: float,
    rate: float = 30.0,
    seed: int = 0,
    source: Path = ROOT / "lsp" / "completer.py",
    model: str | None = None,
    log: bool = True,
    pause_every: int = 45,
    pause_ms: float = 600.0,
    cancel: float = 0.5,
    warmup: float = 20.0,
    server: list[str] | None = None,
    preload: int = 4000,
) -> Report:
    """Run the storm against a fresh ``unmask serve`` (``server``: the command before ``serve``; default this
    Python's ``-m unmask.lsp.cli``) and return what it measured."""
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if log else (lambda *a: None)
    log_file = Path(tempfile.mkdtemp(prefix="unmask-soak-")) / "lsp.log"
    cmd = [*(server or [sys.executable, "-m", "unmask.lsp.cli"]), "serve", "--log-file", str(log_file)]
    if model:
        cmd += ["--model", model]
    w = Wire(cmd)
    pid = w.proc.pid
    rep = Report(seconds=seconds, rate=rate)
    caps = {"textDocument": {"inlineCompletion": {}}}
    options = {"streamDrafts": True, "minConfidence": 0}
    w.call(
        "initialize",
        {"processId": os.getpid(), "rootUri": None, "capabilities": caps, "initializationOptions": options},
        180,
    )
    w.notify("initialized", {})
    typist = Typist(source.read_text(encoding="utf-8"), seed, preload)
    w.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": typist.text}},
    )

    def ask(position: dict, invoked: bool = False) -> tuple[str, str]:
        ctx = {"triggerKind": 1 if invoked else 2}
        c = w.request(
            "textDocument/inlineCompletion", {"textDocument": {"uri": URI}, "position": position, "context": ctx}
        )
        e = w.request(
            "textDocument/copilotInlineEdit",
            {"textDocument": {"uri": URI, "version": typist.version}, "position": position},
        )
        return c, e

    latencies: list[float] = []  # ms, answered completions
    sent: dict[str, dict] = {}  # request id -> what it was asked for (kind, version, text, position, time)
    pace = random.Random(seed + 1)
    peak = {"rss": 0.0, "threads": 0}

    def type_for(duration: float) -> tuple[int, float]:
        """Type at ``rate`` for ``duration`` seconds, with requests on every keystroke: (keystrokes, seconds)."""
        open_completion: str | None = None
        t0 = next_report = time.perf_counter()
        keys = 0
        while (now := time.perf_counter()) - t0 < duration:
            changes, pos = typist.key()
            w.notify(
                "textDocument/didChange",
                {"textDocument": {"uri": URI, "version": typist.version}, "contentChanges": changes},
            )
            if open_completion is not None and open_completion not in w.answers and pace.random() < cancel:
                w.notify("$/cancelRequest", {"id": open_completion})
                rep.cancels_sent += 1
            c, e = ask(pos)
            asked = {"version": typist.version, "text": typist.text, "position": pos, "t": time.perf_counter()}
            sent[c], sent[e] = {**asked, "kind": "completion"}, {**asked, "kind": "next-edit"}
            open_completion = c
            keys += 1
            if keys % 15 == 0:
                peak["rss"], peak["threads"] = max(peak["rss"], rss_mb(pid)), max(peak["threads"], n_threads(pid))
                for rid in [r for r in sent if r in w.answers]:  # check answers as they come
                    _judge(rep, sent.pop(rid), w.answers[rid], latencies)
            if now >= next_report:
                next_report += 30
                say(f"  {now - t0:.0f} s: {keys} keys, RSS {rss_mb(pid):.1f} MB, {n_threads(pid)} threads")
            if pause_every and pace.random() < 1 / pause_every:
                time.sleep(pause_ms / 1000)  # a pause; the schedule is kept, so a burst follows
            time.sleep(max(0.0, t0 + keys / rate - time.perf_counter()))
        return keys, time.perf_counter() - t0

    # warm-up: the first answer, then a short storm, so that the baseline has the model's bounded caches
    # (the context KV cache: 4 contexts of up to ~24 MB each) and the runtime's memory arena filled
    for _ in range(40):
        changes, pos = typist.key()
        w.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": URI, "version": typist.version}, "contentChanges": changes},
        )
    c, e = ask(pos, invoked=True)
    if w.wait(c, 180) is None or w.wait(e, 60) is None:
        raise TimeoutError(f"the warm-up requests got no answer: {w.tail()}")
    rep.rss_mb["first_answer"] = round(rss_mb(pid), 1)
    if warmup:
        say(f"first answer: RSS {rep.rss_mb['first_answer']} MB; warming up {warmup:.0f} s")
        type_for(warmup)
    settle(w, pid, n_threads(pid))  # measured as after the storm: the warm-up's work done, then idle
    time.sleep(IDLE_S)
    base = w.call("unmask/stats", {})["result"]
    rep.rss_mb["baseline"] = round(rss_mb(pid), 1)
    rep.threads["baseline"] = n_threads(pid)
    rep.py_threads["baseline"] = base["threads"]
    rep.cache_mb["baseline"] = base.get("contextCacheMb", 0.0)
    say(
        f"baseline: RSS {rep.rss_mb['baseline']} MB (context caches {rep.cache_mb['baseline']} MB), "
        f"{rep.threads['baseline']} threads; "
        f"storming {seconds:.0f} s at {rate}/s"
    )
    peak["rss"], peak["threads"] = rep.rss_mb["baseline"], rep.threads["baseline"]
    rep.keystrokes, took = type_for(seconds)
    rep.achieved_rate = round(rep.keystrokes / took, 1)

    # the last keystroke: its requests must be answered with a result
    changes, pos = typist.key()
    w.notify(
        "textDocument/didChange", {"textDocument": {"uri": URI, "version": typist.version}, "contentChanges": changes}
    )
    c, e = ask(pos)
    last = {"version": typist.version, "text": typist.text, "position": pos, "t": time.perf_counter()}
    for rid, kind in ((c, "completion"), (e, "next-edit")):
        got = w.wait(rid, 60)
        outcome = "no answer" if got is None else "result" if "result" in got else f"error {got['error']}"
        if kind == "completion":
            rep.last_completion = outcome
        else:
            rep.last_next_edit = outcome
        sent[rid] = {**last, "kind": kind}
    for rid in list(sent):
        w.wait(rid, 10)
        if rid in w.answers:
            _judge(rep, sent.pop(rid), w.answers[rid], latencies)
    rep.unanswered = len(sent)
    rep.completion_ms = percentiles(latencies)
    rep.drafts = w.drafts

    # leftovers, once things settle
    settle(w, pid, rep.threads["baseline"])
    c0, t_idle = cpu_s(pid), time.perf_counter()
    time.sleep(IDLE_S)
    rep.idle_cpu_pct = round(100 * (cpu_s(pid) - c0) / (time.perf_counter() - t_idle), 1)
    after = w.call("unmask/stats", {})["result"]
    rep.alive = w.proc.poll() is None
    rep.rss_mb.update(peak=round(max(peak["rss"], rss_mb(pid)), 1), after=round(rss_mb(pid), 1))
    rep.threads.update(peak=peak["threads"], after=n_threads(pid))
    rep.py_threads["after"] = after["threads"]
    rep.cache_mb["after"] = after.get("contextCacheMb", 0.0)
    rep.memory_releases = after.get("memoryReleases", 0)
    rep.open_after = {"openRequests": after["openRequests"], "modelJobs": after["modelJobs"]}
    rep.completions["modelCalls"] = after["modelCalls"] - base["modelCalls"]
    rep.next_edits["modelCalls"] = after["nextEditModelCalls"] - base["nextEditModelCalls"]

    t = time.perf_counter()
    try:
        w.call("shutdown", None, 10)
        w.notify("exit", None)
        rep.exit_code = w.proc.wait(10)
        rep.exit_s = round(time.perf_counter() - t, 2)
    except (TimeoutError, OSError, subprocess.TimeoutExpired):
        w.proc.kill()
        w.proc.wait(10)
    time.sleep(0.2)
    logged = log_file.read_text(encoding="utf-8", errors="replace") if log_file.exists() else ""
    rep.log_problems = [ln[:300] for ln in (logged + b"".join(w.stderr).decode("utf-8", "replace")).splitlines()
                        if "Traceback" in ln or " ERROR " in ln or " CRITICAL " in ln] + w.log_errors  # fmt: skip
    return rep


def settle(w: Wire, pid: int, threads: int, timeout: float = 15.0) -> None:
    """Wait (at most ``timeout`` s) until no request or model job is open and the threads are back to ``threads``."""
    deadline = time.monotonic() + timeout
    while True:
        s = w.call("unmask/stats", {})["result"]
        if not s["openRequests"] and not s["modelJobs"] and n_threads(pid) <= threads:
            return
        if time.monotonic() > deadline:
            return
        time.sleep(0.5)


def _judge(rep: Report, asked: dict, answer: tuple[dict, float], latencies: list[float]) -> None:
    """Count one answer and check it against what was asked."""
    msg, received = answer
    counts = rep.completions if asked["kind"] == "completion" else rep.next_edits
    if "error" in msg:
        code = msg["error"].get("code")
        key = {CONTENT_MODIFIED: "contentModified", REQUEST_CANCELLED: "cancelled"}.get(code)
        if key is None:
            rep.bad_errors.append(f"{asked['kind']} v{asked['version']}: {msg['error']}")
            key = "otherError"
        counts[key] = counts.get(key, 0) + 1
        return
    if asked["kind"] == "completion":
        why = check_completion(msg, asked)
        items = msg["result"]["items"] if isinstance(msg["result"], dict) else msg["result"] or []
        counts["items" if items else "empty"] = counts.get("items" if items else "empty", 0) + 1
        latencies.append((received - asked["t"]) * 1e3)
    else:
        why = check_next_edit(msg, asked)
        key = "edits" if msg["result"].get("edits") else "none"
        counts[key] = counts.get(key, 0) + 1
    if why:
        rep.bad_answers.append(why)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=30.0, help="keystrokes per second")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--source", type=Path, default=ROOT / "lsp" / "completer.py", help="the file to type")
    ap.add_argument("--pause-every", type=int, default=45, help="a pause after 1 keystroke in N (0: none)")
    ap.add_argument("--pause-ms", type=float, default=600.0, help="length of a pause (the keystrokes catch up)")
    ap.add_argument("--cancel", type=float, default=0.5, help="share of open completions cancelled")
    ap.add_argument("--preload", type=int, default=4000, help="characters of the source in the document at open")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds of storm before the baseline")
    ap.add_argument("--model", help="model directory (default: the shipped model)")
    ap.add_argument("--max-rss-growth", type=float, default=50.0, help="MB")
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args()
    rep = storm(
        args.minutes * 60,
        args.rate,
        args.seed,
        args.source,
        args.model,
        True,
        args.pause_every,
        args.pause_ms,
        args.cancel,
        args.warmup,
        None,
        args.preload,
    )
    report = asdict(rep)
    fails = rep.failures(args.max_rss_growth)
    report["failures"] = fails
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print("PASS" if not fails else "FAIL:\n  " + "\n  ".join(fails), file=sys.stderr)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
