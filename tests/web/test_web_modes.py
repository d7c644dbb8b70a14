"""Agent, knowledge-base and search modes in headless chromium, against fakes of those endpoints (in the shapes
they serve) mounted on a live `puyu serve` app: steps rendered as they stream, citations that open their chunk,
a refusal, an upload, and the live search graph."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_apps import CHUNK, REFUSAL, mount_fakes
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from serve_support import engine_factory, live_server
from web_support import chromium, open_page, screenshot_dir, script, send, wait_for, wait_reply_done

from puyu.serve.app import create_app


@pytest.fixture(scope="module")
def server(model_folder: Path) -> Iterator[dict[str, Any]]:
    app = create_app(engine_factory(model_folder, script=script)(), model_name="tiny")
    seen = mount_fakes(app)
    with live_server(app) as url:
        yield {"base": url.removesuffix("/v1"), "seen": seen}


@pytest.fixture(scope="module")
def browser(server: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("downloads")) as driver:
        open_page(driver, server["base"] + "/")
        yield driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(tmp_path_factory.mktemp("shots"))


def choose_mode(browser: Any, mode: str) -> None:
    Select(browser.find_element(By.ID, "mode")).select_by_value(mode)


def record_while_streaming(browser: Any, expression: str) -> None:
    """Collect `expression` (JS, over the last reply `r`) into window.__seen on every change while it streams."""
    browser.execute_script(
        "window.__observer?.disconnect(); window.__seen = []; window.__observer = new MutationObserver(() => {"
        " const r = [...document.querySelectorAll('#messages .message.assistant')].pop();"
        f" if (r && r.dataset.state === 'streaming') window.__seen.push({expression}); }})"
        "; window.__observer.observe(document.getElementById('messages'), {childList: true, subtree: true});"
    )


def test_agent_steps_render_as_they_stream(browser: Any, server: dict[str, Any], shots: Path) -> None:
    choose_mode(browser, "agent")
    boxes = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#mode-bar input[name=tool]"), what="the tools")
    assert [b.get_attribute("value") for b in boxes] == ["calculator", "python"]
    record_while_streaming(browser, "r.querySelectorAll('.step').length")
    send(browser, "what is 6*7? draw it")
    reply = wait_reply_done(browser)
    assert reply.get_attribute("data-state") == "done"
    counts = browser.execute_script("return window.__seen")
    assert {1, 2, 3} <= set(counts)  # the steps appeared one by one, before the answer

    posted = server["seen"]["agent"][-1]
    assert posted["tools"] == ["calculator", "python"]
    assert posted["messages"][-1] == {"role": "user", "content": "what is 6*7? draw it"}
    assert posted["session_id"]

    thought, calculator, python = reply.find_elements(By.CSS_SELECTOR, "li.step")
    assert "thought" in thought.get_attribute("class")
    folded = calculator.find_element(By.CSS_SELECTOR, "details")
    assert folded.get_attribute("open") is None and "calculator (done)" in folded.text
    calculator.find_element(By.CSS_SELECTOR, "summary").click()
    assert "42" in calculator.find_element(By.CSS_SELECTOR, ".tool-output").text
    assert '"expression": "6*7"' in calculator.text
    # interpreter code shown unfolded, its image fetched and shown
    assert "plot.bar([6, 7])" in python.find_element(By.CSS_SELECTOR, "code.language-python").text
    image = wait_for(lambda: python.find_element(By.CSS_SELECTOR, ".artifact img"), what="the artifact image")
    assert image.get_attribute("src").startswith("blob:")
    wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", image) == 60, what="the image")
    answer = reply.find_element(By.CSS_SELECTOR, ".answer")
    assert answer.find_element(By.TAG_NAME, "strong").text == "42"
    browser.save_screenshot(str(shots / "web-agent.png"))


def test_kb_citations_open_their_chunk(browser: Any, server: dict[str, Any], shots: Path) -> None:
    choose_mode(browser, "kb")
    picker = wait_for(lambda: Select(browser.find_element(By.ID, "kb-select")), what="the kb picker")
    assert [o.text for o in picker.options] == ["docs"]
    assert not browser.find_element(By.ID, "model-field").is_displayed()
    send(browser, "how do I serve a model?")
    reply = wait_reply_done(browser)
    assert server["seen"]["kb_chat"][-1] == "kb:docs"
    listed = browser.find_element(By.CSS_SELECTOR, "#conversations li:first-child")
    assert listed.get_attribute("data-mode") == "kb" and listed.text.startswith("how do I serve")
    markers = reply.find_elements(By.CSS_SELECTOR, ".content button.cite")
    assert [m.text for m in markers] == ["[1]", "[2]"]
    markers[0].click()
    dialog = browser.find_element(By.ID, "chunk-view")
    wait_for(lambda: browser.find_element(By.ID, "chunk-text").text == CHUNK["text"], what="the chunk")
    assert dialog.get_attribute("open") is not None
    assert "guide.md · characters 120–171" in browser.find_element(By.ID, "chunk-source").text
    browser.save_screenshot(str(shots / "web-kb.png"))
    dialog.find_element(By.TAG_NAME, "button").click()
    # a chunk the server cannot give: the citation's own text, and why
    reply.find_elements(By.CSS_SELECTOR, ".content button.cite")[1].click()
    wait_for(lambda: "could not give the chunk" in browser.find_element(By.ID, "chunk-source").text)
    assert browser.find_element(By.ID, "chunk-text").text == "Use --api-key to protect it."
    dialog.find_element(By.TAG_NAME, "button").click()


def test_kb_refusal_and_upload(browser: Any, server: dict[str, Any], tmp_path: Path) -> None:
    send(browser, "what is the weather tomorrow?")
    reply = wait_reply_done(browser)
    refused = reply.find_element(By.CSS_SELECTOR, ".refused")
    assert refused.text == f"Refused: {REFUSAL}"

    document = tmp_path / "notes.md"
    document.write_text("# Notes\npuyu has a web app.\n")
    browser.find_element(By.ID, "kb-files").send_keys(str(document))
    browser.find_element(By.ID, "kb-upload").click()
    status = wait_for(lambda: (t := browser.find_element(By.ID, "kb-status").text).startswith("added") and t)
    assert status == "added 1, changed 0, 7 chunks"
    assert server["seen"]["uploads"] == [("docs", "notes.md", document.read_text())]


def test_search_graph_updates_live(browser: Any, server: dict[str, Any], shots: Path) -> None:
    choose_mode(browser, "search")
    record_while_streaming(
        browser, "[...r.querySelectorAll('.node')].map((n) => n.dataset.node + ':' + n.dataset.state)"
    )
    send(browser, "How many people live in the capital of France?")
    reply = wait_reply_done(browser)
    assert server["seen"]["search"][-1] == {
        "question": "How many people live in the capital of France?",
        "model": "tiny",
    }
    states = {state for snapshot in browser.execute_script("return window.__seen") for state in snapshot}
    assert {"a:pending", "a:running", "a:done", "b:pending", "b:running"} <= states

    lanes = reply.find_elements(By.CSS_SELECTOR, ".graph .lane")
    assert [[n.get_attribute("data-node") for n in lane.find_elements(By.CSS_SELECTOR, ".node")] for lane in lanes] == [
        ["a"],
        ["b"],
    ]  # b depends on a: one column further
    assert [n.get_attribute("data-state") for n in reply.find_elements(By.CSS_SELECTOR, ".node")] == ["done", "failed"]
    wait_for(lambda: len(reply.find_elements(By.CSS_SELECTOR, ".graph svg line")) == 1, what="the edge")
    node = reply.find_element(By.CSS_SELECTOR, ".node[data-node=a]")
    node.find_element(By.TAG_NAME, "summary").click()
    assert "Paris" in node.text

    answer = reply.find_element(By.CSS_SELECTOR, ".answer")
    assert [m.text for m in answer.find_elements(By.CSS_SELECTOR, "button.cite")] == ["[1]", "[2]"]
    links = reply.find_elements(By.CSS_SELECTOR, ".sources a")
    assert [a.get_attribute("href") for a in links] == ["https://example.org/paris"]  # the javascript: one is text
    assert "notes.md" in reply.find_element(By.CSS_SELECTOR, ".sources").text
    browser.save_screenshot(str(shots / "web-search.png"))
