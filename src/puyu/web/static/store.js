// Conversations and settings, kept in this browser's localStorage (nothing is stored on the server).

const CONVERSATIONS = "puyu.web.conversations.v1";
const SETTINGS = "puyu.web.settings.v1";

const DEFAULT_SETTINGS = { apiKey: "", system: "", temperature: 0.7, topP: 1, maxTokens: 512, seed: "" };

function read(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key));
    return value ?? fallback;
  } catch {
    return fallback;
  }
}

function write(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch (error) {
    console.warn("could not save to localStorage", error);
  }
}

export function settings() {
  return { ...DEFAULT_SETTINGS, ...read(SETTINGS, {}) };
}

export function saveSettings(values) {
  write(SETTINGS, { ...settings(), ...values });
}

export function conversations() {
  const all = read(CONVERSATIONS, []);
  return Array.isArray(all) ? all.filter((c) => c && typeof c.id === "string" && Array.isArray(c.messages)) : [];
}

export function getConversation(id) {
  return conversations().find((c) => c.id === id) ?? null;
}

export function newConversation(mode, model) {
  const now = Date.now();
  return { id: `c${now.toString(36)}${Math.random().toString(36).slice(2, 8)}`, title: "", mode, model, created: now, updated: now, messages: [] };
}

export function saveConversation(conversation) {
  conversation.updated = Date.now();
  if (!conversation.title) {
    const first = conversation.messages.find((m) => m.role === "user");
    if (first) conversation.title = first.content.replace(/\s+/g, " ").trim().slice(0, 48) || "Untitled";
  }
  const rest = conversations().filter((c) => c.id !== conversation.id);
  write(CONVERSATIONS, [conversation, ...rest]);
}

export function renameConversation(id, title) {
  write(CONVERSATIONS, conversations().map((c) => (c.id === id ? { ...c, title: title.trim().slice(0, 120) || c.title } : c)));
}

export function deleteConversation(id) {
  write(CONVERSATIONS, conversations().filter((c) => c.id !== id));
}

/** Save `data` as a JSON file download named `name`. */
export function downloadJSON(name, data) {
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}
