"""Helpers for the browser tests of the web page: Debian's Chromium driven by Playwright.

The Chromium that Playwright downloads is not reachable here, so the tests drive the system
one (``/usr/bin/chromium``, ``apt-get install chromium``; ``$FACEDB_CHROMIUM`` overrides the
path). Every page the tests open is watched: a Content-Security-Policy violation, an uncaught
script error or a request to anywhere but the facedb server fails the test. Object URLs are
counted, so that a test can check the page lets go of photos and thumbnails.
"""
from __future__ import annotations

import base64
import importlib.util
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("FACEDB_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: When set, the tests also write their screenshots (small PNGs) to this folder: see
#: ``scripts/web_screenshots.py``, which makes ``docs/web/*.png``.
SCREENSHOTS_ENV = "FACEDB_WEB_SCREENSHOTS"

#: Runs in every page before its own scripts: counts live object URLs, records CSP violations.
WATCH_SCRIPT = """
(() => {
  const live = new Set();
  const create = URL.createObjectURL.bind(URL), revoke = URL.revokeObjectURL.bind(URL);
  URL.createObjectURL = (o) => { const u = create(o); live.add(u); return u; };
  URL.revokeObjectURL = (u) => { live.delete(u); revoke(u); };
  window.__facedbTest = { live, csp: [] };
  document.addEventListener("securitypolicyviolation",
    (e) => window.__facedbTest.csp.push(`${e.violatedDirective} ${e.blockedURI}`));
})();
"""


def skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install '.[test]'): browser tests skipped"
    if not CHROMIUM.exists():
        return (f"{CHROMIUM} not found: browser tests skipped (install Debian's Chromium: "
                "apt-get install -y chromium; .ci/run does)")
    return None


def launch(playwright: Any) -> Any:
    """Debian's Chromium, headless, in a fresh temporary profile (Playwright makes one per launch)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)


@dataclass
class Watch:
    """What one page did that it must not: script errors and requests to other origins."""

    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("request", self._request)

    def _request(self, request: Any) -> None:
        url = request.url
        if not (url.startswith(self.origin + "/") or url.startswith("blob:" + self.origin + "/")
                or url.startswith("data:")):
            self.foreign.append(url)

    def check(self, page: Any) -> None:
        csp = page.evaluate("window.__facedbTest ? window.__facedbTest.csp : []") if not page.is_closed() else []
        assert not self.errors, f"script errors on the page: {self.errors}"
        assert not self.foreign, f"the page asked for something outside the server: {self.foreign}"
        assert not csp, f"Content-Security-Policy violations: {csp}"


def live_object_urls(page: Any) -> int:
    return int(page.evaluate("window.__facedbTest.live.size"))


def drop_file(page: Any, selector: str, path: Path, mime: str = "image/jpeg") -> None:
    """Drop ``path`` on ``selector`` the way a file dragged from the desktop arrives."""
    data = base64.b64encode(path.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """([name, b64, mime]) => {
             const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
             const dt = new DataTransfer();
             dt.items.add(new File([bytes], name, { type: mime }));
             return dt;
           }""", [path.name, data, mime])
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event(selector, event, {"dataTransfer": transfer})


def screenshot(page: Any, name: str, full_page: bool = False) -> Path | None:
    """Save a small PNG of the page as ``$FACEDB_WEB_SCREENSHOTS/<name>.png`` when that is set."""
    out = os.environ.get(SCREENSHOTS_ENV)
    if not out:
        return None
    from PIL import Image

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    png = page.screenshot(full_page=full_page, animations="disabled", caret="hide")
    img = Image.open(io.BytesIO(png)).convert("RGB")
    # 256 colours: a UI screenshot stays legible and the file small.
    small = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path = folder / f"{name}.png"
    small.save(path, optimize=True)
    return path
