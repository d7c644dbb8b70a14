// Knowledge-base mode: chat with `kb:NAME` (citations, refusals), open a cited chunk, upload files.

import { getJSON, postForm } from "./api.js";
import { history, samplingBody, streamChat } from "./chat.js";
import { linkCitations, setMarkdown } from "./markdown.js";
import { h } from "./ui.js";

/** Show a cited chunk: fetched from the server, or the citation's own text if that fails. */
export async function openChunk(kb, citation) {
  const dialog = document.getElementById("chunk-view");
  const source = document.getElementById("chunk-source");
  const text = document.getElementById("chunk-text");
  const describe = (c) => `[${citation.n}] ${c.source ?? "?"} · characters ${c.start ?? "?"}–${c.end ?? "?"} · chunk ${c.chunk_id ?? "?"}`;
  source.textContent = describe(citation);
  text.textContent = citation.text ?? "";
  if (!dialog.open) dialog.showModal();
  if (!kb || !citation.chunk_id) return;
  try {
    const chunk = await getJSON(`/v1/kb/${encodeURIComponent(kb)}/chunks/${encodeURIComponent(citation.chunk_id)}`);
    source.textContent = describe(chunk);
    text.textContent = chunk.text ?? "";
  } catch (error) {
    source.textContent = `${describe(citation)} (the server could not give the chunk: ${error.message})`;
  }
}

/** Names of the knowledge bases: GET /v1/kb, else the `kb:` models. */
export async function knowledgeBases(models) {
  try {
    const listed = await getJSON("/v1/kb");
    return (listed.data ?? []).map((kb) => ({ name: String(kb.name), detail: `${kb.documents ?? "?"} documents, ${kb.chunks ?? "?"} chunks` }));
  } catch {
    return models.filter((m) => m.startsWith("kb:")).map((m) => ({ name: m.slice(3), detail: "" }));
  }
}

/** Upload files into a knowledge base; returns a one-line summary. */
export async function upload(kb, files) {
  const form = new FormData();
  for (const file of files) form.append("file", file, file.name);
  const result = await postForm(`/v1/kb/${encodeURIComponent(kb)}/files`, form);
  const skipped = (result.skipped ?? []).map((s) => `${s.file} (${s.reason})`);
  return `added ${(result.added ?? []).length}, changed ${(result.changed ?? []).length}, ${result.chunks ?? "?"} chunks` + (skipped.length ? `; skipped ${skipped.join(", ")}` : "");
}

export const kbMode = {
  start: (conversation, options) => ({ role: "assistant", kind: "kb", kb: options.kb, content: "", citations: [], rejected: false, reason: null }),
  async run(conversation, message, signal, update) {
    if (!message.kb) throw new Error("no knowledge base chosen (none is served, or pick one above)");
    const body = { model: `kb:${message.kb}`, messages: history(conversation, conversation.messages.indexOf(message)), ...samplingBody() };
    const extras = await streamChat(body, message, signal, update);
    message.citations = Array.isArray(extras.citations) ? extras.citations : [];
    message.rejected = Boolean(extras.rejected);
    message.reason = extras.reason ?? null;
  },
  render(message, body) {
    if (message.rejected) {
      body.append(h("div", { class: "refused", role: "note" }, h("strong", {}, "Refused: "), message.reason || "the knowledge base has nothing on this question"));
    }
    const content = h("div", { class: "content markdown" });
    setMarkdown(content, message.content);
    const byNumber = new Map(message.citations.map((c) => [Number(c.n), c]));
    linkCitations(content, new Set(byNumber.keys()), (n) => openChunk(message.kb, byNumber.get(n)));
    body.append(content);
    if (message.citations.length) {
      const list = h("ol", { class: "sources", "aria-label": "Sources" });
      for (const citation of message.citations) {
        list.append(h("li", {}, h("button", { type: "button", class: "link", onclick: () => openChunk(message.kb, citation) }, `[${citation.n}] ${citation.source ?? "?"}`)));
      }
      body.append(list);
    }
  },
};
