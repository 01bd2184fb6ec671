"""The committed leaderboard pages in a real browser: headless Chromium, driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: JSON messages ended by a NUL byte on file descriptors 3 and 4, no extra package).

Each page must render its table, load every image (``naturalWidth > 0``) and log no console error; a screenshot of each
is written next to the test's temporary folder (look at them when the pages change). Skips, naming why, when no
Chromium is installed (``.ci/run`` installs Debian's ``chromium``)."""
from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

LEADERBOARD = Path(__file__).resolve().parent.parent / "leaderboard"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--remote-debugging-pipe")
TIMEOUT_S = 60
WIDTH, HEIGHT = 1400, 1000
# What the page reports about itself once loaded.
INSPECT = """JSON.stringify({
  tables: document.querySelectorAll("table").length,
  rows: document.querySelectorAll("tbody tr").length,
  images: Array.from(document.images).map(i => ({src: i.getAttribute("src"), complete: i.complete,
                                                  width: i.naturalWidth})),
  figureTop: document.querySelector("figure") ? document.querySelector("figure").offsetTop : null})"""


def _browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    pytest.skip(f"no Chromium on PATH (looked for {', '.join(BROWSERS)}); `apt-get install chromium` "
                "(.ci/run does it when it can)")


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe; collects console errors as they come."""

    def __init__(self, browser: str, profile: Path):
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        self.process = subprocess.Popen([browser, *FLAGS, f"--user-data-dir={profile}",
                                         f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        close_fds=False, preexec_fn=_map_pipe_fds(commands_read, replies_write))
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self.errors: list[str] = []
        self.events: list[dict] = []

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def wait_for(self, event: str) -> dict:
        while True:
            if (message := self._receive()).get("method") == event:
                return message

    def _receive(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its debugging pipe: "
                                   + self.process.stderr.read().decode(errors="replace")[-2000:])
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        self._note_error(message)
        return message

    def _note_error(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.errors.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"{params['entry'].get('url', '')}: {params['entry']['text']}")

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)
        self.process.stderr.close()


def _map_pipe_fds(commands_read: int, replies_write: int):
    """In the child: Chromium reads commands on fd 3 and writes replies on fd 4. Python's own descriptors are not
    inheritable, so with ``close_fds=False`` only these two (and stdio) reach the browser."""

    def remap() -> None:
        reads, writes = (fcntl.fcntl(fd, fcntl.F_DUPFD, 5) for fd in (commands_read, replies_write))
        os.dup2(reads, 3)
        os.dup2(writes, 4)
        os.close(reads)
        os.close(writes)

    return remap


@pytest.fixture
def browser(tmp_path):
    client = DevTools(_browser(), tmp_path / "profile")
    yield client
    client.close()


def _open(client: DevTools, page: Path, screenshot: Path) -> dict:
    """Load ``page`` in a fresh tab, wait for its load event, save a screenshot of the top and, when the page has
    figures, one from its first figure down (``<screenshot stem>-figures.png``); returns what INSPECT reports."""
    target = client.send("Target.createTarget", url="about:blank")["targetId"]
    session = client.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        client.send(f"{domain}.enable", session)
    client.send("Emulation.setDeviceMetricsOverride", session, width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                mobile=False)
    client.send("Page.navigate", session, url=page.resolve().as_uri())
    client.wait_for("Page.loadEventFired")
    facts = json.loads(client.send("Runtime.evaluate", session, expression=INSPECT, returnByValue=True)
                       ["result"]["value"])
    shot = client.send("Page.captureScreenshot", session, format="png")["data"]
    screenshot.write_bytes(base64.b64decode(shot))
    if facts["figureTop"] is not None:
        clip = {"x": 0, "y": facts["figureTop"], "width": WIDTH, "height": HEIGHT, "scale": 1}
        shot = client.send("Page.captureScreenshot", session, format="png", clip=clip, captureBeyondViewport=True)
        screenshot.with_name(f"{screenshot.stem}-figures.png").write_bytes(base64.b64decode(shot["data"]))
    return facts


@pytest.mark.parametrize("name", ["leaderboard.html", "report.html"])
def test_committed_page_renders_in_chromium(browser, tmp_path, name):
    facts = _open(browser, LEADERBOARD / name, tmp_path / f"{name}.png")
    assert facts["tables"] >= 4 and facts["rows"] > 50, "the tables are there"
    if name == "report.html":
        figures = sorted(p.name for p in (LEADERBOARD / "figures").glob("*.png"))
        assert sorted(Path(image["src"]).name for image in facts["images"]) == figures
    broken = [image["src"] for image in facts["images"] if not (image["complete"] and image["width"] > 0)]
    assert broken == [], "every image loads"
    assert browser.errors == [], "no console error"
    shots = [tmp_path / f"{name}.png"] + ([tmp_path / f"{name}-figures.png"] if name == "report.html" else [])
    for path in shots:
        with Image.open(io.BytesIO(path.read_bytes())) as shot:
            pixels = np.asarray(shot.convert("L"), dtype=float)
        assert shot.size == (WIDTH, HEIGHT) and pixels.std() > 10, f"{path.name}: a drawn page, not a blank one"


def test_a_missing_image_is_caught(browser, tmp_path):
    """The checks can fail: a page whose image is absent reports it broken and logs the failed load."""
    page = tmp_path / "page.html"
    page.write_text('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>t</title></head><body>'
                    '<table><tbody><tr><td>1</td></tr></tbody></table><img alt="gone" src="figures/gone.png">'
                    "</body></html>")
    facts = _open(browser, page, tmp_path / "page.png")
    assert facts["tables"] == 1 and facts["images"] == [{"src": "figures/gone.png", "complete": True, "width": 0}]
    assert any("gone.png" in error for error in browser.errors)
