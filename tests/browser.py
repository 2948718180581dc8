"""A small headless-Chromium helper for tests that open generated HTML pages (file://, no network).

``missing_browser()`` says what is absent (or None); ``chromium(tmp_dir)`` is a context manager yielding a Selenium
driver that uses the Debian ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` directly, so Selenium Manager never
runs (it would try the network); ``wait_js(driver, expr)`` polls a JS expression until it is truthy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

CHROMIUM = os.environ.get("VISIONATTN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("VISIONATTN_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-extensions", "--disable-default-apps", "--force-device-scale-factor=1", "--hide-scrollbars")


def missing_browser() -> str | None:
    """None when a headless Chromium can be driven, else a sentence naming what is missing."""
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install selenium)")
    for what, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            missing.append(f"{what} at {path}")
    return ("missing " + ", ".join(missing)) if missing else None


@contextlib.contextmanager
def chromium(tmp_dir: Path, width: int = 1200, height: int = 900):
    """Yield a headless Chromium WebDriver with its profile in ``tmp_dir``; quit it (and remove the profile)
    afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tmp_dir) / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_js(driver, expression: str, timeout: float = 10.0, poll: float = 0.05):
    """Evaluate ``return (expression)`` until it is truthy; return its value, or raise TimeoutError after
    ``timeout`` seconds (with the last value)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return ({expression});")
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"JS condition {expression!r} still falsy after {timeout} s (last value {value!r})")
