// Small DOM helpers. Text always goes in as text nodes (never HTML): node texts, prompts and
// error messages are user or server data.

const SVG_NS = "http://www.w3.org/2000/svg";

/** h("button.primary", {onclick, title}, "Label", child...) */
export function h(tag, props = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name || "div");
  if (classes.length) el.className = classes.join(" ");
  applyProps(el, props);
  append(el, children);
  return el;
}

export function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function applyProps(el, props) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

export function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** Set text only when it changed (keeps layout work down on big boards). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

export function debounce(fn, ms) {
  let t = null;
  const wrapped = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => {
      t = null;
      fn(...args);
    }, ms);
  };
  wrapped.flush = (...args) => {
    if (t !== null) {
      clearTimeout(t);
      t = null;
      fn(...args);
    }
  };
  wrapped.cancel = () => {
    clearTimeout(t);
    t = null;
  };
  return wrapped;
}

let toastRoot = null;

/** A short message at the bottom of the window; `action` adds a button. */
export function toast(message, { kind = "info", action = null, ms = 6000 } = {}) {
  toastRoot = toastRoot || document.getElementById("toasts");
  const el = h(`div.toast.${kind}`, { role: kind === "error" ? "alert" : "status" }, h("span", { text: message }));
  if (action) {
    el.append(h("button.link", { type: "button", onclick: () => { action.run(); el.remove(); } }, action.label));
  }
  el.append(h("button.close", { type: "button", "aria-label": "Dismiss", onclick: () => el.remove() }, "×"));
  toastRoot.append(el);
  setTimeout(() => el.remove(), ms);
  return el;
}

export function shortDate(iso) {
  try {
    return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  } catch {
    return iso;
  }
}
