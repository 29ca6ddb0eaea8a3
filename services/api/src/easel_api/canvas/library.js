// The assets library (the assets service, another origin): images kept from deleted nodes,
// each of which can be put back on the board as a new Image node.

import { api, foreignImageObjectUrl } from "./api.js";
import { h, shortDate, toast } from "./dom.js";

const REASONS = {
  node_deleted: "Kept when its node was deleted",
  board_deleted: "Kept when its board was deleted",
  late_result: "Finished after its node was deleted",
};

export class LibraryPanel {
  /** @param {HTMLElement} root  @param {string} assetsUrl  @param {{putBack(asset)}} hooks */
  constructor(root, assetsUrl, hooks) {
    this.root = root;
    this.assetsUrl = assetsUrl;
    this.hooks = hooks;
    this.expected = new Set(); // asset ids named by deletions, not listed yet
    this.timer = null;
    this.list = h("ul.assets", { "aria-label": "Assets" });
    this.note = h("p.library-note", { role: "status" });
    root.append(
      h("header.panel-head", {}, h("h2", { text: "Assets library" }),
        h("button.secondary", { type: "button", onclick: () => this.refresh() }, "Refresh"),
        h("button.close", { type: "button", "aria-label": "Close library", onclick: () => this.hide() }, "×")),
      this.note, this.list);
    root.hidden = true;
  }

  get open() {
    return !this.root.hidden;
  }

  show() {
    this.root.hidden = false;
    this.refresh();
  }

  hide() {
    this.root.hidden = true;
    clearTimeout(this.timer);
  }

  /** A deletion named this asset: it reaches the library within seconds; look again until it does. */
  expect(assetId) {
    this.expected.add(assetId);
    if (this.open) this.refresh();
  }

  async refresh(attempt = 0) {
    clearTimeout(this.timer);
    let items;
    try {
      items = (await api.get("/v1/assets?limit=100", { base: this.assetsUrl })).items;
    } catch (exc) {
      this.note.textContent = `The library could not be loaded: ${exc.message}`;
      return;
    }
    for (const a of items) this.expected.delete(a.id);
    this.render(items);
    if (this.expected.size && attempt < 20 && this.open) {
      this.note.textContent = "Saving the deleted image to the library…";
      this.timer = setTimeout(() => this.refresh(attempt + 1), 1000);
    } else {
      this.note.textContent = items.length ? "" : "No saved images yet. Images of deleted nodes are kept here.";
    }
  }

  render(items) {
    this.list.replaceChildren(...items.map((a) => {
      const img = h("img", { alt: "Saved image", hidden: true });
      foreignImageObjectUrl(a.image.thumbnail_url).then((src) => {
        img.src = src;
        img.hidden = false;
      }, () => {});
      const put = h("button.secondary", { type: "button" }, "Put on board");
      put.addEventListener("click", async () => {
        put.disabled = true;
        try {
          await this.hooks.putBack(a);
        } catch (exc) {
          toast(exc.message, { kind: "error" });
        } finally {
          put.disabled = false;
        }
      });
      return h("li.asset", { dataset: { assetId: a.id } }, img,
        h("div.asset-meta", {},
          h("span", { text: `${a.image.width}×${a.image.height}` }),
          h("span.muted", { text: REASONS[a.origin?.reason] || "Saved image" }),
          h("span.muted", { text: shortDate(a.created_at) })),
        put);
    }));
  }
}
