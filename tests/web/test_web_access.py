"""The page with the API key on, through `puyu web --api` (the proxy adds the key), at phone width, by keyboard
only, and when the server stops mid-reply."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select
from serve_support import engine_factory, live_server
from web_support import chromium, last_reply, open_page, screenshot_dir, script, send, wait_for, wait_reply_done

from puyu.serve.app import create_app
from puyu.web.proxy import create_proxy_app

KEY = "sekret-key"


@pytest.fixture(scope="module")
def server(model_folder: Path) -> Iterator[dict[str, Any]]:
    engine = engine_factory(model_folder, delay=0.01, script=script)()
    running = live_server(create_app(engine, model_name="tiny", api_key=KEY), grace=0.2)
    url = running.__enter__()
    stopped: list[bool] = []

    def stop() -> None:
        if not stopped:
            stopped.append(True)
            running.__exit__(None, None, None)

    yield {"url": url, "base": url.removesuffix("/v1"), "engine": engine, "stop": stop}
    stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("downloads")) as driver:
        yield driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(tmp_path_factory.mktemp("shots"))


def test_api_key_asked_for_then_used(browser: Any, server: dict[str, Any], shots: Path) -> None:
    open_page(browser, server["base"] + "/")
    banner = browser.find_element(By.ID, "banner")
    assert banner.is_displayed() and "HTTP 401" in banner.text and "API key" in banner.text
    assert browser.find_element(By.ID, "settings").get_attribute("open") is not None
    assert browser.switch_to.active_element.get_attribute("id") == "api-key"
    browser.switch_to.active_element.send_keys(KEY)
    browser.find_element(By.ID, "settings-save").click()
    wait_for(lambda: Select(browser.find_element(By.ID, "model")).options, what="the models")
    assert not browser.find_element(By.ID, "banner").is_displayed()
    send(browser, "hello with a key")
    assert "You said: hello with a key" in wait_reply_done(browser).text


def test_phone_width_and_keyboard_only(browser: Any, server: dict[str, Any], shots: Path) -> None:
    browser.set_window_size(390, 844)
    try:
        open_page(browser, server["base"] + "/")
        sidebar = browser.find_element(By.ID, "sidebar")
        assert sidebar.rect["x"] + sidebar.rect["width"] <= 0  # folded away
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390  # nothing wider than the screen

        # Tab reaches the message box; Enter sends; Escape stops a reply
        body = browser.find_element(By.TAG_NAME, "body")
        body.click()
        for _ in range(20):
            if browser.switch_to.active_element.get_attribute("id") == "prompt":
                break
            ActionChains(browser).send_keys(Keys.TAB).perform()
        assert browser.switch_to.active_element.get_attribute("id") == "prompt"
        ActionChains(browser).send_keys("typed on a phone", Keys.ENTER).perform()
        assert "You said: typed on a phone" in wait_reply_done(browser).text
        ActionChains(browser).send_keys("long story", Keys.ENTER).perform()
        wait_for(lambda: len(last_reply(browser).text.split()) >= 3, what="the first words")
        ActionChains(browser).send_keys(Keys.ESCAPE).perform()
        assert wait_reply_done(browser).get_attribute("data-state") == "stopped"
        browser.save_screenshot(str(shots / "web-phone.png"))

        # the conversation list opens from its button by keyboard, with focus moved into it
        browser.find_element(By.ID, "open-sidebar").send_keys(Keys.ENTER)
        wait_for(lambda: sidebar.rect["x"] >= 0, what="the sidebar to open")
        assert browser.switch_to.active_element.get_attribute("id") == "new-chat"
        browser.save_screenshot(str(shots / "web-phone-sidebar.png"))
        ActionChains(browser).send_keys(Keys.ENTER).perform()  # a new conversation
        browser.find_element(By.ID, "close-sidebar").send_keys(Keys.ENTER)
        wait_for(lambda: sidebar.rect["x"] + sidebar.rect["width"] <= 0, what="the sidebar to close")
    finally:
        browser.set_window_size(1280, 860)


def test_web_command_proxy_adds_the_key(browser: Any, server: dict[str, Any]) -> None:
    with live_server(create_proxy_app(server["url"], api_key=KEY)) as proxy:
        open_page(browser, proxy.removesuffix("/v1") + "/")  # another origin: no key stored in this browser
        assert browser.execute_script("return localStorage.getItem('puyu.web.settings.v1')") is None
        assert [o.text for o in Select(browser.find_element(By.ID, "model")).options] == ["tiny"]
        send(browser, "through the proxy")
        assert "You said: through the proxy" in wait_reply_done(browser).text
        send(browser, "long story")
        wait_for(lambda: len(last_reply(browser).text.split()) >= 3, what="the first words")
        browser.find_element(By.ID, "stop").click()
        assert wait_reply_done(browser).get_attribute("data-state") == "stopped"
        # stopping in the page closes the proxied request upstream too
        wait_for(lambda: server["engine"].stats().num_running == 0, timeout=5, what="the engine to go idle")


def test_server_stopped_mid_reply_shows_an_error(browser: Any, server: dict[str, Any], shots: Path) -> None:
    open_page(browser, server["base"] + "/")
    send(browser, "long story")
    wait_for(lambda: len(last_reply(browser).text.split()) >= 3, what="the first words")
    server["stop"]()
    reply = wait_reply_done(browser)
    assert reply.get_attribute("data-state") == "error"
    error = reply.find_element(By.CSS_SELECTOR, ".error").text
    assert "connection" in error or "ended early" in error
    assert len(reply.find_element(By.CSS_SELECTOR, ".content").text.split()) >= 3  # what came is kept
    browser.save_screenshot(str(shots / "web-server-down.png"))
    send(browser, "anyone there?")
    reply = wait_reply_done(browser)
    assert "cannot reach the server" in reply.find_element(By.CSS_SELECTOR, ".error").text
