"""The web page's cost: time to first token in the page against the official `openai` client on the same
server, and the page's weight with and without its vendored libraries.

One `puyu serve` app (in-process, uvicorn on loopback) over a random `internlm2-tiny` folder, so that the
model's own time is small and the same on both sides. Each round sends the same greedy request (8 new tokens)
once through the page in headless chromium and once through `openai` (streaming), alternating. Page: from the
submit to the first reply text in the DOM (`performance.now()` in the page, so the WebDriver round trips do not
count), and to the first SSE event read by the page's fetch. Client: from `create()` to the first chunk with
text. Weight: what the browser loaded (Resource Timing, bytes after decoding) for the page with one reply holding
LaTeX (so that KaTeX's fonts load), split into puyu's own files and the vendored ones; plus the files on disk.

    .venv/bin/python benchmarks/web_page.py --rounds 40
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(ROOT / "benchmarks"),
    str(ROOT / "tests"),
    str(ROOT / "tests" / "serve"),
    str(ROOT / "tests" / "web"),
]

from machine import machine_info  # noqa: E402

# the page: submit, then the time until the newest reply shows text
PAGE_ROUND = """
const done = arguments[arguments.length - 1];
performance.clearMarks();
document.getElementById('new-chat').click();  // the same one-message prompt as the client's
const list = document.getElementById('messages');
const before = list.querySelectorAll('.message.assistant').length;
const observer = new MutationObserver(() => {
  const replies = list.querySelectorAll('.message.assistant');
  if (replies.length > before && replies[replies.length - 1].querySelector('.content').textContent.length) {
    const shown = performance.now();
    observer.disconnect();
    const first = performance.getEntriesByName('puyu:first-event')[0];
    done({shown: shown - start, event: first ? first.startTime - start : null});
  }
});
observer.observe(list, {childList: true, subtree: true, characterData: true});
document.getElementById('prompt').value = 'Say something.';
const start = performance.now();
document.getElementById('composer').requestSubmit();
"""

# the browser alone: a bare fetch of the same request, to the first SSE chunk with text
BARE_FETCH = """
const done = arguments[arguments.length - 1];
const start = performance.now();
fetch('/v1/chat/completions', {method: 'POST', headers: {'Content-Type': 'application/json'},
  body: JSON.stringify({...arguments[0], stream: true})}).then(async (response) => {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = '', first = null;
  for (;;) {
    const {done: end, value} = await reader.read();
    if (end) break;
    text += decoder.decode(value, {stream: true});
    if (first === null && /"content": ?"[^"]/.test(text)) first = performance.now() - start;
  }
  done(first);
});
"""

WEIGHT = """
const done = arguments[arguments.length - 1];
import('/web/markdown.js').then((m) => {
  const box = document.createElement('div');
  box.innerHTML = m.renderMarkdown('$$\\\\int_0^1 x\\\\,dx = \\\\frac{1}{2}$$ and `code`');
  document.body.append(box);
  setTimeout(() => done(performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
    .map((e) => ({name: e.name}))), 1500);
});
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    import openai
    import torch
    from serve_support import engine_factory, make_model_folder
    from web_support import chromium, open_page

    from puyu.serve.app import create_app
    from puyu.web import STATIC_DIR
    from server_support import live_server

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="puyu-web-bench-"))
    folder = make_model_folder(work / "tiny")
    app = create_app(engine_factory(folder)(), model_name="tiny")
    request = {"model": "tiny", "messages": [{"role": "user", "content": "Say something."}], "max_tokens": 8}
    with live_server(app) as url, chromium(work) as browser:
        base = url.removesuffix("/v1")
        open_page(browser, base + "/")
        browser.execute_script(
            "localStorage.setItem('puyu.web.settings.v1', JSON.stringify({temperature: 0, maxTokens: 8}))"
        )
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        page_shown, page_event, client_first, bare_first = [], [], [], []
        for round_index in range(args.rounds + 3):  # the first rounds warm both sides up
            browser.set_script_timeout(30)
            measured = browser.execute_async_script(PAGE_ROUND)
            browser.execute_script("return 0")
            time.sleep(0.05)
            while browser.execute_script("return document.body.dataset.busy") == "true":
                time.sleep(0.01)
            start = time.perf_counter()
            first = None
            for chunk in client.chat.completions.create(**request, temperature=0, stream=True):
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - start
            bare = browser.execute_async_script(BARE_FETCH, {**request, "temperature": 0})
            if round_index >= 3:
                bare_first.append(bare)
                page_shown.append(measured["shown"])
                page_event.append(measured["event"])
                client_first.append(first * 1000)

        open_page(browser, base + "/")
        loaded = browser.execute_async_script(WEIGHT)

    # the page's files (not its API calls), sized from disk: a cached reload reports no body size
    files = sorted(
        {
            STATIC_DIR / "index.html" if path == "/" else STATIC_DIR / path.removeprefix("/web/")
            for path in (urlsplit(e["name"]).path for e in loaded)
            if path == "/" or path.startswith("/web/")
        }
    )
    own_files = [f for f in files if "vendor" not in f.parts]
    vendor_files = [f for f in files if "vendor" in f.parts]
    own = sum(f.stat().st_size for f in own_files)
    vendored = sum(f.stat().st_size for f in vendor_files)
    gzipped = {f: len(gzip.compress(f.read_bytes())) for f in files}
    disk_own = sum(p.stat().st_size for p in STATIC_DIR.rglob("*") if p.is_file() and "vendor" not in p.parts)
    disk_vendor = sum(p.stat().st_size for p in (STATIC_DIR / "vendor").rglob("*") if p.is_file())
    result = {
        "rounds": args.rounds,
        "ttft_ms": {
            "page_shown": {"p50": statistics.median(page_shown), "p90": percentile(page_shown, 0.9)},
            "page_first_event": {"p50": statistics.median(page_event), "p90": percentile(page_event, 0.9)},
            "browser_bare_fetch": {"p50": statistics.median(bare_first), "p90": percentile(bare_first, 0.9)},
            "openai_client": {"p50": statistics.median(client_first), "p90": percentile(client_first, 0.9)},
        },
        "page_minus_client_ms_p50": statistics.median(page_shown) - statistics.median(client_first),
        "page_minus_bare_fetch_ms_p50": statistics.median(page_shown) - statistics.median(bare_first),
        "weight_kb": {
            "loaded_own": own / 1024,
            "loaded_vendored": vendored / 1024,
            "loaded_total": (own + vendored) / 1024,
            "files": len(files),
            "gzip_own": sum(gzipped[f] for f in own_files) / 1024,
            "gzip_vendored": sum(gzipped[f] for f in vendor_files) / 1024,
            "loaded_files": [str(f.relative_to(STATIC_DIR)) for f in files],
            "disk_own": disk_own / 1024,
            "disk_vendored": disk_vendor / 1024,
        },
        "machine": machine_info(["torch", "openai", "selenium"]),
    }
    print(json.dumps(result, indent=2))
    p50 = {name: f"{values['p50']:.1f} ms" for name, values in result["ttft_ms"].items()}
    print(
        f"time to first token p50: page {p50['page_shown']} (first SSE event {p50['page_first_event']}), "
        f"bare fetch in the browser {p50['browser_bare_fetch']}, openai client {p50['openai_client']}"
    )
    print(
        f"page - openai client = {result['page_minus_client_ms_p50']:+.1f} ms; "
        f"page - bare browser fetch = {result['page_minus_bare_fetch_ms_p50']:+.1f} ms"
    )
    w = result["weight_kb"]
    print(
        f"page weight: {w['loaded_total']:.0f} KB loaded ({w['loaded_own']:.0f} KB puyu's own, "
        f"{w['loaded_vendored']:.0f} KB vendored); gzipped {w['gzip_own'] + w['gzip_vendored']:.0f} KB "
        f"({w['gzip_own']:.0f} + {w['gzip_vendored']:.0f})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
