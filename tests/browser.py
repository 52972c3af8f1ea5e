"""A page opened in Debian's headless Chromium, driven over the DevTools
protocol on --remote-debugging-pipe (file descriptors 3 and 4, messages
ended by NUL): no websocket, no extra package. What a test gets back: the
rendered DOM, what the console said (console.* calls, log entries,
uncaught exceptions) and every URL the page requested."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = shutil.which("chromium")


@dataclass
class PageResult:
    dom: str  # document.documentElement.outerHTML once the wait condition held
    ready: bool  # the wait condition held before the timeout
    console: list[tuple[str, str]] = field(default_factory=list)  # (level, text)
    requests: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        return [text for level, text in self.console if level in ("error", "exception", "assert")]


class _Pipe:
    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int):
        self.proc, self.to_browser, self.from_browser = proc, to_browser, from_browser
        self.buffer, self.next_id, self.events = b"", 0, []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium over the DevTools pipe")
            chunk = os.read(self.from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium closed the DevTools pipe (exit {self.proc.poll()})")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)


def _console_entries(events: list[dict]) -> list[tuple[str, str]]:
    out = []
    for ev in events:
        params = ev.get("params", {})
        if ev.get("method") == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            out.append((params.get("type", "log"), text))
        elif ev.get("method") == "Log.entryAdded":
            entry = params.get("entry", {})
            out.append((entry.get("level", "info"), f"{entry.get('text', '')} {entry.get('url', '')}".strip()))
        elif ev.get("method") == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            out.append(("exception", details.get("exception", {}).get("description") or details.get("text", "")))
    return out


def _onto_3_and_4(to_browser: int, from_browser: int):
    """For the child: the pipe ends onto fds 3 and 4, by way of fds above 10 so neither clobbers the other."""
    def setup():
        high_in, high_out = fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10), fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10)
        os.dup2(high_in, 3)
        os.dup2(high_out, 4)
    return setup


def open_page(path: Path, ready_js: str, timeout: float = 60.0) -> PageResult:
    """Load ``path`` as a file:// URL and wait until the JavaScript expression ``ready_js`` is true."""
    assert CHROMIUM, "chromium is not installed"
    to_r, to_w = os.pipe()  # our writes -> chromium's fd 3
    from_r, from_w = os.pipe()  # chromium's fd 4 -> our reads
    with tempfile.TemporaryDirectory(prefix="kstress-chromium-") as profile:
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                pass_fds=(3, 4), preexec_fn=_onto_3_and_4(to_r, from_w))
        os.close(to_r)
        os.close(from_w)
        pipe = _Pipe(proc, to_w, from_r)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Network", "Page"):
                pipe.call(f"{domain}.enable", session=session)
            pipe.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
            deadline, ready = time.monotonic() + timeout, False
            while not ready and time.monotonic() < deadline:
                ready = pipe.call("Runtime.evaluate", {"expression": f"Boolean({ready_js})", "returnByValue": True},
                                  session=session)["result"].get("value") is True
                if not ready:
                    time.sleep(0.25)
            time.sleep(0.5)  # let late errors (a plot's second frame) arrive
            dom = pipe.call("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                                 "returnByValue": True}, session=session)["result"]["value"]
            requests = [ev["params"]["request"]["url"] for ev in pipe.events
                        if ev.get("method") == "Network.requestWillBeSent"]
            return PageResult(dom, ready, _console_entries(pipe.events), requests)
        finally:
            try:
                pipe.call("Browser.close", timeout=5)
            except (RuntimeError, TimeoutError, OSError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            os.close(to_w)
            os.close(from_r)
