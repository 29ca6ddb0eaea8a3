// The generation panel of the selected Image node: reference strip, prompt with upstream text
// blocks, model selector, parameters, the price on the Generate button.

import { api, ApiError, imageObjectUrl } from "./api.js";
import { clear, debounce, h, setText, toast } from "./dom.js";
import { statusLine } from "./nodes.js";

const PROMPT_PLACEHOLDER = "Describe the image you want to generate.";
const PROMPT_REQUIRED = "Write a prompt or connect an upstream Text Node.";

export class ImagePanel {
  /** @param {HTMLElement} root  @param {{balanceChanged: () => void}} hooks */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    this.node = null;
    this.gen = null;
    this.models = [];
    this.modelsFor = ""; // node id + reference count the list was fetched for
    this.quote = null;
    this.quoteSeq = 0;
    this.busy = false;
    this.error = "";
    this.build();
    this.savePrompt = debounce((id, prompt) => this.patch(id, { prompt }), 500);
    this.requote = debounce(() => this.fetchQuote(), 150);
  }

  build() {
    this.refs = h("ol.refs", { "aria-label": "Reference images" });
    this.chips = h("div.chips", { "aria-label": "Upstream text" });
    this.prompt = h("textarea.prompt", { placeholder: PROMPT_PLACEHOLDER, rows: 4, "aria-label": "Prompt",
      maxLength: 10000 });
    this.prompt.addEventListener("input", () => {
      this.savePrompt(this.node.id, this.prompt.value);
      this.renderButton();
    });
    this.prompt.addEventListener("blur", () => this.savePrompt.flush(this.node.id, this.prompt.value));
    this.model = h("select.model", { "aria-label": "Model" });
    this.model.addEventListener("change", () => this.choose(this.model.value));
    this.reasons = h("ul.model-reasons");
    this.resolution = h("select", { "aria-label": "Resolution" });
    this.aspect = h("select", { "aria-label": "Aspect ratio" });
    for (const sel of [this.resolution, this.aspect]) sel.addEventListener("change", () => this.paramsChanged());
    this.button = h("button.primary.generate", { type: "button", onclick: () => this.generate() }, "Generate");
    this.why = h("p.why", { role: "note" });
    this.cancel = h("button.secondary", { type: "button", hidden: true, onclick: () => this.cancelGeneration() },
      "Cancel generation");
    this.status = h("p.panel-status", { role: "status" });
    this.root.append(
      h("header.panel-head", {}, h("h2", { text: "Generation panel" }),
        h("button.close", { type: "button", "aria-label": "Close panel", onclick: () => this.hooks.close() }, "×")),
      h("section", {}, h("h3", { text: "References" }), this.refs),
      h("section", {}, h("h3", { text: "Prompt" }), h("div.prompt-box", {}, this.chips, this.prompt)),
      h("section", {}, h("h3", { text: "Model" }), this.model, this.reasons),
      h("section.params", {},
        h("label", {}, "Resolution", this.resolution),
        h("label", {}, "Aspect ratio", this.aspect)),
      h("section.actions", {}, this.button, this.why, this.cancel, this.status),
    );
  }

  /** Show `node` (null hides the panel). Called again whenever the node changes. */
  show(node, gen) {
    const switched = !this.node || !node || this.node.id !== node.id;
    if (switched && this.node) this.savePrompt.flush(this.node.id, this.prompt.value);
    this.node = node;
    this.gen = gen || null;
    this.root.hidden = !node;
    if (!node) {
      this.modelsFor = "";
      this.requote.cancel();
      return;
    }
    if (switched) {
      this.quote = null;
      this.error = "";
      this.models = [];
      this.modelsFor = "";
      this.prompt.value = node.prompt || "";
    } else if (document.activeElement !== this.prompt && this.prompt.value !== node.prompt) {
      this.prompt.value = node.prompt || "";
    }
    this.root.dataset.nodeId = node.id;
    this.renderRefs();
    this.renderChips();
    const modelsKey = `${node.id}:${node.references.length}`;
    if (this.modelsFor !== modelsKey) {
      this.modelsFor = modelsKey;
      this.fetchModels(modelsKey);
    } else if (this.models.length && !this.root.contains(document.activeElement)) {
      // Another page (or person) may have picked another model or parameters.
      const current = this.current();
      const p = node.params || {};
      if ((current && this.model.value !== current.id) || (p.resolution && p.resolution !== this.resolution.value)
          || (p.aspect_ratio && p.aspect_ratio !== this.aspect.value)) this.renderModels();
    }
    this.renderButton();
  }

  renderRefs() {
    const refs = this.node.references || [];
    const key = refs.map((r) => `${r.index}:${r.node_id}:${r.thumbnail_url}`).join("|");
    if (this.refs.dataset.key === key) return;
    this.refs.dataset.key = key;
    clear(this.refs);
    if (!refs.length) {
      this.refs.append(h("li.none", { text: "Connect Image nodes to use their images as references." }));
      return;
    }
    for (const r of refs) {
      const img = h("img", { alt: `Reference ${r.index}`, hidden: true });
      const li = h("li.ref", { dataset: { index: r.index, nodeId: r.node_id } },
        h("span.ref-num", { text: String(r.index) }), img,
        r.thumbnail_url ? null : h("span.ref-empty", { text: "empty" }));
      if (r.thumbnail_url) {
        imageObjectUrl(r.thumbnail_url).then((src) => {
          img.src = src;
          img.hidden = false;
        }, () => {});
      }
      this.refs.append(li);
    }
  }

  renderChips() {
    const texts = this.node.upstream_text || [];
    const key = JSON.stringify(texts);
    if (this.chips.dataset.key === key) return;
    this.chips.dataset.key = key;
    this.chips.replaceChildren(...texts.map((t) =>
      h("span.text-chip", { title: t.text, dataset: { nodeId: t.node_id } },
        h("span.chip-icon", { "aria-hidden": "true", text: "T" }),
        h("span.chip-text", { text: t.text ? truncate(t.text, 60) : "(empty text)" }))));
    this.chips.hidden = !texts.length;
  }

  async fetchModels(key) {
    const id = this.node.id;
    try {
      const body = await api.get(`/v1/nodes/${id}/models`);
      if (this.modelsFor !== key) return;
      this.models = body.items;
      this.renderModels();
    } catch (exc) {
      if (this.node && this.node.id === id) this.status.textContent = exc.message;
    }
  }

  /** The model the node uses: its own choice when still possible, else the first available. */
  current() {
    if (!this.node) return null;
    const chosen = this.models.find((m) => m.id === this.node.model_id);
    if (chosen && chosen.available) return chosen;
    return this.models.find((m) => m.available) || chosen || null;
  }

  renderModels() {
    const current = this.current();
    this.model.replaceChildren(...this.models.map((m) => {
      const label = `${m.name} · up to ${m.max_reference_images} ref${m.max_reference_images === 1 ? "" : "s"}`;
      return h("option", { value: m.id, disabled: !m.available, title: m.reason || "",
        text: m.available ? label : `${label} (unavailable)` });
    }));
    if (current) this.model.value = current.id;
    this.reasons.replaceChildren(...this.models.filter((m) => !m.available).map((m) =>
      h("li", { dataset: { modelId: m.id }, text: m.reason })));
    this.renderParams(current);
    this.requote();
  }

  renderParams(model) {
    const params = this.node.params || {};
    const fill = (sel, values, wanted) => {
      sel.replaceChildren(...values.map((v) => h("option", { value: v, text: v })));
      sel.value = values.includes(wanted) ? wanted : values[0];
      sel.disabled = values.length < 2;
    };
    fill(this.resolution, model ? model.resolutions : [], params.resolution);
    fill(this.aspect, model ? model.aspect_ratios : [], params.aspect_ratio || "1:1");
  }

  params() {
    return { ...(this.node.params || {}), resolution: this.resolution.value, aspect_ratio: this.aspect.value };
  }

  async choose(modelId) {
    const model = this.models.find((m) => m.id === modelId);
    if (!model) return;
    this.renderParams(model);
    await this.patch(this.node.id, { model_id: model.id, params: this.params() });
    this.requote();
  }

  async paramsChanged() {
    const model = this.current();
    if (model) await this.patch(this.node.id, { model_id: model.id, params: this.params() });
    this.requote();
  }

  async patch(id, body) {
    try {
      const node = await api.patch(`/v1/nodes/${id}`, body);
      this.hooks.nodeSaved(node);
    } catch (exc) {
      toast(exc.message, { kind: "error" });
    }
  }

  async fetchQuote() {
    const model = this.current();
    if (!this.node || !model) {
      this.quote = null;
      this.renderButton();
      return;
    }
    const seq = ++this.quoteSeq;
    try {
      const q = await api.post(`/v1/nodes/${this.node.id}/quote`, { model_id: model.id, params: this.params() });
      if (seq !== this.quoteSeq) return;
      this.quote = { ...q, model_id: model.id };
      this.error = "";
    } catch (exc) {
      if (seq !== this.quoteSeq) return;
      this.quote = null;
      this.error = exc.message;
    }
    this.renderButton();
  }

  /** Why Generate cannot be pressed now, or "" when it can. */
  blocked() {
    const g = this.node.generate || {};
    const hasText = (this.node.upstream_text || []).length > 0;
    const typed = this.prompt.value.trim() !== "";
    if (!g.enabled && g.reason_code !== "prompt_required") return g.reason;
    // The prompt being typed counts before it is saved.
    if (!typed && !hasText) return PROMPT_REQUIRED;
    if (!this.current()) return "No model can take this many references. Remove a reference.";
    if (!this.quote) return this.error || "Getting the price…";
    if (!this.quote.affordable) return `Not enough credits: this costs ${this.quote.credits}, you have ${this.quote.balance}.`;
    return "";
  }

  renderButton() {
    if (!this.node) return;
    const why = this.busy ? "" : this.blocked();
    const price = this.quote ? ` · ${this.quote.credits} credit${this.quote.credits === 1 ? "" : "s"}` : "";
    setText(this.button, this.busy ? "Starting…" : `Generate${price}`);
    this.button.disabled = this.busy || Boolean(why);
    this.button.title = why || "";
    setText(this.why, why || "");
    this.cancel.hidden = !(this.node.status === "generating" && this.node.active_generation_id);
    // Why the node cannot generate is said once, under the button; this line is the generation's own state.
    const line = statusLine(this.node, this.gen);
    if (line.kind === "wait") line.text = "";
    setText(this.status, line.text);
    this.status.dataset.kind = line.kind;
  }

  async generate() {
    const model = this.current();
    if (!model || !this.quote || this.blocked()) return;
    this.busy = true;
    this.renderButton();
    this.savePrompt.cancel();
    try {
      await api.post(`/v1/nodes/${this.node.id}/generations`, {
        model_id: model.id,
        prompt: this.prompt.value,
        params: this.params(),
        expected_credits: this.quote.credits,
      }, { headers: { "Idempotency-Key": crypto.randomUUID() } });
      this.hooks.balanceChanged();
    } catch (exc) {
      if (exc instanceof ApiError && exc.code === "price_changed") {
        toast("The price changed. Check the new price on the button and generate again.", { kind: "error" });
      } else {
        toast(exc.message, { kind: "error" });
      }
    } finally {
      this.busy = false;
      this.fetchQuote();
    }
  }

  async cancelGeneration() {
    const id = this.node && this.node.active_generation_id;
    if (!id) return;
    try {
      await api.post(`/v1/generations/${id}/cancel`, {});
      this.hooks.balanceChanged();
    } catch (exc) {
      toast(exc.message, { kind: "error" });
    }
  }
}

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}
