"""The served history, as a person sees it: headless Chromium loads the sessions page, clicks
through to a transcript and runs a search, and the test reads what the page shows.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it when missing); it is driven
over the Chrome DevTools Protocol with a few lines of ``websocket-client``, so nothing downloads
a browser of its own. Without Chromium (and no root to install it) the test is skipped.

``PDFFILLR_SCREENSHOT=docs/transcript.png`` also saves the transcript's screenshot there: the
picture in the README is made this way.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from _web_sample import KYC, Q4, Q4_ENTRIES, fill, serving

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
#: What this machine's Chromium needs to run headless in a container, quietly and offline.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,860",
    "--remote-debugging-port=0",
]
TIMEOUT_S = 15.0

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run does this)",
)


class Browser:
    """One page of a headless Chromium, driven over the DevTools protocol."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == self._next_id:
                assert "error" not in message, message
                return dict(message.get("result", {}))
            self._events.append(message)

    def wait_for(self, event: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            for i, message in enumerate(self._events):
                if message.get("method") == event:
                    del self._events[: i + 1]
                    return
            self._events.append(json.loads(self._ws.recv()))
        raise AssertionError(f"no {event} within {TIMEOUT_S} s")

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self._events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element, then the page it opens."""
        box = self.js(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        self._events.clear()
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )
        self.wait_for("Page.loadEventFired")

    def type(self, selector: str, text: str) -> None:
        self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def press_enter(self) -> None:
        self._events.clear()
        for kind in ("keyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                type=kind,
                key="Enter",
                code="Enter",
                windowsVirtualKeyCode=13,
                text="\r" if kind == "keyDown" else "",
            )
        self.wait_for("Page.loadEventFired")

    @property
    def text(self) -> str:
        return str(self.js("document.body.innerText"))

    @property
    def location(self) -> str:
        return str(self.js("location.href"))

    def table(self) -> list[dict[str, str]]:
        """The rows of the page's results table, as the person reads them."""
        return list(
            self.js(
                "(() => { const t = document.querySelector('table.rows-and-columns');"
                " const heads = [...t.querySelectorAll('thead th')].map(h => h.innerText);"
                " return [...t.querySelectorAll('tbody tr')].map(tr => Object.fromEntries("
                "[...tr.querySelectorAll('td')].map((td, i) => [heads[i], td.innerText]))); })()"
            )
        )

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"  # fresh: no state from another run
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    ws = None
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + TIMEOUT_S
        endpoint = None
        while endpoint is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            endpoint = found.group(1) if found else None
        assert endpoint is not None, "Chromium did not start its DevTools endpoint"
        port = endpoint.split(":")[2].split("/")[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        ws = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=TIMEOUT_S, suppress_origin=True
        )
        b = Browser(ws)
        b.call("Page.enable")
        yield b
    finally:
        if ws is not None:
            ws.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    path = tmp_path / "history.db"
    fill(path)
    with serving(path) as running:
        yield running


def test_a_person_browses_sessions_reads_a_transcript_and_searches(
    served: tuple[str, Any], browser: Browser, tmp_path: Path
) -> None:
    url, _ = served
    root = url.split("/history/")[0]

    # The home page is the sessions page: titles, status and counts, newest first.
    browser.goto(root + "/")
    assert browser.location == url
    sessions = browser.table()
    assert [s["title"] for s in sessions] == ["KYC refresh", "Untitled", "Q4 Contract Review"]
    q4 = sessions[2]
    assert (q4["status"], q4["entries"], q4["messages"], q4["documents"]) == (
        "ended",
        "6",
        "4",
        "1",
    )
    assert sessions[0]["on this machine"] == "open"

    # Clicking a title opens that session's transcript: every entry, in order, under its title.
    browser.click(f'a[href$="session_id={Q4}"]')
    assert f"session_id={Q4}" in browser.location
    page = browser.text
    assert "Q4 Contract Review" in page and "6 entries" in page
    transcript = browser.table()
    assert [e["content"] for e in transcript] == [e["content"] for e in Q4_ENTRIES]
    assert [e["type"] for e in transcript] == [e["type"] for e in Q4_ENTRIES]
    shot = Path(os.environ.get("PDFFILLR_SCREENSHOT") or tmp_path / "transcript.png")
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

    # Back to all sessions, and a search typed into the box: each hit shows its session's title.
    browser.click('a[href="/history/all_sessions"]')
    browser.type("#pdffillr-q", "passport")
    browser.press_enter()
    assert "/history/search?q=passport" in browser.location
    hits = browser.table()
    assert [(h["title"], h["match"]) for h in hits] == [("KYC refresh", "[Passport] copy.")]
    # ... and links back to the session.
    browser.click(f'table a[href$="session_id={KYC}"]')
    assert "KYC refresh" in browser.text
    assert [e["content"] for e in browser.table()] == ["List missing KYC files.", "Passport copy."]
