// Small DOM helpers shared by the modes.

/** `h("div", {class: "x", onclick: f}, child, "text")`: an element; strings become text nodes (never HTML). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Call `fn` at most once per animation frame; the first call runs at once (the first token shows without
 * waiting for a frame). */
export function throttled(fn) {
  let pending = false;
  let first = true;
  return () => {
    if (first) {
      first = false;
      fn();
      return;
    }
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      fn();
    });
  };
}

/** A folded block: `<details>` whose open state survives re-rendering through `holder.open`. */
export function folded(summary, holder, ...body) {
  const details = h("details", { class: "fold", open: holder.open ? true : undefined }, h("summary", {}, summary), ...body);
  details.addEventListener("toggle", () => {
    holder.open = details.open;
  });
  return details;
}
