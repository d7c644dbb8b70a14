// HTTP to the OpenAI-compatible API on this origin: JSON calls, SSE streams, and errors as plain sentences.

import { settings } from "./store.js";

export class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.status = status;
  }
}

function headers(extra = {}) {
  const out = { ...extra };
  const key = settings().apiKey;
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

async function failure(response) {
  let detail = "";
  try {
    const text = await response.text();
    try {
      const body = JSON.parse(text);
      detail = body?.error?.message ?? body?.detail ?? text;
      if (typeof detail !== "string") detail = JSON.stringify(detail);
    } catch {
      detail = text;
    }
  } catch {
    // the body is unreadable; the status says enough
  }
  const hint = response.status === 401 ? " — set the API key in Settings" : "";
  return new ApiError(`HTTP ${response.status}: ${detail.slice(0, 500) || response.statusText}${hint}`, response.status);
}

async function send(path, init) {
  try {
    return await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(`cannot reach the server (is it running?): ${error.message}`);
  }
}

export async function getJSON(path) {
  const response = await send(path, { headers: headers() });
  if (!response.ok) throw await failure(response);
  return response.json();
}

export async function postForm(path, form) {
  const response = await send(path, { method: "POST", headers: headers(), body: form });
  if (!response.ok) throw await failure(response);
  return response.json();
}

/** A same-origin file (an agent artifact) fetched with the API key, as an object URL for <img>/<a>. */
export async function blobURL(url) {
  const target = new URL(url, location.href);
  if (target.origin !== location.origin) throw new ApiError(`refusing to fetch ${url}: not on this server`);
  const response = await send(target.href, { headers: headers() });
  if (!response.ok) throw await failure(response);
  return URL.createObjectURL(await response.blob());
}

/**
 * POST `body` to `path` and call `onEvent(json)` for each `data:` line of the SSE reply until `[DONE]`.
 * Rejects with an ApiError on HTTP errors, `{"error": …}` events, a lost connection or a stream cut short.
 */
export async function streamSSE(path, body, onEvent, signal) {
  const response = await send(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let seen = 0;
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(`the connection to the server was lost mid-reply: ${error.message}`);
    }
    if (chunk.done) break;
    buffer += decoder.decode(chunk.value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      let event;
      try {
        event = JSON.parse(data);
      } catch {
        throw new ApiError(`the server sent an unreadable event: ${data.slice(0, 200)}`);
      }
      if (event && event.error) throw new ApiError(`the server reported an error: ${event.error.message ?? event.error}`);
      if (!seen++) performance.mark("puyu:first-event"); // read by benchmarks/web_page.py
      onEvent(event);
    }
  }
  throw new ApiError("the reply ended early: the server closed the connection before finishing");
}
