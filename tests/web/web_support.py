"""Helpers for the browser tests: headless Debian chromium through selenium, a scripted tiny model, waits
and screenshots.

Screenshots go to $PUYU_WEB_SCREENSHOTS when it is set (docs/images for the docs), else to a temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)

# Scripted replies of the tiny model, chosen by the last user message (its real output is noise).
MARKDOWN_REPLY = (
    "Here is **bold** text, `inline code`, a formula $e^{i\\pi}+1=0$ and a function:\n\n"
    "```python\ndef add(a, b):\n    return a + b\n```\n\n"
    "$$\\int_0^1 x\\,dx = \\frac{1}{2}$$\n\n"
    '<img src="x" onerror="window.__xss=1"> <script>window.__xss=2</script> '
    '[a link](javascript:window.__xss=3) <a href="/" onclick="window.__xss=4">click</a>'
)
LONG_REPLY = " ".join(f"word{i}" for i in range(120))


def last_user_message(prompt: str) -> str:
    turns = re.findall(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", prompt, flags=re.DOTALL)
    return turns[-1] if turns else ""


def script(prompt: str) -> str | None:
    """The tiny model's reply to a chat prompt (None: let it sample)."""
    if "pirate" in prompt.split("<|im_start|>user", 1)[0]:  # the system prompt
        return "Arr, a pirate I be."
    message = last_user_message(prompt)
    if "markdown please" in message:
        return MARKDOWN_REPLY
    if "long story" in message:
        return LONG_REPLY
    if message:
        return f"You said: {message}"
    return None


def find_browser() -> tuple[str, str] | None:
    browser = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    driver = next((path for name in DRIVER_NAMES if (path := shutil.which(name))), None)
    return (browser, driver) if browser and driver else None


def screenshot_dir(tmp: Path) -> Path:
    folder = Path(os.environ.get("PUYU_WEB_SCREENSHOTS") or tmp)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def chromium(download_dir: Path, width: int = 1280, height: int = 860) -> Iterator[Any]:
    """A headless chromium driven by selenium (skips the test where either is missing)."""
    found = find_browser()
    if found is None:
        pytest.skip("no chromium/chromedriver on PATH (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(download_dir), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # a stale element mid-render: try again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.03)


def open_page(driver: Any, url: str) -> None:
    """Load the page and wait until it has listed the models."""
    driver.get(url)
    wait_for(lambda: driver.execute_script("return document.body.dataset.ready === 'true'"), what="the page")


def send(driver: Any, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, "prompt")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def last_reply(driver: Any) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#messages .message.assistant")[-1]


def wait_reply_done(driver: Any, timeout: float = 30.0) -> Any:
    """The last reply once it has stopped streaming."""

    def finished() -> Any:
        reply = last_reply(driver)
        return reply if reply.get_attribute("data-state") != "streaming" else None

    return wait_for(finished, timeout, "the reply to finish")
