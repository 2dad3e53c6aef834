"""Helpers for tests that open pages in a real headless Chromium (driven by Playwright).

The browser is the system's Chromium (Debian's ``chromium`` package, or ``$NAS_CHROMIUM``);
Playwright only drives it and never downloads browsers of its own. Tests call
:func:`require_browser` first, which skips them with the reason when Chromium or Playwright
is missing.

Typical use::

    require_browser()
    shot = artifact_dir() / "board.png"
    with Browser() as browser:
        text = browser.page_text(url, expect=["trial-0000"], screenshot=shot)
    assert_visible(text, ["trial-0000"], screenshot=shot)

Several pages in a row share the one browser.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from typing_extensions import Self

REPO = Path(__file__).resolve().parent.parent

INSTALL_HINT = "install Debian's chromium package, or set NAS_CHROMIUM"

# Headless, and nothing that talks to Google's hosts: on a closed network those connections
# hang and stall the page loads.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The visible text of a page, shadow DOM included: the text of the body as the user sees it
# (innerText), then the visible text nodes that live inside open shadow roots, which
# innerText leaves out (TensorBoard's Polymer dashboards render everything there).
_VISIBLE_TEXT_JS = """
() => {
  const parts = [document.body ? document.body.innerText : ""];
  const shown = (el) => !el.checkVisibility || el.checkVisibility({checkVisibilityCSS: true});
  const walk = (node, inShadow) => {
    if (node.nodeType === Node.TEXT_NODE) {
      const t = node.nodeValue.trim();
      if (inShadow && t && node.parentElement && shown(node.parentElement)) parts.push(t);
      return;
    }
    if (node.nodeType !== Node.ELEMENT_NODE && node.nodeType !== Node.DOCUMENT_FRAGMENT_NODE) return;
    if (node.nodeType === Node.ELEMENT_NODE) {
      const tag = node.tagName;
      if (tag === "SCRIPT" || tag === "STYLE" || tag === "TEMPLATE") return;
      if (tag === "SLOT") {
        // Slotted nodes belong to the light DOM: body.innerText already has them.
        for (const n of node.assignedNodes({flatten: true})) walk(n, false);
        return;
      }
      if (node.shadowRoot) { walk(node.shadowRoot, true); return; }
    }
    for (const child of node.childNodes) walk(child, inShadow);
  };
  if (document.body) walk(document.body, false);
  return parts.join("\\n");
}
"""


def chromium() -> str | None:
    """The path of a Chromium executable: ``$NAS_CHROMIUM``, else the first one on the PATH."""
    env = os.environ.get("NAS_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser() -> None:
    """Skip the calling test, saying why, unless Chromium and Playwright are both present."""
    env = os.environ.get("NAS_CHROMIUM")
    if chromium() is None:
        where = f"NAS_CHROMIUM={env} is not a file" if env else "no Chromium found"
        pytest.skip(f"browser test: {where} ({INSTALL_HINT})")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip(
            "browser test: the playwright package is missing (pip install -e '.[test]'; "
            f"{INSTALL_HINT})"
        )


def artifact_dir() -> Path:
    """The folder for test artifacts (screenshots): ``$NAS_TEST_ARTIFACTS`` or test-artifacts/."""
    path = Path(os.environ.get("NAS_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing(text: str, expect: Sequence[str]) -> list[str]:
    """The strings of ``expect`` that ``text`` does not contain."""
    return [s for s in expect if s not in text]


def failure_message(text: str, expect: Sequence[str], screenshot: Path | None = None) -> str:
    """What a test reports when a page lacks some expected strings."""
    snippet = " ".join(text.split())
    if len(snippet) > 600:
        snippet = snippet[:600] + " ..."
    lines = [f"page lacks {missing(text, expect)!r} (expected all of {list(expect)!r})"]
    lines.append(f"page text ({len(text)} chars): {snippet!r}")
    if screenshot is not None:
        lines.append(f"screenshot: {screenshot}")
    return "\n".join(lines)


def assert_visible(text: str, expect: Sequence[str], *, screenshot: Path | None = None) -> None:
    """Assert that ``text`` (from :meth:`Browser.page_text`) holds every string of ``expect``."""
    assert not missing(text, expect), failure_message(text, expect, screenshot)


class Browser:
    """One headless Chromium (fresh profile in a temporary folder) for several pages in a row.

    ``with Browser() as browser: browser.page_text(...)`` loads each page in the same tab, so a
    single-page app moving between routes of one server starts only once.
    """

    def __enter__(self) -> Self:
        from playwright.sync_api import sync_playwright

        executable = chromium()
        if executable is None:
            raise RuntimeError(f"no Chromium found ({INSTALL_HINT})")
        self._profile = tempfile.TemporaryDirectory(prefix="nas-chromium-")
        self._playwright = sync_playwright().start()
        try:
            self.context = self._playwright.chromium.launch_persistent_context(
                self._profile.name,
                executable_path=executable,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900},
            )
            self.page = self.context.pages[0] if self.context.pages else self.context.new_page()
        except BaseException:
            self._playwright.stop()
            self._profile.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.context.close()
        finally:
            self._playwright.stop()
            self._profile.cleanup()

    def page_text(
        self,
        url: str,
        *,
        expect: Sequence[str],
        cookies: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        screenshot: Path,
        timeout_s: float = 60,
        navigate: Callable[[Any], None] | None = None,
        reload_s: float = 10,
    ) -> str:
        """Open ``url`` in headless Chromium and return the page's visible text.

        The text is polled until every string of ``expect`` is in it or ``timeout_s`` passes; the
        caller asserts on what comes back (see :func:`assert_visible`). A full-page screenshot is
        saved to ``screenshot`` in every case, also when the page never loads.

        - ``cookies``: Playwright cookies set before the first load, each with ``name``, ``value``
          and either ``url`` or ``domain`` and ``path``, e.g.
          ``[{"name": "ray-authentication-token", "value": token, "url": "http://127.0.0.1:8265"}]``.
        - ``headers``: extra HTTP headers sent with every request.
        - ``navigate``: called with the Playwright page after each load of ``url`` (clicks, a
          route of a single-page app); its Playwright errors are retried like a failed load.
        - Every ``reload_s`` seconds without all of ``expect``, the page is loaded again (a
          single-page app may have rendered before its data arrived).

        The text is the body's innerText followed by the visible text inside open shadow roots.
        Raises AssertionError (with the last error and the screenshot path) only when the page
        could not be loaded at all before the timeout.
        """
        from playwright.sync_api import Error as PlaywrightError

        page = self.page
        screenshot = Path(screenshot)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        text = ""
        loaded = False
        last_error: str | None = None

        def failed(error: Exception) -> str:
            return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"

        def load() -> bool:
            nonlocal last_error
            remaining_ms = max(1000.0, (deadline - time.monotonic()) * 1000)
            try:
                page.goto(url, wait_until="domcontentloaded", timeout=remaining_ms)
                if navigate is not None:
                    navigate(page)
            except PlaywrightError as error:
                last_error = failed(error)
                return False
            return True

        try:
            if cookies:
                self.context.add_cookies(cookies)
            if headers:
                self.context.set_extra_http_headers(headers)
            while True:
                loaded_at = time.monotonic()
                if load():
                    loaded = True
                    while True:
                        try:
                            text = page.evaluate(_VISIBLE_TEXT_JS)
                        except PlaywrightError as error:  # the page navigated meanwhile
                            last_error = failed(error)
                        if not missing(text, expect) or time.monotonic() >= deadline:
                            break
                        if time.monotonic() - loaded_at >= reload_s:
                            break
                        page.wait_for_timeout(250)
                if not missing(text, expect) or time.monotonic() >= deadline:
                    break
                if not loaded:
                    time.sleep(0.5)
        finally:
            try:
                page.screenshot(path=str(screenshot), full_page=True)
            except PlaywrightError as error:  # the screenshot must not hide the result
                last_error = last_error or f"screenshot failed: {failed(error)}"

        if not loaded:
            raise AssertionError(
                f"could not load {url} within {timeout_s:g} s: {last_error}\n"
                f"screenshot: {screenshot}"
            )
        return text


@contextlib.contextmanager
def tensorboard_server(logdir: Path, runs: Sequence[str], *, log: Path, timeout_s: float = 60) -> Iterator[str]:
    """The venv's TensorBoard over ``logdir`` on a free loopback port, once it lists ``runs``;
    yields its URL and always stops it."""
    port = free_port()
    exe = Path(sys.executable).parent / "tensorboard"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(exe), "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"tensorboard exited with {proc.returncode}: {Path(log).read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/data/runs", timeout=5) as response:
                        if set(runs) <= set(json.load(response)):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"tensorboard did not list the runs {list(runs)} within {timeout_s:g} s")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
