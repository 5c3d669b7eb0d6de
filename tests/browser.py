"""Headless Chromium for the tests: how a page really renders (pictures loaded, visible text, sizes), a screenshot.

No driver package: a harness page loads the page in an iframe, a script there writes a JSON verdict into the
harness's own DOM, and ``chromium --dump-dom`` prints it. The browser is ``$DCL_CSTP_BROWSER`` or the first of
chromium, chromium-browser, google-chrome on PATH (``make test`` installs Debian's chromium where it can).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--disable-gpu", "--no-sandbox", "--allow-file-access-from-files", "--hide-scrollbars",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio"]
VIEW_WIDTH = 1280  # the window (and the iframe) the page is laid out in
READABLE_PX = 300  # every picture is shown at least this wide (or tall)

# the iframe's load event waits for the page's pictures; then the page is measured
_HARNESS = """<!doctype html><html><body><pre id="verdict">pending</pre>
<iframe id="page" src="{src}" style="width:{width}px;height:1000px;border:0"></iframe>
<script>
document.getElementById("page").addEventListener("load", () => {{
  let verdict;
  try {{
    const d = document.getElementById("page").contentDocument, root = d.documentElement;
    verdict = {{
      images: [...d.images].map(i => ({{alt: i.alt, complete: i.complete, natural_width: i.naturalWidth,
                                       width: i.clientWidth, height: i.clientHeight}})),
      text: d.body.innerText, content_width: d.body.clientWidth,
      scroll_width: root.scrollWidth, client_width: root.clientWidth, height: root.scrollHeight,
    }};
  }} catch (e) {{ verdict = {{error: String(e)}}; }}
  document.getElementById("verdict").textContent = JSON.stringify(verdict);
}});
</script></body></html>"""


def find_browser() -> str | None:
    """The browser's path, or None."""
    named = os.environ.get("DCL_CSTP_BROWSER")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def require_browser() -> str:
    """The browser's path; skips the test where there is none."""
    browser = find_browser()
    if browser is None:
        pytest.skip("no headless browser: install Debian's `chromium` (make test tries apt-get), or point "
                    "DCL_CSTP_BROWSER at chromium or google-chrome")
    return browser


def _run(args: list[str], tmp: Path, timeout: float) -> str:
    """Run the browser with a fresh profile in ``tmp``; its stdout. The whole process group is ended on timeout."""
    browser = require_browser()
    cmd = [browser, *FLAGS, f"--user-data-dir={tmp / 'browser-profile'}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"{browser} did not finish within {timeout} s: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        raise AssertionError(f"{browser} exited with {proc.returncode}: {err[-2000:]}")
    return out


def inspect_page(page: Path, tmp: Path, timeout: float = 120) -> dict:
    """Load ``page`` in the browser; returns its pictures (``complete``, ``natural_width``, shown ``width`` and
    ``height``), its rendered ``text``, ``content_width``, ``scroll_width`` / ``client_width`` and ``height``."""
    harness = tmp / "harness.html"
    harness.write_text(_HARNESS.format(src=html.escape(Path(page).resolve().as_uri()), width=VIEW_WIDTH))
    dom = _run([f"--window-size={VIEW_WIDTH + 40},1100", "--virtual-time-budget=10000", "--dump-dom",
                harness.as_uri()], tmp, timeout)
    found = re.search(r'<pre id="verdict">(.*?)</pre>', dom, re.S)
    if found is None or found.group(1) == "pending":
        raise AssertionError(f"the harness wrote no verdict on {page}: {dom[:500]}")
    verdict = json.loads(html.unescape(found.group(1)))
    if "error" in verdict:
        raise AssertionError(f"the harness could not read {page}: {verdict['error']}")
    return verdict


def screenshot(page: Path, png: Path, tmp: Path, height: int = 4000, timeout: float = 120) -> Path:
    """A PNG of ``page`` as shown in a ``VIEW_WIDTH`` x ``height`` window."""
    _run([f"--window-size={VIEW_WIDTH},{height}", f"--screenshot={png}", "--virtual-time-budget=10000",
          Path(page).resolve().as_uri()], tmp, timeout)
    assert png.is_file() and png.stat().st_size > 1000, f"no screenshot of {page}"
    return png


def raw_markdown(text: str) -> list[str]:
    """What of ``text`` (a page's visible text) is Markdown source rather than rendered: table rules, picture links,
    bold marks, backticks, lines starting with ``#``."""
    marks = [re.compile(r"\|\s*:?-{3,}:?\s*\|"), re.compile(r"!\["), re.compile(r"\*\*"), re.compile("`")]
    found = [m.group(0) for p in marks for m in p.finditer(text)]
    return found + [line for line in text.splitlines() if line.lstrip().startswith("#")]


def assert_reads_as_a_page(page: Path, tmp: Path) -> dict:
    """Every picture of ``page`` loaded and is shown at a readable size within the page's width, nothing runs off
    the page sideways, and no raw Markdown is visible. Returns the verdict of :func:`inspect_page`."""
    verdict = inspect_page(page, tmp)
    images = verdict["images"]
    assert images, f"no picture on {page}"
    broken = [i["alt"] for i in images if not (i["complete"] and i["natural_width"] > 0)]
    assert not broken, f"pictures that did not load: {broken}"
    small = [(i["alt"], i["width"], i["height"]) for i in images if max(i["width"], i["height"]) < READABLE_PX]
    assert not small, f"pictures shown smaller than {READABLE_PX} px: {small}"
    wide = [(i["alt"], i["width"]) for i in images if i["width"] > verdict["content_width"]]
    assert not wide, f"pictures wider than the page ({verdict['content_width']} px): {wide}"
    assert verdict["scroll_width"] <= verdict["client_width"], "the page runs off to the right"
    raw = raw_markdown(verdict["text"])
    assert not raw, f"raw Markdown shown on the page: {raw[:10]}"
    return verdict
