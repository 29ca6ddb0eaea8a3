// One node's DOM: built once, then patched in place when its JSON changes.

import { imageObjectUrl } from "./api.js";
import { h, setText } from "./dom.js";

export const NODE_WIDTH = 220;
export const PORT_Y = 17; // ports sit on the header, so edges never need a node's height

const TITLES = { text: "Text", image: "Image", video: "Video" };
const TOOL_LABELS = { upload: "Upload", crop: "Crop", fullscreen: "Full screen", download: "Download" };
// Reasons a node shows on its face (a missing prompt is said in the panel, not on every node).
const FACE_REASONS = new Set(["upstream_in_progress", "downstream_in_progress"]);

/**
 * Build the element of `node`. `actions` receives the node's clicks:
 * {tool(nodeId, name), editText(nodeId, text), remove(nodeId)}.
 */
export function createNodeElement(node, actions) {
  const el = h("div.node", {
    dataset: { nodeId: node.id, kind: node.kind },
    "data-testid": `node-${node.kind}`,
    tabIndex: 0,
  });
  el.classList.add(`kind-${node.kind}`);
  const head = h("div.node-head", {},
    h("span.node-title", { text: TITLES[node.kind] || node.kind }),
    h("span.node-badge"),
    h("button.node-del", { type: "button", title: "Delete node", "aria-label": "Delete node",
      onclick: (e) => { e.stopPropagation(); actions.remove(node.id); } }, "×"));
  const body = h("div.node-body");
  el.append(head, body,
    h("div.port.in", { title: "Input" }),
    h("div.port.out", { title: "Drag to another node to connect" }));
  if (node.kind === "text") {
    const area = h("textarea.text-input", { placeholder: "Write text…", "aria-label": "Text", rows: 4,
      maxLength: 5000 });
    area.addEventListener("input", () => actions.editText(node.id, area.value));
    area.addEventListener("blur", () => actions.editText(node.id, area.value, true));
    body.append(area);
  } else if (node.kind === "image") {
    const display = h("div.display", {},
      h("img.thumb", { alt: "", hidden: true, draggable: false }),
      h("div.placeholder", { text: "No image" }));
    const tools = h("div.toolbar", { role: "toolbar", "aria-label": "Image tools" });
    tools.addEventListener("click", (e) => {
      const btn = e.target.closest("button[data-tool]");
      if (btn) {
        e.stopPropagation();
        actions.tool(node.id, btn.dataset.tool);
      }
    });
    display.append(tools);
    body.append(display,
      h("div.node-status"),
      h("progress.node-progress", { max: 1, hidden: true }));
  } else {
    body.append(h("div.placeholder", { text: "No media yet" }), h("div.node-status"));
  }
  return el;
}

/** Patch `el` to show `node` (and `gen`, what the live generation events said). */
export function updateNodeElement(el, node, gen) {
  el.classList.toggle("status-generating", node.status === "generating");
  el.classList.toggle("status-failed", node.status === "failed");
  if (node.kind === "text") {
    const area = el.querySelector(".text-input");
    // Never overwrite what the person is typing; the saved text catches up on blur.
    if (document.activeElement !== area && area.value !== node.text) area.value = node.text || "";
    return;
  }
  if (node.kind === "video") {
    const n = (node.references || []).length;
    setText(el.querySelector(".node-status"), n ? `${n} reference${n === 1 ? "" : "s"}` : "");
    return;
  }
  setText(el.querySelector(".node-badge"), badge(node));
  const img = el.querySelector(".thumb");
  const placeholder = el.querySelector(".placeholder");
  const image = node.image;
  const wanted = image ? image.thumbnail_url : "";
  if (img.dataset.src !== wanted) {
    img.dataset.src = wanted;
    img.hidden = true;
    img.removeAttribute("src");
    if (wanted) {
      img.alt = `Image ${image.width}×${image.height}`;
      imageObjectUrl(wanted).then((src) => {
        if (img.dataset.src === wanted) {
          img.src = src;
          img.hidden = false;
        }
      }, () => setText(placeholder, "Image unavailable"));
    }
  }
  if (placeholder.hidden !== Boolean(image)) placeholder.hidden = Boolean(image);
  setText(placeholder, image ? "" : node.status === "generating" ? "Generating…" : "No image");
  const tools = el.querySelector(".toolbar");
  const names = (node.toolbar || []).join(",");
  if (tools.dataset.names !== names) {
    tools.dataset.names = names;
    tools.replaceChildren(...(node.toolbar || []).map((t) =>
      h("button.tool", { type: "button", dataset: { tool: t }, text: TOOL_LABELS[t] || t })));
  }
  const status = statusLine(node, gen);
  const line = el.querySelector(".node-status");
  setText(line, status.text);
  if (line.dataset.kind !== status.kind) line.dataset.kind = status.kind;
  const bar = el.querySelector(".node-progress");
  if (bar.hidden !== (status.percentage === null)) bar.hidden = status.percentage === null;
  if (status.percentage !== null) bar.value = status.percentage;
}

function badge(node) {
  if (node.status === "generating") return "generating";
  if (node.status === "failed") return "failed";
  return "";
}

/** What the node says under its image: progress, failure, or why it cannot generate now. */
export function statusLine(node, gen) {
  let percentage = null;
  if (node.status === "generating") {
    const progress = gen && gen.progress;
    if (progress && typeof progress.percentage === "number") {
      percentage = Math.max(0, Math.min(1, progress.percentage));
      return { kind: "busy", text: `Generating… ${Math.round(percentage * 100)}%`, percentage };
    }
    if (progress && typeof progress.queue_position === "number") {
      return { kind: "busy", text: `Waiting in the model's queue (position ${progress.queue_position})…`, percentage };
    }
    if (gen && gen.status === "queued") return { kind: "busy", text: "Queued…", percentage };
    return { kind: "busy", text: "Generating…", percentage };
  }
  if (node.status === "failed" && node.error) {
    return { kind: "error", text: `Failed: ${node.error.message}`, percentage };
  }
  const g = node.generate;
  if (g && !g.enabled && FACE_REASONS.has(g.reason_code)) return { kind: "wait", text: g.reason, percentage };
  if (gen && gen.status === "canceled" && node.status !== "ready") return { kind: "info", text: "Canceled.", percentage };
  return { kind: "", text: "", percentage };
}

export const toolLabel = (name) => TOOL_LABELS[name] || name;
