"""Debian's headless Chromium driven by Selenium through Debian's chromedriver, and a folder for screenshots.

hack/lib.sh installs both packages (`chromium`, `chromium-driver`); a test skips, saying so, only when the
chromium binary is absent. Selenium is pointed at the two binaries, so it never looks for a browser of its own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
WINDOW = (1280, 2200)


def chromium_binaries() -> tuple[str, str]:
    """The chromium and chromedriver programs; skips the test when chromium is absent."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("the chromium binary is absent: hack/lib.sh installs Debian's chromium and chromium-driver")
    driver = shutil.which("chromedriver") or "/usr/lib/chromium/chromedriver"
    assert Path(driver).exists(), "chromium is installed but not its chromedriver (Debian package chromium-driver)"
    return chromium, driver


@contextmanager
def headless_chromium(log: Path) -> Iterator[Any]:
    """A Selenium WebDriver of a fresh headless Chromium; the browser quits on exit."""
    chromium, driver = chromium_binaries()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a VM: Chromium's sandbox needs a user namespace it may not get
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--no-first-run",
        "--no-proxy-server",
    ):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(executable_path=driver, log_output=str(log)))
    try:
        yield browser
    finally:
        browser.quit()


def wait_for(browser: Any, check: Callable[[Any], T], description: str, timeout: float = 30.0) -> T:
    """What `check(browser)` returns once it is truthy; fails with `description` and the page's text otherwise."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        result: T = WebDriverWait(browser, timeout, poll_frequency=0.2).until(check)
    except TimeoutException:
        text = browser.find_element("tag name", "body").text[-2000:]
        raise AssertionError(f"timed out waiting for {description}; the page says:\n{text}") from None
    return result


@pytest.fixture
def screenshots(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where the test saves its screenshots ($PYTEST_ARTIFACTS/<test> or the test's tmp_path), printed."""
    root = os.environ.get("PYTEST_ARTIFACTS")
    folder = Path(root) / request.node.name if root else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else _nothing():
        print(f"\nscreenshots of {request.node.name}: {folder}")
    return folder


@contextmanager
def _nothing() -> Iterator[None]:
    yield
