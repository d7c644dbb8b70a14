// Agent mode: POST /v1/agent, its step events rendered as they stream (tool calls and results folded,
// interpreter code and its images shown).

import { blobURL, streamSSE } from "./api.js";
import { history } from "./chat.js";
import { setMarkdown } from "./markdown.js";
import { folded, h } from "./ui.js";

const INTERPRETERS = new Set(["python", "ipythoninterpreter", "ipythoninteractive", "interpreter"]);

function interpreterCode(step) {
  if (!INTERPRETERS.has(String(step.name).toLowerCase())) return null;
  const args = step.arguments;
  if (typeof args === "string") return args;
  return typeof args?.code === "string" ? args.code : typeof args?.command === "string" ? args.command : null;
}

function codeBlock(text, language) {
  const block = h("div", { class: "markdown" });
  setMarkdown(block, `\`\`\`${language}\n${text.replaceAll("```", "` ``")}\n\`\`\``);
  return block;
}

function artifactView(artifact, message) {
  const name = String(artifact.name ?? "file");
  const cache = (message.artifactURLs ??= {});
  const shown = h("figure", { class: "artifact" }, h("figcaption", {}, name));
  const place = (url) => {
    if (String(artifact.mime).startsWith("image/")) shown.prepend(h("img", { src: url, alt: name }));
    else shown.append(h("a", { href: url, download: name }, `download ${name}`));
  };
  if (cache[artifact.url]) place(cache[artifact.url]);
  else if (artifact.url) {
    blobURL(artifact.url)
      .then((url) => {
        cache[artifact.url] = url;
        place(url);
      })
      .catch((error) => shown.append(h("span", { class: "error" }, error.message)));
  }
  return shown;
}

export const agentMode = {
  start: (conversation) => ({ role: "assistant", kind: "agent", content: "", draft: "", steps: [], model: conversation.model }),
  async run(conversation, message, signal, update, options) {
    const body = { model: message.model, messages: history(conversation, conversation.messages.indexOf(message)), session_id: conversation.id };
    if (options.tools) body.tools = options.tools;
    await streamSSE(
      "/v1/agent",
      body,
      (event) => {
        switch (event.type) {
          case "token":
            message.draft += event.content ?? "";
            break;
          case "thought":
            message.steps.push({ type: "thought", content: String(event.content ?? "") });
            message.draft = "";
            break;
          case "tool_call":
            message.steps.push({ type: "tool_call", id: event.id, name: String(event.name ?? "?"), arguments: event.arguments, result: null });
            message.draft = "";
            break;
          case "tool_result": {
            const call = [...message.steps].reverse().find((s) => s.type === "tool_call" && s.id === event.id && !s.result);
            const result = { content: String(event.content ?? ""), error: Boolean(event.error), artifacts: Array.isArray(event.artifacts) ? event.artifacts : [] };
            if (call) call.result = result;
            else message.steps.push({ type: "tool_call", id: event.id, name: String(event.name ?? "?"), arguments: null, result });
            break;
          }
          case "answer":
            message.content = String(event.content ?? "");
            message.draft = "";
            break;
          case "error":
            throw new Error(`the agent failed: ${event.message}`);
        }
        update();
      },
      signal,
    );
    if (!message.content && message.draft) message.content = message.draft;
  },
  render(message, body) {
    const steps = h("ol", { class: "steps" });
    for (const step of message.steps) {
      if (step.type === "thought") {
        const text = h("div", { class: "markdown" });
        setMarkdown(text, step.content);
        steps.append(h("li", { class: "step thought" }, folded("Thought", step, text)));
        continue;
      }
      const code = interpreterCode(step);
      const args = typeof step.arguments === "string" ? step.arguments : JSON.stringify(step.arguments ?? {}, null, 2);
      const state = step.result ? (step.result.error ? "failed" : "done") : "running";
      const parts = [];
      if (code === null) parts.push(h("div", { class: "label" }, "arguments"), codeBlock(args, "json"));
      if (step.result) {
        parts.push(h("div", { class: "label" }, step.result.error ? "error" : "result"), h("pre", { class: `tool-output${step.result.error ? " error" : ""}` }, step.result.content));
      }
      const item = h("li", { class: "step tool", dataset: { state, tool: step.name } });
      if (code !== null) item.append(h("div", { class: "step-head" }, `▶ ${step.name} (${state})`), codeBlock(code, "python"));
      item.append(folded(code !== null ? "output" : `tool ${step.name} (${state})`, step, ...parts));
      for (const artifact of step.result?.artifacts ?? []) item.append(artifactView(artifact, message));
      steps.append(item);
    }
    if (message.steps.length) body.append(steps);
    const answer = h("div", { class: "content markdown answer" });
    setMarkdown(answer, message.content || message.draft);
    body.append(answer);
  },
};
