// Search mode: POST /v1/search, the live graph of sub-questions (state and answer per node) and the cited answer.

import { streamSSE } from "./api.js";
import { linkCitations, setMarkdown } from "./markdown.js";
import { folded, h } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";

/** Column of each node: 0 for roots, else one past its deepest dependency (cycles cut). */
function depths(nodes) {
  const depth = {};
  const visit = (id, trail) => {
    if (id in depth) return depth[id];
    if (trail.has(id) || !nodes[id]) return 0;
    trail.add(id);
    const parents = nodes[id].depends_on.filter((p) => nodes[p]);
    depth[id] = parents.length ? 1 + Math.max(...parents.map((p) => visit(p, trail))) : 0;
    return depth[id];
  };
  for (const id of Object.keys(nodes)) visit(id, new Set());
  return depth;
}

function drawEdges(graph, nodes) {
  graph.querySelector("svg")?.remove();
  const box = graph.getBoundingClientRect();
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "edges");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("width", String(graph.scrollWidth));
  svg.setAttribute("height", String(graph.scrollHeight));
  for (const node of Object.values(nodes)) {
    const to = graph.querySelector(`[data-node="${CSS.escape(node.id)}"]`);
    for (const parent of node.depends_on) {
      const from = graph.querySelector(`[data-node="${CSS.escape(parent)}"]`);
      if (!from || !to) continue;
      const a = from.getBoundingClientRect();
      const b = to.getBoundingClientRect();
      const line = document.createElementNS(SVG, "line");
      line.setAttribute("x1", String(a.right - box.left + graph.scrollLeft));
      line.setAttribute("y1", String(a.top + a.height / 2 - box.top + graph.scrollTop));
      line.setAttribute("x2", String(b.left - box.left + graph.scrollLeft));
      line.setAttribute("y2", String(b.top + b.height / 2 - box.top + graph.scrollTop));
      svg.append(line);
    }
  }
  graph.prepend(svg);
}

export const searchMode = {
  start: (conversation) => ({ role: "assistant", kind: "search", model: conversation.model, nodes: {}, order: [], content: "", references: [] }),
  async run(conversation, message, signal, update) {
    const question = conversation.messages[conversation.messages.indexOf(message) - 1]?.content ?? "";
    await streamSSE(
      "/v1/search",
      { question, model: message.model },
      (event) => {
        switch (event.type) {
          case "node": {
            const incoming = event.node ?? {};
            const id = String(incoming.id);
            const known = message.nodes[id];
            if (!known) message.order.push(id);
            message.nodes[id] = {
              partial: "",
              answer: "",
              ...known,
              id,
              question: String(incoming.question ?? known?.question ?? ""),
              depends_on: Array.isArray(incoming.depends_on) ? incoming.depends_on.map(String) : (known?.depends_on ?? []),
              state: String(incoming.state ?? "pending"),
            };
            break;
          }
          case "node_token":
            if (message.nodes[event.id]) message.nodes[event.id].partial += event.content ?? "";
            break;
          case "node_done":
            if (message.nodes[event.id]) Object.assign(message.nodes[event.id], { answer: String(event.answer ?? ""), state: "done" });
            break;
          case "token":
            message.content += event.content ?? "";
            break;
          case "references":
            message.references = Array.isArray(event.references) ? event.references : [];
            break;
          case "answer":
            message.content = String(event.content ?? "");
            break;
          case "error":
            throw new Error(`the search failed: ${event.message}`);
        }
        update();
      },
      signal,
    );
  },
  render(message, body) {
    const depth = depths(message.nodes);
    const columns = [];
    for (const id of message.order) (columns[depth[id] ?? 0] ??= []).push(message.nodes[id]);
    const graph = h("div", { class: "graph", role: "group", "aria-label": "Sub-questions" });
    for (const column of columns) {
      const lane = h("div", { class: "lane" });
      for (const node of column ?? []) {
        const answer = h("div", { class: "markdown" });
        setMarkdown(answer, node.answer || node.partial);
        lane.append(
          h(
            "div",
            { class: "node", dataset: { node: node.id, state: node.state } },
            h("div", { class: "node-head" }, h("span", { class: "badge" }, node.state), " ", node.question),
            node.answer || node.partial ? folded("answer", node, answer) : null,
          ),
        );
      }
      graph.append(lane);
    }
    if (message.order.length) {
      body.append(graph);
      requestAnimationFrame(() => drawEdges(graph, message.nodes));
      graph.addEventListener("toggle", () => drawEdges(graph, message.nodes), true); // a node grew or shrank
    }
    const content = h("div", { class: "content markdown answer" });
    setMarkdown(content, message.content);
    const byNumber = new Map(message.references.map((r) => [Number(r.n), r]));
    linkCitations(content, new Set(byNumber.keys()), (n) => document.getElementById(`${message.id ?? "m"}-ref-${n}`)?.focus());
    body.append(content);
    if (message.references.length) {
      const list = h("ol", { class: "sources", "aria-label": "References" });
      for (const ref of message.references) {
        const safe = typeof ref.url === "string" && /^https?:\/\//i.test(ref.url);
        const label = `[${ref.n}] ${ref.title ?? ref.source ?? ref.url ?? "?"}`;
        const target = safe
          ? h("a", { href: ref.url, target: "_blank", rel: "noopener noreferrer nofollow", id: `${message.id ?? "m"}-ref-${ref.n}` }, label)
          : h("span", { tabindex: "-1", id: `${message.id ?? "m"}-ref-${ref.n}` }, label, ref.source ? ` (${ref.source} ${ref.start ?? ""}–${ref.end ?? ""})` : "");
        list.append(h("li", {}, target));
      }
      body.append(list);
    }
  },
};
