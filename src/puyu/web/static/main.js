// The page: conversations, the mode and model pickers, the composer, settings; each mode renders its replies.

import { agentMode } from "./agent.js";
import { getJSON } from "./api.js";
import { chatMode, compareMode } from "./chat.js";
import { kbMode, knowledgeBases, upload } from "./kb.js";
import { searchMode } from "./search.js";
import * as store from "./store.js";
import { h, throttled } from "./ui.js";

const MODES = { chat: chatMode, compare: compareMode, agent: agentMode, kb: kbMode, search: searchMode };
const $ = (id) => document.getElementById(id);

const state = {
  conversation: null, // the open conversation (saved once it has a message)
  models: [],
  controller: null, // the AbortController of the reply being streamed
  tools: [], // agent tools offered by the server
  kbs: [],
};

// ------------------------------------------------------------------------------------------------ status

function banner(text) {
  $("banner").hidden = !text;
  $("banner").textContent = text ?? "";
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  document.body.dataset.busy = busy ? "true" : "false";
}

// ------------------------------------------------------------------------------------------------ rendering

function messageView(message, index) {
  const conversation = state.conversation;
  const body = h("div", { class: "body" });
  const view = h("article", { class: `message ${message.role}`, dataset: { index: String(index), state: message.state ?? "done" } });
  if (message.role === "user") {
    if (message.editing) {
      const box = h("textarea", { class: "edit-box", rows: "3", "aria-label": "Edit the message" });
      box.value = message.content;
      const save = () => {
        const text = box.value.trim();
        if (!text) return;
        delete message.editing;
        message.content = text;
        conversation.messages.splice(index + 1);
        store.saveConversation(conversation);
        reply();
      };
      box.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey) {
          event.preventDefault();
          save();
        } else if (event.key === "Escape") {
          delete message.editing;
          renderConversation();
        }
      });
      body.append(
        box,
        h("div", { class: "actions" },
          h("button", { type: "button", class: "save-edit", onclick: save }, "Save & send"),
          h("button", { type: "button", onclick: () => { delete message.editing; renderConversation(); } }, "Cancel"),
        ),
      );
      requestAnimationFrame(() => box.focus());
    } else {
      body.append(h("div", { class: "content plain" }, message.content));
      body.append(h("div", { class: "actions" }, h("button", { type: "button", class: "edit", onclick: () => edit(index) }, "Edit")));
    }
  } else {
    (MODES[message.kind ?? (message.columns ? "compare" : "chat")] ?? chatMode).render(message, body);
    if (message.state === "streaming") body.append(h("span", { class: "cursor", "aria-hidden": "true" }, "▌"));
    if (message.state === "stopped") body.append(h("p", { class: "hint" }, "(stopped)"));
    if (message.error) body.append(h("p", { class: "error", role: "alert" }, message.error));
    const last = index === conversation.messages.length - 1;
    if (last && message.state !== "streaming") {
      body.append(h("div", { class: "actions" }, h("button", { type: "button", class: "regenerate", onclick: regenerate }, "Regenerate")));
    }
  }
  view.append(body);
  return view;
}

function renderConversation() {
  const list = $("messages");
  list.replaceChildren();
  const conversation = state.conversation;
  if (!conversation || !conversation.messages.length) {
    list.append(h("p", { class: "empty" }, emptyText()));
    return;
  }
  conversation.messages.forEach((message, index) => list.append(messageView(message, index)));
  list.scrollTop = list.scrollHeight;
}

/** Redraw only the messages from `from` on (the earlier ones, their markdown and LaTeX, stay as drawn). */
function renderTail(from) {
  const conversation = state.conversation;
  const list = $("messages");
  const drawn = [...list.querySelectorAll(":scope > .message")];
  if (!conversation?.messages.length || drawn.length < from || list.querySelector(":scope > .empty")) return renderConversation();
  for (const view of drawn.slice(from)) view.remove();
  conversation.messages.slice(from).forEach((message, offset) => list.append(messageView(message, from + offset)));
  list.scrollTop = list.scrollHeight;
}

function rerender(message) {
  const index = state.conversation?.messages.indexOf(message);
  const old = document.querySelector(`#messages .message[data-index="${index}"]`);
  if (index === undefined || index < 0 || !old) return renderConversation();
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  old.replaceWith(messageView(message, index));
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function emptyText() {
  return {
    chat: "Ask anything.",
    compare: "Two models (or two temperatures) answer the same prompt side by side.",
    agent: "The agent can call the tools ticked above; its steps show as they happen.",
    kb: "Ask the knowledge base; answers cite the chunks they come from.",
    search: "A question is split into sub-questions, searched, and answered with references.",
  }[$("mode").value];
}

function renderList() {
  const list = $("conversations");
  list.replaceChildren();
  for (const conversation of store.conversations()) {
    const current = conversation.id === state.conversation?.id;
    const title = h("button", { type: "button", class: "title", "aria-current": current ? "true" : undefined, onclick: () => openConversation(conversation.id) }, conversation.title || "Untitled");
    const item = h("li", { dataset: { id: conversation.id, mode: conversation.mode } }, title,
      h("button", { type: "button", class: "icon rename", "aria-label": `Rename ${conversation.title}`, onclick: () => rename(item, conversation) }, "✎"),
      h("button", { type: "button", class: "icon delete", "aria-label": `Delete ${conversation.title}`, onclick: () => remove(conversation) }, "✕"),
    );
    list.append(item);
  }
}

// ------------------------------------------------------------------------------------------------ conversations

function fresh() {
  const conversation = store.newConversation($("mode").value, $("model").value);
  conversation.compare = compareSetup();
  return conversation;
}

function openConversation(id) {
  if (state.controller) return;
  const conversation = store.getConversation(id);
  if (!conversation) return;
  state.conversation = conversation;
  $("mode").value = MODES[conversation.mode] ? conversation.mode : "chat";
  if (conversation.model && [...$("model").options].some((o) => o.value === conversation.model)) $("model").value = conversation.model;
  modeChanged(false);
  renderConversation();
  renderList();
  document.body.classList.remove("sidebar-open");
  $("prompt").focus();
}

function rename(item, conversation) {
  const input = h("input", { class: "rename-box", value: conversation.title, "aria-label": "New name" });
  let finished = false;
  const done = (keep) => {
    if (finished) return; // Enter, then the blur of the removed box
    finished = true;
    if (keep) store.renameConversation(conversation.id, input.value);
    if (state.conversation?.id === conversation.id) state.conversation.title = store.getConversation(conversation.id)?.title ?? "";
    renderList();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") done(true);
    if (event.key === "Escape") done(false);
  });
  input.addEventListener("blur", () => done(true));
  item.querySelector(".title").replaceWith(input);
  input.focus();
  input.select();
}

function remove(conversation) {
  if (!confirm(`Delete “${conversation.title}”?`)) return;
  store.deleteConversation(conversation.id);
  if (state.conversation?.id === conversation.id) {
    state.conversation = fresh();
    renderConversation();
  }
  renderList();
}

function exportName(title) {
  return `${(title || "conversation").replace(/[^\p{L}\p{N}]+/gu, "-").slice(0, 40) || "conversation"}.json`;
}

// ------------------------------------------------------------------------------------------------ replies

function modeOptions() {
  const mode = $("mode").value;
  if (mode === "agent") return { tools: [...document.querySelectorAll("#mode-bar input[name=tool]:checked")].map((i) => i.value) };
  if (mode === "kb") return { kb: $("kb-select")?.value || state.kbs[0]?.name || "" };
  return {};
}

async function reply() {
  const conversation = state.conversation;
  const mode = MODES[conversation.mode] ?? chatMode;
  const options = modeOptions();
  const message = { id: `m${Date.now().toString(36)}`, state: "streaming", ...mode.start(conversation, options) };
  conversation.messages.push(message);
  const controller = new AbortController();
  state.controller = controller;
  // the request goes out first (fetch starts before run's first await); saving and drawing overlap with it
  const running = mode.run(conversation, message, controller.signal, throttled(() => rerender(message)), options);
  setBusy(true);
  renderTail(Math.max(0, conversation.messages.length - 3)); // the new turn and the reply before it
  // storing (and listing a new conversation) waits a moment: it must not compete with the first token
  setTimeout(() => {
    const listed = store.getConversation(conversation.id);
    store.saveConversation(conversation);
    if (!listed || listed.title !== conversation.title) renderList();
  }, 250);
  try {
    await running;
    message.state = "done";
  } catch (error) {
    if (error.name === "AbortError") message.state = "stopped";
    else {
      message.state = "error";
      message.error = error.message;
    }
  } finally {
    state.controller = null;
    setBusy(false);
    store.saveConversation(conversation);
    rerender(message);
    renderList();
  }
}

function submit(text) {
  if (state.controller || !text.trim()) return;
  if (!state.conversation) state.conversation = fresh();
  const conversation = state.conversation;
  if (!conversation.messages.length) {
    conversation.mode = $("mode").value;
    conversation.model = $("model").value;
    conversation.compare = compareSetup();
  }
  conversation.messages.push({ role: "user", content: text.trim() });
  $("prompt").value = "";
  reply();
}

function regenerate() {
  const conversation = state.conversation;
  if (state.controller || conversation.messages.at(-1)?.role !== "assistant") return;
  conversation.messages.pop();
  reply();
}

function edit(index) {
  if (state.controller) return;
  state.conversation.messages[index].editing = true;
  renderConversation();
}

function stop() {
  state.controller?.abort();
}

// ------------------------------------------------------------------------------------------------ models, modes, settings

async function loadModels() {
  try {
    const listed = await getJSON("/v1/models");
    state.models = (listed.data ?? []).map((m) => String(m.id));
    banner("");
  } catch (error) {
    state.models = [];
    banner(error.status === 401 ? `${error.message}` : `Could not list the models: ${error.message}`);
    if (error.status === 401 && !$("settings").open) openSettings();
    if (error.status === 503) setTimeout(loadModels, 2000); // the model is still loading
  }
  const picker = $("model");
  const previous = state.conversation?.model || picker.value;
  picker.replaceChildren(...state.models.filter((m) => !m.startsWith("kb:")).map((m) => h("option", { value: m }, m)));
  if (state.models.includes(previous)) picker.value = previous;
  await modeChanged(false);
}

function compareSetup() {
  const models = [$("model").value, $("compare-model")?.value || $("model").value];
  const temperatures = [Number($("compare-temp-a")?.value ?? 0.7), Number($("compare-temp-b")?.value ?? 0.7)];
  return { models, temperatures };
}

async function modeChanged(startNew = true) {
  const mode = $("mode").value;
  const bar = $("mode-bar");
  bar.replaceChildren();
  $("model-field").hidden = mode === "kb";
  if (mode === "compare") {
    const other = h("select", { id: "compare-model" }, ...state.models.filter((m) => !m.startsWith("kb:")).map((m) => h("option", { value: m }, m)));
    bar.append(
      h("label", { class: "field" }, "Temperature A ", h("input", { id: "compare-temp-a", type: "number", step: "0.1", min: "0", max: "2", value: "0" })),
      h("label", { class: "field" }, "Model B ", other),
      h("label", { class: "field" }, "Temperature B ", h("input", { id: "compare-temp-b", type: "number", step: "0.1", min: "0", max: "2", value: "1" })),
    );
  } else if (mode === "agent") {
    try {
      state.tools = ((await getJSON("/v1/agent/tools")).data ?? []).map((t) => ({ name: String(t.name), description: String(t.description ?? "") }));
      bar.append(h("span", { class: "field" }, "Tools:"), ...state.tools.map((t) => h("label", { class: "tool", title: t.description }, h("input", { type: "checkbox", name: "tool", value: t.name, checked: true }), ` ${t.name}`)));
    } catch (error) {
      bar.append(h("span", { class: "error" }, `Agent tools unavailable: ${error.message}`));
    }
  } else if (mode === "kb") {
    state.kbs = await knowledgeBases(state.models);
    const picker = h("select", { id: "kb-select" }, ...state.kbs.map((kb) => h("option", { value: kb.name, title: kb.detail }, kb.name)));
    const files = h("input", { id: "kb-files", type: "file", multiple: true, "aria-label": "Files to add to the knowledge base" });
    const status = h("span", { id: "kb-status", role: "status" }, state.kbs.length ? "" : "no knowledge base is served");
    const send = async () => {
      if (!files.files.length || !picker.value) return;
      status.textContent = "uploading…";
      try {
        status.textContent = await upload(picker.value, files.files);
        state.kbs = await knowledgeBases(state.models);
      } catch (error) {
        status.textContent = error.message;
      }
    };
    bar.append(h("label", { class: "field" }, "Knowledge base ", picker), files, h("button", { type: "button", id: "kb-upload", onclick: send }, "Upload"), status);
  }
  if (startNew && state.conversation?.mode !== mode) {
    state.conversation = fresh();
    renderConversation();
    renderList();
  } else if (!state.conversation?.messages.length) {
    renderConversation();
  }
}

function openSettings() {
  const s = store.settings();
  $("api-key").value = s.apiKey;
  $("system-prompt").value = s.system;
  $("temperature").value = s.temperature;
  $("top-p").value = s.topP;
  $("max-tokens").value = s.maxTokens;
  $("seed").value = s.seed;
  $("settings").showModal();
  (s.apiKey ? $("system-prompt") : $("api-key")).focus();
}

function saveSettings() {
  const number = (id, fallback) => (Number.isFinite(Number($(id).value)) && $(id).value !== "" ? Number($(id).value) : fallback);
  const before = store.settings().apiKey;
  store.saveSettings({
    apiKey: $("api-key").value.trim(),
    system: $("system-prompt").value,
    temperature: number("temperature", 0.7),
    topP: number("top-p", 1),
    maxTokens: number("max-tokens", 512),
    seed: $("seed").value === "" ? "" : number("seed", ""),
  });
  if (store.settings().apiKey !== before || !state.models.length) loadModels();
}

// ------------------------------------------------------------------------------------------------ wiring

function wire() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    submit($("prompt").value);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit($("prompt").value);
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.controller) stop();
  });
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", () => {
    if (state.controller) return;
    state.conversation = fresh();
    renderConversation();
    renderList();
    $("prompt").focus();
  });
  $("mode").addEventListener("change", () => modeChanged(true));
  $("model").addEventListener("change", () => {
    if (state.conversation && !state.conversation.messages.length) state.conversation.model = $("model").value;
    else if (state.conversation) {
      state.conversation.model = $("model").value;
      store.saveConversation(state.conversation);
    }
  });
  $("open-settings").addEventListener("click", openSettings);
  $("settings").addEventListener("close", () => {
    if ($("settings").returnValue === "save") saveSettings();
  });
  $("export").addEventListener("click", () => {
    const conversation = state.conversation;
    if (conversation?.messages.length) store.downloadJSON(exportName(conversation.title), conversation);
  });
  $("export-all").addEventListener("click", () => store.downloadJSON("puyu-conversations.json", store.conversations()));
  $("open-sidebar").addEventListener("click", () => {
    document.body.classList.add("sidebar-open");
    $("new-chat").focus();
  });
  $("close-sidebar").addEventListener("click", () => {
    document.body.classList.remove("sidebar-open");
    $("open-sidebar").focus();
  });
}

wire();
setBusy(false);
state.conversation = fresh();
renderList();
renderConversation();
loadModels().then(() => {
  if (state.conversation && !state.conversation.messages.length) state.conversation.model = $("model").value;
  document.body.dataset.ready = "true";
});
