"""The chat page in headless chromium against a live `puyu serve` app on a tiny scripted model: streaming,
markdown/code/LaTeX with hostile HTML, stop, conversations kept across reloads (rename, export, delete),
edit and resend, regenerate, settings, the model picker, compare, a 4xx shown plainly."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from serve_support import engine_factory, live_server
from web_support import (
    LONG_REPLY,
    MARKDOWN_REPLY,
    chromium,
    last_reply,
    open_page,
    screenshot_dir,
    script,
    send,
    wait_for,
    wait_reply_done,
)

from puyu.serve.app import create_app

MODEL = "tiny"


@pytest.fixture(scope="module")
def server(model_folder: Path) -> Iterator[dict[str, Any]]:
    prompts: list[str] = []

    def recording(prompt: str) -> str | None:
        prompts.append(prompt)
        return script(prompt)

    engine = engine_factory(model_folder, delay=0.003, script=recording)()
    with live_server(create_app(engine, model_name=MODEL)) as url:
        yield {"url": url, "base": url.removesuffix("/v1"), "engine": engine, "prompts": prompts}


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(server: dict[str, Any], downloads: Path) -> Iterator[Any]:
    with chromium(downloads) as driver:
        open_page(driver, server["base"] + "/")
        yield driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(tmp_path_factory.mktemp("shots"))


def stored(driver: Any) -> list[dict]:
    return driver.execute_script("return JSON.parse(localStorage.getItem('puyu.web.conversations.v1') || '[]')")


def new_conversation(driver: Any) -> None:
    driver.find_element(By.ID, "new-chat").click()
    wait_for(lambda: not driver.find_elements(By.CSS_SELECTOR, "#messages .message"), what="an empty conversation")


def test_streams_markdown_code_and_latex_and_sanitises(browser: Any, server: dict[str, Any], shots: Path) -> None:
    # every change of the reply's text is recorded, to see it arrive in pieces
    browser.execute_script(
        "window.__lengths = [];"
        "new MutationObserver(() => { const r = [...document.querySelectorAll('#messages .message.assistant')].pop();"
        " if (r) window.__lengths.push(r.querySelector('.content').textContent.length); })"
        ".observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});"
    )
    # the official client sends the same request alongside (the engine batches both)
    client = openai.OpenAI(base_url=server["url"], api_key="unused", max_retries=0)
    request = {"model": MODEL, "messages": [{"role": "user", "content": "markdown please"}], "max_tokens": 512}
    with ThreadPoolExecutor(1) as pool:
        send(browser, "markdown please")
        reference = pool.submit(client.chat.completions.create, **request, temperature=0.7)
        reply = wait_reply_done(browser)
    assert reply.get_attribute("data-state") == "done"
    lengths = browser.execute_script("return window.__lengths")
    assert len(set(lengths)) >= 5, lengths  # streamed, not delivered at once

    # the text the page kept is exactly what the official client gets for the same request
    expected = reference.result().choices[0].message.content
    assert stored(browser)[0]["messages"][1]["content"] == expected == MARKDOWN_REPLY

    content = reply.find_element(By.CSS_SELECTOR, ".content")
    assert content.find_element(By.TAG_NAME, "strong").text == "bold"
    code = content.find_element(By.CSS_SELECTOR, "pre code.hljs.language-python")
    assert code.find_element(By.CSS_SELECTOR, ".hljs-keyword").text == "def"
    assert len(content.find_elements(By.CSS_SELECTOR, ".katex")) == 2  # inline and display
    assert content.find_elements(By.CSS_SELECTOR, ".katex-display")
    # hostile HTML is shown as text; nothing of it became live
    assert "<img" in content.text and "<script>" in content.text
    dangerous = "#messages :is(img, script, [onerror], [onclick], a[href^='javascript'])"
    assert browser.find_elements(By.CSS_SELECTOR, dangerous) == []
    assert browser.execute_script("return window.__xss") is None
    browser.save_screenshot(str(shots / "web-chat.png"))


def test_stop_mid_stream_aborts_the_request(browser: Any, server: dict[str, Any]) -> None:
    new_conversation(browser)
    send(browser, "long story")
    wait_for(lambda: len(last_reply(browser).text.split()) >= 3, what="the first words")
    assert browser.find_element(By.ID, "stop").is_displayed()
    browser.find_element(By.ID, "stop").click()
    reply = wait_for(lambda: (r := last_reply(browser)).get_attribute("data-state") == "stopped" and r)
    assert "(stopped)" in reply.text
    kept = stored(browser)[0]["messages"][1]["content"]
    assert kept and LONG_REPLY.startswith(kept) and len(kept) < len(LONG_REPLY)
    # the server stopped generating too: no request left running
    wait_for(lambda: server["engine"].stats().num_running == 0, timeout=5, what="the engine to go idle")
    assert browser.find_element(By.ID, "send").is_displayed()


def test_reload_rename_export_delete(browser: Any, server: dict[str, Any], downloads: Path) -> None:
    open_page(browser, server["base"] + "/")
    titles = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#conversations .title")]
    assert titles[:2] == ["long story", "markdown please"]
    browser.find_elements(By.CSS_SELECTOR, "#conversations .title")[1].click()
    wait_for(lambda: "Here is bold" in browser.find_element(By.ID, "messages").text, what="the old conversation")

    item = browser.find_elements(By.CSS_SELECTOR, "#conversations li")[1]
    item.find_element(By.CSS_SELECTOR, ".rename").click()
    box = browser.find_element(By.CSS_SELECTOR, "#conversations .rename-box")
    box.send_keys("Formatting test\n")
    open_page(browser, server["base"] + "/")
    titles = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#conversations .title")]
    assert "Formatting test" in titles and "markdown please" not in titles

    browser.find_elements(By.CSS_SELECTOR, "#conversations .title")[titles.index("Formatting test")].click()
    wait_for(lambda: "Here is bold" in browser.find_element(By.ID, "messages").text, what="the renamed conversation")
    browser.find_element(By.ID, "export").click()
    exported = wait_for(lambda: next(downloads.glob("Formatting-test*.json"), None), what="the export file")
    data = json.loads(wait_for(lambda: exported.read_text() or None, what="the export to be written"))
    assert data["title"] == "Formatting test"
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][1]["content"] == MARKDOWN_REPLY

    first = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "#conversations li:first-child .title").text)
    assert first == "long story"
    browser.find_element(By.CSS_SELECTOR, "#conversations li:first-child .delete").click()
    browser.switch_to.alert.accept()
    open_page(browser, server["base"] + "/")
    titles = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#conversations .title")]
    assert titles == ["Formatting test"]


def test_edit_and_resend_then_regenerate(browser: Any, server: dict[str, Any]) -> None:
    new_conversation(browser)
    send(browser, "first question")
    assert "You said: first question" in wait_reply_done(browser).text
    browser.find_element(By.CSS_SELECTOR, "#messages .message.user .edit").click()
    box = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "#messages .edit-box"))
    box.clear()
    box.send_keys("second question\n")
    reply = wait_for(lambda: "You said: second question" in (r := wait_reply_done(browser)).text and r)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#messages .message")) == 2  # replaced, not appended
    assert "first question" not in browser.find_element(By.ID, "messages").text
    assert "first question" not in server["prompts"][-1]  # the model saw only the edited turn

    before = len(server["prompts"])
    reply.find_element(By.CSS_SELECTOR, ".regenerate").click()
    wait_for(lambda: len(server["prompts"]) == before + 1, what="a new request")
    reply = wait_reply_done(browser)
    assert "You said: second question" in reply.text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#messages .message")) == 2


def test_settings_and_model_picker(browser: Any, server: dict[str, Any], shots: Path) -> None:
    client = openai.OpenAI(base_url=server["url"], api_key="unused", max_retries=0)
    options = [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "model")).options]
    assert options == [model.id for model in client.models.list().data]

    new_conversation(browser)
    browser.find_element(By.ID, "open-settings").click()
    system = browser.find_element(By.ID, "system-prompt")
    system.send_keys("You are a pirate.")
    limit = browser.find_element(By.ID, "max-tokens")
    limit.clear()
    limit.send_keys("4")
    browser.save_screenshot(str(shots / "web-settings.png"))
    browser.find_element(By.ID, "settings-save").click()
    send(browser, "who are you?")
    reply = wait_reply_done(browser)
    assert "<|im_start|>system\nYou are a pirate." in server["prompts"][-1]
    content = reply.find_element(By.CSS_SELECTOR, ".content").text
    assert "Arr, a pirate I be.".startswith(content) and 0 < len(content) < len("Arr, a pirate I be.")
    assert "max-tokens limit" in reply.text
    browser.execute_script("localStorage.removeItem('puyu.web.settings.v1')")


def test_compare_two_settings_side_by_side(browser: Any, server: dict[str, Any], shots: Path) -> None:
    Select(browser.find_element(By.ID, "mode")).select_by_value("compare")
    wait_for(lambda: browser.find_element(By.ID, "compare-model"), what="the compare controls")
    send(browser, "compare this")
    reply = wait_reply_done(browser)
    columns = reply.find_elements(By.CSS_SELECTOR, ".column")
    assert len(columns) == 2
    assert [c.get_attribute("data-state") for c in columns] == ["done", "done"]
    assert "temperature 0" in columns[0].text and "temperature 1" in columns[1].text
    assert all("You said: compare this" in c.text for c in columns)
    listed = browser.find_element(By.CSS_SELECTOR, "#conversations li:first-child")
    assert listed.get_attribute("data-mode") == "compare" and listed.text.startswith("compare this")
    browser.save_screenshot(str(shots / "web-compare.png"))
    # each column continues its own history
    send(browser, "and again")
    reply = wait_reply_done(browser)
    assert all("You said: and again" in c.text for c in reply.find_elements(By.CSS_SELECTOR, ".column"))
    Select(browser.find_element(By.ID, "mode")).select_by_value("chat")


def test_http_error_is_shown_plainly(browser: Any, server: dict[str, Any]) -> None:
    new_conversation(browser)
    browser.execute_script("localStorage.setItem('puyu.web.settings.v1', JSON.stringify({temperature: 5}))")
    client = openai.OpenAI(base_url=server["url"], api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], temperature=5)
    send(browser, "too hot")
    reply = wait_reply_done(browser)
    assert reply.get_attribute("data-state") == "error"
    error = reply.find_element(By.CSS_SELECTOR, ".error").text
    assert error.startswith("HTTP 400: ")
    assert refused.value.body["message"] in error  # the server's own words
    browser.execute_script("localStorage.removeItem('puyu.web.settings.v1')")
    time.sleep(0.05)
