// The display area's toolbar: crop, full screen, download.

import { API_BASE, api, fetchBlob } from "./api.js";
import { h, toast } from "./dom.js";

function overlay(label, onClose) {
  const el = h("div.overlay", { role: "dialog", "aria-modal": "true", "aria-label": label });
  const close = () => {
    document.removeEventListener("keydown", onKey);
    el.remove();
    onClose?.();
  };
  const onKey = (e) => {
    if (e.key === "Escape") close();
  };
  document.addEventListener("keydown", onKey);
  document.body.append(el);
  return { el, close };
}

async function contentUrl(nodeId) {
  const { blob } = await fetchBlob(`${API_BASE}/v1/nodes/${nodeId}/image/content`);
  return URL.createObjectURL(blob);
}

/** The node's image over the whole window (the `/image/content` route, its 302 followed). */
export async function openFullscreen(node) {
  let src = null;
  const { el, close } = overlay("Full screen image", () => src && URL.revokeObjectURL(src));
  el.classList.add("fullscreen");
  const img = h("img.full", { alt: "Full screen image" });
  el.append(img, h("button.close.overlay-close", { type: "button", "aria-label": "Close full screen", onclick: close }, "×"));
  el.addEventListener("click", (e) => {
    if (e.target === el) close();
  });
  try {
    src = await contentUrl(node.id);
    img.src = src;
  } catch (exc) {
    close();
    toast(exc.message, { kind: "error" });
  }
}

/** Save the node's image (the `/image/download` route) under the name storage gives it. */
export async function download(node) {
  try {
    const { blob, response } = await fetchBlob(`${API_BASE}/v1/nodes/${node.id}/image/download`);
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: filename(response, node), hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
  } catch (exc) {
    toast(exc.message, { kind: "error" });
  }
}

function filename(response, node) {
  const fromHeader = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(response.headers.get("Content-Disposition") || "");
  if (fromHeader) return decodeURIComponent(fromHeader[1]);
  try {
    const u = new URL(response.url);
    const direct = u.searchParams.get("filename");
    if (direct) return direct;
    const disposition = /filename="?([^";]+)"?/.exec(u.searchParams.get("response-content-disposition") || "");
    if (disposition) return disposition[1];
  } catch {
    // fall through to a name of our own
  }
  const ext = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp" }[node.image?.content_type] || "img";
  return `easel-${node.id}.${ext}`;
}

/**
 * Drag a rectangle on the image, then Apply: POST /image/crop in the image's own pixels.
 * `done(node)` gets the node with the cropped image.
 */
export async function openCrop(node, done) {
  const image = node.image;
  let src = null;
  const { el, close } = overlay("Crop image", () => src && URL.revokeObjectURL(src));
  el.classList.add("crop");
  const img = h("img.crop-image", { alt: "Image to crop", draggable: false });
  const rect = h("div.crop-rect", { hidden: true });
  const stage = h("div.crop-stage", { "data-testid": "crop-stage" }, img, rect);
  const size = h("span.crop-size", { text: "Drag on the image to choose the area to keep." });
  const apply = h("button.primary", { type: "button", disabled: true }, "Apply crop");
  el.append(h("div.crop-box", {},
    h("h2", { text: "Crop" }), stage,
    h("div.crop-actions", {}, size,
      h("button.secondary", { type: "button", onclick: close }, "Cancel"), apply)));
  let sel = null; // in image pixels
  try {
    src = await contentUrl(node.id);
  } catch (exc) {
    close();
    toast(exc.message, { kind: "error" });
    return;
  }
  img.src = src;
  await img.decode().catch(() => {});
  const scale = () => image.width / img.clientWidth;
  stage.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    const box = img.getBoundingClientRect();
    const clamp = (v, max) => Math.max(0, Math.min(max, v));
    const x0 = clamp(e.clientX - box.left, box.width);
    const y0 = clamp(e.clientY - box.top, box.height);
    stage.setPointerCapture(e.pointerId);
    const move = (ev) => {
      const x1 = clamp(ev.clientX - box.left, box.width);
      const y1 = clamp(ev.clientY - box.top, box.height);
      const left = Math.min(x0, x1);
      const top = Math.min(y0, y1);
      const w = Math.abs(x1 - x0);
      const ht = Math.abs(y1 - y0);
      Object.assign(rect.style, { left: `${left}px`, top: `${top}px`, width: `${w}px`, height: `${ht}px` });
      rect.hidden = false;
      const s = scale();
      sel = {
        x: Math.round(left * s), y: Math.round(top * s),
        width: Math.min(image.width - Math.round(left * s), Math.round(w * s)),
        height: Math.min(image.height - Math.round(top * s), Math.round(ht * s)),
      };
      const ok = sel.width >= 1 && sel.height >= 1;
      apply.disabled = !ok;
      size.textContent = ok ? `${sel.width} × ${sel.height} px` : "Drag on the image to choose the area to keep.";
    };
    const up = () => {
      stage.removeEventListener("pointermove", move);
      stage.removeEventListener("pointerup", up);
    };
    stage.addEventListener("pointermove", move);
    stage.addEventListener("pointerup", up);
  });
  stage.dataset.ready = "true"; // decoded, laid out and listening: a drag from now on counts
  apply.addEventListener("click", async () => {
    if (!sel) return;
    apply.disabled = true;
    try {
      done(await api.post(`/v1/nodes/${node.id}/image/crop`, sel));
      close();
    } catch (exc) {
      apply.disabled = false;
      toast(exc.message, { kind: "error" });
    }
  });
}
