// The board: nodes at their positions, edges as SVG paths, dragging, connecting, live updates.
// Each change touches only the nodes and edges it concerns (boards of hundreds of nodes).

import { api, ApiError } from "./api.js";
import { debounce, h, svg, toast } from "./dom.js";
import { createNodeElement, NODE_WIDTH, PORT_Y, updateNodeElement } from "./nodes.js";

const MARGIN = 600; // room to drag beyond the furthest node

export class BoardView {
  /**
   * @param {HTMLElement} root
   * @param {object} board  GET /v1/boards/{id}
   * @param {object} hooks  {select(node|null), nodeChanged(node), tool(node, name), deleted(node, answer)}
   */
  constructor(root, board, hooks) {
    this.board = board;
    this.hooks = hooks;
    this.nodes = new Map(); // id -> node JSON
    this.sigs = new Map(); // id -> JSON text last drawn
    this.drawnAt = new Map(); // id -> position last drawn
    this.els = new Map(); // id -> element
    this.edges = new Map(); // id -> edge JSON
    this.edgeEls = new Map(); // id -> <g>
    this.edgesOf = new Map(); // node id -> Set(edge id)
    this.gens = new Map(); // node id -> latest generation event data
    this.selected = null; // {type: "node"|"edge", id}
    this.dragging = null;
    this.textSavers = new Map();
    this.size = { w: 0, h: 0 };

    this.viewport = h("div.viewport", { "data-testid": "viewport" });
    this.world = h("div.world");
    this.svg = svg("svg", { class: "edges", "aria-hidden": "true" });
    this.layer = h("div.nodes");
    this.world.append(this.svg, this.layer);
    this.viewport.append(this.world);
    root.append(this.viewport);
    this.fileInput = h("input", { type: "file", hidden: true,
      accept: ".png,.jpg,.jpeg,.webp,image/png,image/jpeg,image/webp" });
    root.append(this.fileInput);
    this.bindPointer();
    this.applySnapshot(board);
  }

  // ------------------------------------------------------------------ state from the server

  applySnapshot(board) {
    const seen = new Set();
    for (const node of board.nodes || []) {
      seen.add(node.id);
      this.upsertNode(node);
    }
    for (const id of [...this.nodes.keys()]) if (!seen.has(id)) this.removeNode(id);
    const seenEdges = new Set();
    for (const e of board.edges || []) {
      seenEdges.add(e.id);
      this.addEdge(e);
    }
    for (const id of [...this.edges.keys()]) if (!seenEdges.has(id)) this.removeEdge(id);
    this.fitWorld();
  }

  handleEvent(type, data) {
    switch (type) {
      case "board.snapshot":
        this.applySnapshot(data);
        break;
      case "node.created":
      case "node.updated":
        this.upsertNode(data);
        break;
      case "node.deleted":
        this.removeNode(data.id);
        break;
      case "edge.created":
        this.addEdge(data);
        break;
      case "edge.deleted":
        this.removeEdge(data.id);
        break;
      default:
        if (type.startsWith("generation.")) this.generationEvent(data);
    }
  }

  generationEvent(gen) {
    // Events come in the board's order, so the latest one is the node's current generation.
    this.gens.set(gen.node_id, gen);
    this.redraw(gen.node_id, true);
    const node = this.nodes.get(gen.node_id);
    if (node) this.hooks.nodeChanged(node, gen);
  }

  upsertNode(node) {
    const had = this.nodes.has(node.id);
    this.nodes.set(node.id, node);
    if (!had) {
      const el = createNodeElement(node, {
        tool: (id, name) => this.tool(id, name),
        editText: (id, text, now) => this.editText(id, text, now),
        remove: (id) => this.deleteNode(id),
      });
      this.els.set(node.id, el);
      this.layer.append(el);
    }
    this.redraw(node.id, false);
    this.hooks.nodeChanged(node, this.gens.get(node.id));
  }

  redraw(id, force) {
    const node = this.nodes.get(id);
    const el = this.els.get(id);
    if (!node || !el) return;
    const sig = JSON.stringify(node);
    if (!force && this.sigs.get(id) === sig) return;
    this.sigs.set(id, sig);
    updateNodeElement(el, node, this.gens.get(id));
    const p = node.position;
    const last = this.drawnAt.get(id);
    if (!last || last.x !== p.x || last.y !== p.y) {
      this.drawnAt.set(id, p);
      if (!(this.dragging && this.dragging.id === id)) {
        this.place(id, p);
        this.edgesOf.get(id)?.forEach((e) => this.drawEdge(e));
      }
      this.growWorld(p);
    }
  }

  removeNode(id) {
    this.els.get(id)?.remove();
    this.els.delete(id);
    this.nodes.delete(id);
    this.sigs.delete(id);
    this.drawnAt.delete(id);
    this.gens.delete(id);
    for (const e of [...(this.edgesOf.get(id) || [])]) this.removeEdge(e);
    this.edgesOf.delete(id);
    if (this.selected && this.selected.id === id) this.select(null);
  }

  addEdge(edge) {
    this.edges.set(edge.id, edge);
    if (!this.edgeEls.has(edge.id)) {
      const g = svg("g", { class: "edge", "data-edge-id": edge.id });
      g.append(svg("path", { class: "edge-hit" }), svg("path", { class: "edge-line" }));
      this.svg.append(g);
      this.edgeEls.set(edge.id, g);
    }
    for (const n of [edge.source_node_id, edge.target_node_id]) {
      if (!this.edgesOf.has(n)) this.edgesOf.set(n, new Set());
      this.edgesOf.get(n).add(edge.id);
    }
    this.drawEdge(edge.id);
  }

  removeEdge(id) {
    const edge = this.edges.get(id);
    this.edgeEls.get(id)?.remove();
    this.edgeEls.delete(id);
    this.edges.delete(id);
    if (edge) {
      this.edgesOf.get(edge.source_node_id)?.delete(id);
      this.edgesOf.get(edge.target_node_id)?.delete(id);
    }
    if (this.selected && this.selected.id === id) this.select(null);
  }

  // ------------------------------------------------------------------ drawing

  pos(id) {
    if (this.dragging && this.dragging.id === id) return this.dragging.at;
    return this.nodes.get(id)?.position || { x: 0, y: 0 };
  }

  place(id, p) {
    const el = this.els.get(id);
    if (el) el.style.transform = `translate(${p.x}px, ${p.y}px)`;
  }

  drawEdge(id) {
    const edge = this.edges.get(id);
    const g = this.edgeEls.get(id);
    if (!edge || !g) return;
    const a = this.pos(edge.source_node_id);
    const b = this.pos(edge.target_node_id);
    const d = curve(a.x + NODE_WIDTH, a.y + PORT_Y, b.x, b.y + PORT_Y);
    for (const p of g.children) p.setAttribute("d", d);
  }

  growWorld(p) {
    const w = Math.max(this.size.w, p.x + NODE_WIDTH + MARGIN);
    const hgt = Math.max(this.size.h, p.y + MARGIN);
    if (w !== this.size.w || hgt !== this.size.h) this.setWorld(w, hgt);
  }

  fitWorld() {
    let w = this.viewport.clientWidth || 1200;
    let hgt = this.viewport.clientHeight || 800;
    for (const n of this.nodes.values()) {
      w = Math.max(w, n.position.x + NODE_WIDTH + MARGIN);
      hgt = Math.max(hgt, n.position.y + MARGIN);
    }
    this.setWorld(w, hgt);
  }

  setWorld(w, hgt) {
    this.size = { w, h: hgt };
    this.world.style.width = `${w}px`;
    this.world.style.height = `${hgt}px`;
    this.svg.setAttribute("width", w);
    this.svg.setAttribute("height", hgt);
  }

  /** A free spot in the visible part of the board for a new node. */
  freeSpot() {
    const x0 = this.viewport.scrollLeft + 60;
    const y0 = this.viewport.scrollTop + 60;
    for (let i = 0; i < 40; i += 1) {
      const p = { x: x0 + (i % 6) * 300, y: y0 + Math.floor(i / 6) * 260 };
      const taken = [...this.nodes.values()].some((n) =>
        Math.abs(n.position.x - p.x) < NODE_WIDTH && Math.abs(n.position.y - p.y) < 200);
      if (!taken) return p;
    }
    return { x: x0 + Math.random() * 400, y: y0 + Math.random() * 300 };
  }

  // ------------------------------------------------------------------ selection and actions

  select(sel) {
    const prev = this.selected;
    if (prev) {
      (prev.type === "node" ? this.els.get(prev.id) : this.edgeEls.get(prev.id))?.classList.remove("selected");
    }
    this.selected = sel;
    if (sel) (sel.type === "node" ? this.els.get(sel.id) : this.edgeEls.get(sel.id))?.classList.add("selected");
    this.hooks.select(sel && sel.type === "node" ? this.nodes.get(sel.id) : null);
  }

  async addNode(kind, extra = {}) {
    try {
      const node = await api.post(`/v1/boards/${this.board.id}/nodes`, { kind, position: this.freeSpot(), ...extra });
      this.upsertNode(node);
      this.select({ type: "node", id: node.id });
      return node;
    } catch (exc) {
      toast(exc.message, { kind: "error" });
      return null;
    }
  }

  editText(id, text, now = false) {
    let saver = this.textSavers.get(id);
    if (!saver) {
      saver = debounce(async (value) => {
        try {
          this.upsertNode(await api.patch(`/v1/nodes/${id}`, { text: value }));
        } catch (exc) {
          toast(exc.message, { kind: "error" });
        }
      }, 400);
      this.textSavers.set(id, saver);
    }
    if (now) saver.flush(text);
    else saver(text);
  }

  async deleteNode(id) {
    const node = this.nodes.get(id);
    try {
      const answer = await api.del(`/v1/nodes/${id}`);
      this.removeNode(id);
      this.hooks.deleted(node, answer);
    } catch (exc) {
      toast(exc.message, { kind: "error" });
    }
  }

  async deleteEdge(id) {
    try {
      await api.del(`/v1/edges/${id}`);
      this.removeEdge(id);
    } catch (exc) {
      toast(exc.message, { kind: "error" });
    }
  }

  tool(id, name) {
    const node = this.nodes.get(id);
    if (!node) return;
    if (name === "upload") {
      this.uploadTarget = id;
      this.fileInput.value = "";
      this.fileInput.click();
      return;
    }
    this.hooks.tool(node, name);
  }

  async upload(id, file) {
    if (!file) return;
    if (file.size > 10 * 1024 * 1024) {
      toast("That file is over 10 MB, the largest image an Image node takes.", { kind: "error" });
      return;
    }
    const el = this.els.get(id);
    el?.classList.add("uploading");
    try {
      const form = new FormData();
      form.append("file", file, file.name);
      this.upsertNode(await api.post(`/v1/nodes/${id}/image`, undefined, { body: form }));
    } catch (exc) {
      toast(exc.message, { kind: "error" });
    } finally {
      el?.classList.remove("uploading");
    }
  }

  /** Show the api's refusal of a connection next to the node it was aimed at. */
  tooltip(targetId, message) {
    this.tip?.remove();
    const p = this.pos(targetId);
    this.tip = h("div.tooltip", { role: "tooltip", text: message });
    this.tip.style.transform = `translate(${p.x}px, ${p.y - 12}px) translateY(-100%)`;
    this.world.append(this.tip);
    const tip = this.tip;
    setTimeout(() => tip.remove(), 6000);
  }

  async connect(sourceId, targetId) {
    try {
      const edge = await api.post(`/v1/boards/${this.board.id}/edges`,
        { source_node_id: sourceId, target_node_id: targetId });
      this.addEdge(edge);
    } catch (exc) {
      if (exc instanceof ApiError) this.tooltip(targetId, exc.message);
      else throw exc;
    }
  }

  // ------------------------------------------------------------------ pointer: drag and connect

  bindPointer() {
    this.fileInput.addEventListener("change", () => {
      if (this.uploadTarget && this.fileInput.files.length) this.upload(this.uploadTarget, this.fileInput.files[0]);
    });
    this.layer.addEventListener("dragover", (e) => {
      const display = e.target.closest(".display");
      if (display && e.dataTransfer.types.includes("Files")) {
        e.preventDefault();
        display.classList.add("drop");
      }
    });
    this.layer.addEventListener("dragleave", (e) => e.target.closest(".display")?.classList.remove("drop"));
    this.layer.addEventListener("drop", (e) => {
      const display = e.target.closest(".display");
      if (!display) return;
      e.preventDefault();
      display.classList.remove("drop");
      const id = display.closest(".node").dataset.nodeId;
      const node = this.nodes.get(id);
      if (node && !(node.toolbar || []).includes("upload")) {
        toast("This node holds an image: delete the node or upload into an empty one.", { kind: "error" });
        return;
      }
      this.upload(id, e.dataTransfer.files[0]);
    });
    this.svg.addEventListener("click", (e) => {
      const g = e.target.closest(".edge");
      if (g) this.select({ type: "edge", id: g.dataset.edgeId });
    });
    this.viewport.addEventListener("pointerdown", (e) => this.pointerDown(e));
  }

  pointerDown(e) {
    if (e.button !== 0) return;
    this.tip?.remove();
    const nodeEl = e.target.closest(".node");
    if (!nodeEl) {
      if (!e.target.closest(".edge")) this.select(null);
      return;
    }
    const id = nodeEl.dataset.nodeId;
    if (e.target.closest(".port.out")) {
      e.preventDefault();
      this.startConnect(id, e);
      return;
    }
    if (e.target.closest(".node-del")) return; // deleting a node does not select it first
    if (!this.selected || this.selected.id !== id) this.select({ type: "node", id });
    if (e.target.closest(".node-head") && !e.target.closest("button")) {
      e.preventDefault();
      this.startDrag(id, e);
    }
  }

  toWorld(e) {
    const r = this.world.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  }

  startDrag(id, e) {
    const start = this.toWorld(e);
    const from = { ...this.nodes.get(id).position };
    const drag = { id, at: from, moved: false, frame: 0 };
    this.dragging = drag;
    const el = this.els.get(id);
    el.classList.add("dragging");
    el.setPointerCapture(e.pointerId);
    const move = (ev) => {
      const p = this.toWorld(ev);
      drag.at = { x: Math.max(0, from.x + p.x - start.x), y: Math.max(0, from.y + p.y - start.y) };
      drag.moved = drag.moved || Math.abs(p.x - start.x) + Math.abs(p.y - start.y) > 3;
      if (!drag.frame) {
        drag.frame = requestAnimationFrame(() => {
          drag.frame = 0;
          this.place(id, drag.at);
          this.edgesOf.get(id)?.forEach((eid) => this.drawEdge(eid));
        });
      }
    };
    const up = async () => {
      el.removeEventListener("pointermove", move);
      el.removeEventListener("pointerup", up);
      el.removeEventListener("pointercancel", up);
      cancelAnimationFrame(drag.frame);
      el.classList.remove("dragging");
      const at = { x: Math.round(drag.at.x), y: Math.round(drag.at.y) };
      this.dragging = null;
      if (!drag.moved) return;
      // Shown where it was dropped at once; the server's answer (or the event) confirms it.
      this.nodes.set(id, { ...this.nodes.get(id), position: at });
      this.redraw(id, true);
      try {
        this.upsertNode(await api.patch(`/v1/nodes/${id}`, { position: at }));
      } catch (exc) {
        toast(exc.message, { kind: "error" });
        this.nodes.set(id, { ...this.nodes.get(id), position: from });
        this.redraw(id, true);
      }
    };
    el.addEventListener("pointermove", move);
    el.addEventListener("pointerup", up);
    el.addEventListener("pointercancel", up);
  }

  startConnect(sourceId, e) {
    const a = this.pos(sourceId);
    const sx = a.x + NODE_WIDTH;
    const sy = a.y + PORT_Y;
    const line = svg("path", { class: "edge-draft" });
    this.svg.append(line);
    const port = e.target;
    port.setPointerCapture(e.pointerId);
    let over = null;
    const move = (ev) => {
      const p = this.toWorld(ev);
      line.setAttribute("d", curve(sx, sy, p.x, p.y));
      const target = document.elementFromPoint(ev.clientX, ev.clientY)?.closest(".node");
      if (over !== target) {
        over?.classList.remove("drop-target");
        over = target && target.dataset.nodeId !== sourceId ? target : null;
        over?.classList.add("drop-target");
      }
    };
    const up = (ev) => {
      port.removeEventListener("pointermove", move);
      port.removeEventListener("pointerup", up);
      port.removeEventListener("pointercancel", up);
      line.remove();
      over?.classList.remove("drop-target");
      const target = document.elementFromPoint(ev.clientX, ev.clientY)?.closest(".node");
      if (ev.type === "pointerup" && target && target.dataset.nodeId !== sourceId) {
        this.connect(sourceId, target.dataset.nodeId);
      }
    };
    port.addEventListener("pointermove", move);
    port.addEventListener("pointerup", up);
    port.addEventListener("pointercancel", up);
  }

  destroy() {
    this.viewport.remove();
    this.fileInput.remove();
    this.tip?.remove();
  }
}

function curve(x1, y1, x2, y2) {
  const dx = Math.max(40, Math.abs(x2 - x1) / 2);
  return `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
}
