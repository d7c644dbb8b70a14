// Chat and compare: /v1/chat/completions, streamed.

import { streamSSE } from "./api.js";
import { setMarkdown } from "./markdown.js";
import { settings } from "./store.js";
import { h } from "./ui.js";

/** The conversation as OpenAI messages, with the system prompt; `column` picks a compare column's replies. */
export function history(conversation, upTo = conversation.messages.length, column = 0) {
  const system = settings().system.trim();
  const out = system ? [{ role: "system", content: system }] : [];
  for (const message of conversation.messages.slice(0, upTo)) {
    if (message.role === "user") out.push({ role: "user", content: message.content });
    else {
      const content = message.columns ? message.columns[column]?.content : message.content;
      if (content) out.push({ role: "assistant", content });
    }
  }
  return out;
}

export function samplingBody(overrides = {}) {
  const s = settings();
  const body = { temperature: Number(s.temperature), top_p: Number(s.topP), max_tokens: Number(s.maxTokens) };
  if (s.seed !== "" && s.seed !== null && !Number.isNaN(Number(s.seed))) body.seed = Number(s.seed);
  return { ...body, ...overrides };
}

/** Stream one chat reply into `target.content`; returns the last chunk's delta extras. */
export async function streamChat(body, target, signal, update) {
  const extras = {};
  await streamSSE(
    "/v1/chat/completions",
    { ...body, stream: true },
    (event) => {
      const choice = event.choices?.[0];
      if (!choice) return;
      const delta = choice.delta ?? {};
      if (typeof delta.content === "string" && delta.content) {
        target.content += delta.content;
        update();
      }
      for (const key of ["citations", "rejected", "reason"]) if (key in delta) extras[key] = delta[key];
      if (choice.finish_reason) target.finish = choice.finish_reason;
    },
    signal,
  );
  return extras;
}

export const chatMode = {
  start: (conversation) => ({ role: "assistant", content: "", model: conversation.model }),
  async run(conversation, message, signal, update) {
    const messages = history(conversation, conversation.messages.indexOf(message));
    await streamChat({ model: message.model, messages, ...samplingBody() }, message, signal, update);
  },
  render(message, body) {
    const content = h("div", { class: "content markdown" });
    setMarkdown(content, message.content);
    body.append(content);
    if (message.finish === "length") body.append(h("p", { class: "hint" }, "(stopped at the max-tokens limit)"));
  },
};

export const compareMode = {
  start(conversation) {
    const setup = conversation.compare;
    return {
      role: "assistant",
      columns: [0, 1].map((i) => ({ model: setup.models[i], temperature: setup.temperatures[i], content: "", state: "streaming" })),
    };
  },
  async run(conversation, message, signal, update) {
    const upTo = conversation.messages.indexOf(message);
    const runs = message.columns.map(async (column, i) => {
      try {
        const body = { model: column.model, messages: history(conversation, upTo, i), ...samplingBody({ temperature: Number(column.temperature) }) };
        await streamChat(body, column, signal, update);
        column.state = "done";
      } catch (error) {
        column.state = error.name === "AbortError" ? "stopped" : "error";
        if (column.state === "error") column.error = error.message;
      }
      update();
    });
    await Promise.all(runs);
    if (signal.aborted) throw new DOMException("stopped", "AbortError");
  },
  render(message, body) {
    const grid = h("div", { class: "columns" });
    for (const column of message.columns) {
      const content = h("div", { class: "content markdown" });
      setMarkdown(content, column.content);
      grid.append(
        h(
          "div",
          { class: "column", dataset: { state: column.state } },
          h("div", { class: "column-head" }, `${column.model} · temperature ${column.temperature}`),
          content,
          column.error ? h("p", { class: "error", role: "alert" }, column.error) : null,
        ),
      );
    }
    body.append(grid);
  },
};
