// Model output → safe HTML: markdown (marked), code highlighting (highlight.js), LaTeX (KaTeX), then
// DOMPurify over the whole result. Model output is hostile: nothing reaches the page unsanitised.

const { marked, DOMPurify, hljs, katex } = window;

function escapeHTML(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function tex(source, displayMode) {
  try {
    // trust: false keeps \href, \url and friends out; the size limits bound what a hostile formula costs.
    return katex.renderToString(source, { displayMode, throwOnError: false, trust: false, maxSize: 50, maxExpand: 500, output: "htmlAndMathml" });
  } catch {
    return `<code>${escapeHTML(source)}</code>`;
  }
}

const math = {
  extensions: [
    {
      name: "blockMath",
      level: "block",
      start: (src) => {
        const at = src.search(/\$\$|\\\[/);
        return at < 0 ? undefined : at;
      },
      tokenizer(src) {
        const match = /^(?:\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\])[ \t]*(?:\n|$)/.exec(src);
        if (match) return { type: "blockMath", raw: match[0], text: (match[1] ?? match[2]).trim() };
      },
      renderer: (token) => `<div class="math">${tex(token.text, true)}</div>`,
    },
    {
      name: "inlineMath",
      level: "inline",
      start: (src) => {
        const at = src.search(/\$|\\\(/);
        return at < 0 ? undefined : at;
      },
      tokenizer(src) {
        const match = /^(?:\$\$([\s\S]+?)\$\$|\$([^\s$](?:[^$\n]*?[^\s$\\])?)\$(?!\d)|\\\(([\s\S]+?)\\\))/.exec(src);
        if (match) return { type: "inlineMath", raw: match[0], text: match[1] ?? match[2] ?? match[3], display: match[1] !== undefined };
      },
      renderer: (token) => tex(token.text, token.display),
    },
  ],
};

const parser = new marked.Marked(math, {
  gfm: true,
  breaks: false,
  renderer: {
    // Raw HTML in model output is shown as text, not parsed: nothing the model writes becomes a live element
    // (DOMPurify would strip the dangerous parts, but even its parse can fetch an <img>).
    html: ({ text }) => escapeHTML(text),
    code({ text, lang }) {
      const language = (lang || "").trim().split(/\s+/)[0].toLowerCase();
      const known = language && hljs.getLanguage(language);
      const body = known ? hljs.highlight(text, { language, ignoreIllegals: true }).value : escapeHTML(text);
      const label = known ? `<span class="code-lang">${escapeHTML(language)}</span>` : "";
      return `<pre class="code">${label}<code class="hljs${known ? ` language-${escapeHTML(language)}` : ""}">${body}</code></pre>`;
    },
  },
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

const PURIFY = {
  USE_PROFILES: { html: true, mathMl: true, svg: false },
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
  FORBID_ATTR: ["id", "name"], // no clobbering of the page's own elements
  ALLOW_DATA_ATTR: false,
};

/** Sanitised HTML for a markdown string (markdown, code, LaTeX). */
export function renderMarkdown(text) {
  let html;
  try {
    html = parser.parse(String(text ?? ""));
  } catch {
    html = `<pre>${escapeHTML(String(text ?? ""))}</pre>`;
  }
  return DOMPurify.sanitize(html, PURIFY);
}

/** Put rendered markdown into `element`. */
export function setMarkdown(element, text) {
  element.innerHTML = renderMarkdown(text);
}

/** Turn `[n]` / `[[n]]` markers (for the given numbers) in `element`'s text into buttons calling `open(n)`. */
export function linkCitations(element, numbers, open) {
  if (!numbers.size) return;
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  const texts = [];
  while (walker.nextNode()) {
    if (!walker.currentNode.parentElement.closest("pre, code, .katex")) texts.push(walker.currentNode);
  }
  const marker = /\[\[?(\d{1,3})\]\]?/g;
  for (const node of texts) {
    const value = node.nodeValue;
    if (!marker.test(value)) continue;
    marker.lastIndex = 0;
    const fragment = document.createDocumentFragment();
    let last = 0;
    for (const match of value.matchAll(marker)) {
      const n = Number(match[1]);
      if (!numbers.has(n)) continue;
      fragment.append(value.slice(last, match.index));
      const button = document.createElement("button");
      button.type = "button";
      button.className = "cite";
      button.dataset.n = String(n);
      button.textContent = `[${n}]`;
      button.setAttribute("aria-label", `Open source ${n}`);
      button.addEventListener("click", () => open(n));
      fragment.append(button);
      last = match.index + match[0].length;
    }
    fragment.append(value.slice(last));
    node.replaceWith(fragment);
  }
}
