"""Every page of the built site opens in a real browser without an error.

    python -m pytest -m docs tests/test_site_browser.py

Serves the site on 127.0.0.1, opens each page in headless Chromium (Debian's ``chromium``, driven
over the DevTools protocol with ``websocket-client``), and asserts: no console errors or uncaught
exceptions, no failed requests, every internal link answers 200 (and its ``#fragment`` exists),
every image loaded. Then the layout, at a 1400 px desktop window and a 390 px phone (2x pixels):
nothing is cut off at the right edge. Every code or output block and every table either fits its
box (``scrollWidth <= clientWidth``), or wraps, or scrolls with the visible cue that
``docs/stylesheets/extra.css`` draws (a shadow at the edge with more content, marked by
``--shapekit-scroll-cue``); no element sticks out of the content column; the page never scrolls
sideways; and no raster image is shown larger than its pixels (at the device's pixel ratio).
Screenshots go to ``<pytest tmp>/site-screenshots`` (or ``$SHAPEKIT_SCREENSHOTS``).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from base64 import b64decode
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest
from test_docs import build_site

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic", "--remote-debugging-port=0", "--window-size=1400,900"]
# (width, height, device pixel ratio, mobile): a desktop window and a phone
DESKTOP = (1400, 900, 1, False)
PHONE = (390, 844, 2, True)

pytestmark = [
    pytest.mark.docs,
    pytest.mark.skipif(
        importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
        reason="the docs extra is not installed; fix: pip install -e '.[docs]'",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("websocket") is None,
        reason="websocket-client is not installed; fix: pip install -e '.[docs]'",
    ),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium on PATH; fix: apt-get update && apt-get install -y chromium",
    ),
]


class Browser:
    """Headless Chromium over the DevTools protocol: one page, its events collected per visit."""

    def __init__(self) -> None:
        import websocket

        self.profile = tempfile.mkdtemp(prefix="shapekit-chromium-")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}",
                                      "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not start (exit {self.proc.poll()})")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=60,
                                              suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        attached = self.call("Target.attachToTarget", targetId=target, flatten=True)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.resize(DESKTOP)

    def resize(self, screen: tuple[int, int, int, bool]) -> None:
        """Emulate a screen: ``(width, height, device pixel ratio, mobile)``."""
        width, height, ratio, mobile = screen
        self.width = width
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=ratio, mobile=mobile)

    def call(self, method: str, session: bool = False, **params: object) -> dict:
        """Send one command and wait for its reply; events that arrive meanwhile are kept."""
        message: dict = {"id": next(self.ids), "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout}s")
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def visit(self, url: str) -> list[str]:
        """Open ``url``, wait until it and its images have loaded; the problems it reported."""
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")
        self.evaluate("Promise.all([...document.images].map(i => i.complete ? 0 : new Promise("
                      "r => { i.onload = i.onerror = r; })))")
        time.sleep(0.3)  # let late console messages (search worker) arrive
        self.call("Runtime.evaluate", session=True, expression="0")
        problems = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                problems.append("console error: " + " ".join(
                    str(arg.get("value", arg.get("description", ""))) for arg in params["args"]))
            elif method == "Runtime.exceptionThrown":
                problems.append(f"uncaught: {params['exceptionDetails'].get('text')} "
                                f"{params['exceptionDetails'].get('exception', {})}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                problems.append(f"log error: {params['entry'].get('text')} "
                                f"{params['entry'].get('url', '')}")
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                problems.append(f"request failed: {params.get('errorText')}")
        return problems

    def screenshot(self, path: Path) -> None:
        height = min(int(self.evaluate("document.documentElement.scrollHeight")), 6000)
        shot = self.call("Page.captureScreenshot", session=True, format="png",
                         captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1})
        path.write_bytes(b64decode(shot["data"]))

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def base_path() -> str:
    """The path the site is published under (``site_url`` in mkdocs.yml: ``/en/latest/``); the
    404 page links its assets absolutely, so the test serves the site there too."""
    config = (Path(__file__).resolve().parents[1] / "mkdocs.yml").read_text(encoding="utf-8")
    match = re.search(r"^site_url:\s*(\S+)", config, re.M)
    return urlparse(match.group(1)).path if match else "/"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site under ``base_path()``; anything outside it is a 404."""

    prefix = "/"

    def translate_path(self, path: str) -> str:
        if not path.startswith(self.prefix):
            return str(Path(self.directory) / "does-not-exist")
        return super().translate_path("/" + path[len(self.prefix):])

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    site = tmp_path_factory.getbasetemp() / "site"
    proc = build_site(site)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    prefix = base_path()
    handler = functools.partial(type("Handler", (_Handler,), {"prefix": prefix}),
                                directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{prefix}", site
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = Browser()
    try:
        yield chromium
    finally:
        chromium.close()


def pages(site: Path) -> list[str]:
    """Every page of the site, as URL paths (``lessons/01_indexing/``)."""
    found = []
    for page in sorted(site.rglob("*.html")):
        relative = page.relative_to(site).as_posix()
        found.append(relative.removesuffix("index.html"))
    return found


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


# What is cut off on the page shown: one line per problem. A block or table that overflows its box
# must wrap or scroll with the cue; the cue is the style extra.css sets (overflow-x auto, the
# scroll-shadow gradients and --shapekit-scroll-cue), read back from the computed style.
CUT_OFF = r"""(() => {
  const problems = [], scrolled = [];
  // The content area (on a phone the theme lets code blocks bleed to the screen's edges).
  const content = document.querySelector(".md-content");
  const right = Math.min(window.innerWidth,
                         content ? content.getBoundingClientRect().right : window.innerWidth);
  const name = el => `${el.tagName.toLowerCase()} "` +
    `${el.textContent.trim().replace(/\s+/g, " ").slice(0, 50)}"`;
  const cued = el => {
    const style = getComputedStyle(el);
    return style.getPropertyValue("--shapekit-scroll-cue").trim() === "1"
      && ["auto", "scroll"].includes(style.overflowX)
      && style.backgroundImage.includes("radial-gradient");
  };
  for (const el of document.querySelectorAll(
      ".md-content pre > code, .md-content table, .md-content .md-typeset__scrollwrap")) {
    if (!el.getClientRects().length) continue;  // not rendered (a closed <details>)
    const over = el.scrollWidth - el.clientWidth;
    if (over > 1) {
      if (cued(el)) scrolled.push(name(el));
      else problems.push(`${name(el)} overflows by ${over}px with no scroll cue`);
    }
    const box = el.getBoundingClientRect();
    if (box.right > right + 1)
      problems.push(`${name(el)} sticks out of the column by ${Math.round(box.right - right)}px`);
  }
  const page = document.documentElement;
  if (page.scrollWidth > page.clientWidth + 1)
    problems.push(`the page scrolls sideways by ${page.scrollWidth - page.clientWidth}px`);
  for (const img of document.querySelectorAll(".md-content img")) {
    const src = img.currentSrc || img.src;
    if (/\.svg([?#]|$)|^data:image\/svg/.test(src) || !img.naturalWidth) continue;
    const shown = img.getBoundingClientRect().width * devicePixelRatio;
    if (img.naturalWidth + 1 < shown)
      problems.push(`image ${src.slice(-60)} is ${img.naturalWidth}px wide, shown at ` +
                    `${Math.round(shown)} device px: blurred`);
  }
  return {problems, scrolled};
})()"""


def cut_off(browser: Browser) -> tuple[list[str], list[str]]:
    """(what is cut off on the page shown, the blocks that scroll with a cue)."""
    found = browser.evaluate(CUT_OFF)
    return found["problems"], found["scrolled"]


def test_every_page_opens_cleanly_in_chromium(
    served: tuple[str, Path], browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base, site = served
    shots = Path(os.environ.get("SHAPEKIT_SCREENSHOTS")
                 or tmp_path_factory.getbasetemp() / "site-screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    problems: dict[str, list[str]] = {}
    links: dict[str, set[str]] = {}
    visited = pages(site)
    assert "lessons/" in visited and "api/" in visited
    for path in visited:
        url = base + path
        found = browser.visit(url)
        images = browser.evaluate(
            "[...document.images].map(i => [i.currentSrc || i.src, i.naturalWidth])")
        found += [f"image not loaded: {src}" for src, width in images if not width]
        hrefs = browser.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")
        for href in hrefs:
            if urlparse(href).netloc == urlparse(base).netloc:
                links.setdefault(href, set()).add(path)
        found += cut_off(browser)[0]
        if found:
            problems[path] = found
        browser.screenshot(shots / ((path.strip("/").replace("/", "_") or "home") + ".png"))
    assert not problems, f"pages with problems at 1400 px (screenshots in {shots}): {problems}"

    broken = {}
    for href, sources in sorted(links.items()):
        target, fragment = urldefrag(href)
        code = status(target)
        if code != 200:
            broken[href] = f"HTTP {code} (linked from {sorted(sources)[:3]})"
        elif fragment and target.endswith("/"):
            page = urlparse(target).path[len(urlparse(base).path):]
            body = (site / page / "index.html").read_text("utf-8")
            if not re.search(rf'\bid="{re.escape(fragment)}"', body):
                broken[href] = f"no #{fragment} on the page (linked from {sorted(sources)[:3]})"
    assert not broken, f"broken internal links: {broken}"
    assert len(list(shots.glob("*.png"))) == len(visited)


def test_nothing_is_cut_off_on_a_phone(
    served: tuple[str, Path], browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same pages at 390 px, 2x pixels: what does not fit wraps or scrolls with its cue."""
    base, site = served
    shots = Path(os.environ.get("SHAPEKIT_SCREENSHOTS")
                 or tmp_path_factory.getbasetemp() / "site-screenshots") / "phone"
    shots.mkdir(parents=True, exist_ok=True)
    browser.resize(PHONE)
    try:
        problems = {}
        for path in pages(site):
            browser.visit(base + path)
            found = cut_off(browser)[0]
            if found:
                problems[path] = found
            browser.screenshot(shots / ((path.strip("/").replace("/", "_") or "home") + ".png"))
    finally:
        browser.resize(DESKTOP)
    assert not problems, f"pages with problems at 390 px (screenshots in {shots}): {problems}"
