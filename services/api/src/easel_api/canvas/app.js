// The reference canvas: sign in with an API key, pick a board, work on it with live updates.
// Everything goes through the public api (API.md); nothing here is privileged.

import { api, API_BASE, getKey, onUnauthorized, setKey } from "./api.js";
import { BoardView } from "./board.js";
import { clear, debounce, h, shortDate, toast } from "./dom.js";
import { BoardStream } from "./events.js";
import { LibraryPanel } from "./library.js";
import { download, openCrop, openFullscreen } from "./media.js";
import { ImagePanel } from "./panel.js";

const main = document.getElementById("main");
const credits = document.getElementById("credits");
const live = document.getElementById("live");
const title = document.getElementById("board-name");
const signOut = document.getElementById("sign-out");

let config = { assets_url: "" };
let current = null; // the open board's parts, torn down when leaving it

async function loadConfig() {
  try {
    const resp = await fetch("config.json", { cache: "no-store" });
    if (resp.ok) config = await resp.json();
  } catch {
    // the library panel says so if the assets service cannot be found
  }
}

const refreshCredits = debounce(async () => {
  try {
    const acct = await api.get("/v1/account");
    credits.textContent = `${acct.credits} credits`;
    credits.title = acct.reserved_credits ? `${acct.reserved_credits} reserved for running generations` : "";
    current?.panel.requote();
  } catch {
    // shown again on the next change
  }
}, 300);

function setLive(state) {
  const labels = { connecting: "Connecting…", live: "Live", offline: "Reconnecting…", closed: "" };
  live.dataset.state = state;
  live.textContent = labels[state] ?? "";
}

function leaveBoard() {
  if (!current) return;
  current.stream.stop();
  current.view.destroy();
  document.removeEventListener("keydown", current.onKey);
  current = null;
  title.textContent = "";
  setLive("closed");
}

// ------------------------------------------------------------------ sign in

function showSignIn(message = "") {
  leaveBoard();
  signOut.hidden = true;
  credits.textContent = "";
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true,
    placeholder: "esk_…" });
  const error = h("p.error", { role: "alert", text: message });
  const form = h("form.signin", {},
    h("h1", { text: "Sign in" }),
    h("p", { text: "Paste an Easel API key. It stays in this tab only (session storage) and is sent with every request." }),
    h("label", { for: "api-key" }, "API key"), input,
    h("button.primary", { type: "submit" }, "Sign in"), error);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    setKey(input.value.trim());
    try {
      await api.get("/v1/account");
    } catch (exc) {
      setKey("");
      error.textContent = exc.status === 401 ? "That key was not accepted." : exc.message;
      return;
    }
    route();
  });
  clear(main).append(form);
  input.focus();
}

onUnauthorized(() => {
  setKey("");
  showSignIn("Your key is no longer accepted. Sign in again.");
});

// ------------------------------------------------------------------ boards

async function showBoards() {
  leaveBoard();
  const list = h("ul.boards", { "aria-label": "Boards" });
  const name = h("input", { type: "text", value: "Untitled board", maxLength: 200, "aria-label": "Board name" });
  const form = h("form.new-board", {}, name, h("button.primary", { type: "submit" }, "Create board"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const board = await api.post("/v1/boards", { name: name.value.trim() || "Untitled board" });
      window.location.hash = `#/boards/${board.id}`;
    } catch (exc) {
      toast(exc.message, { kind: "error" });
    }
  });
  clear(main).append(h("section.board-list", {}, h("h1", { text: "Boards" }), form, list));
  try {
    let cursor = null;
    do {
      const page = await api.get(`/v1/boards?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      for (const b of page.items) {
        list.append(h("li", {}, h("a", { href: `#/boards/${b.id}`, text: b.name }),
          h("span.muted", { text: ` · ${shortDate(b.created_at)}` })));
      }
      cursor = page.next_cursor;
    } while (cursor);
    if (!list.children.length) list.append(h("li.muted", { text: "No boards yet: create one." }));
  } catch (exc) {
    if (exc.status !== 401) toast(exc.message, { kind: "error" });
  }
}

// ------------------------------------------------------------------ one board

async function showBoard(boardId) {
  leaveBoard();
  let board;
  try {
    board = await api.get(`/v1/boards/${boardId}`);
  } catch (exc) {
    if (exc.status !== 401) {
      toast(exc.status === 404 ? "That board does not exist (or is not yours)." : exc.message, { kind: "error" });
      window.location.hash = "#/boards";
    }
    return;
  }
  title.textContent = board.name;
  const stage = h("div.stage");
  const panelRoot = h("aside.panel", { hidden: true, "aria-label": "Generation panel" });
  const libraryRoot = h("aside.panel.library", { "aria-label": "Assets library" });
  const adders = ["text", "image", "video"].map((kind) =>
    h("button.secondary", { type: "button", dataset: { add: kind } }, `+ ${kind[0].toUpperCase()}${kind.slice(1)}`));
  const libraryButton = h("button.secondary", { type: "button" }, "Library");
  const bar = h("div.board-bar", {}, ...adders, libraryButton,
    h("span.hint.muted", { text: "Drag a node by its title · drag from its right dot to connect · Delete removes the selection" }));
  clear(main).append(h("div.board", {}, bar, h("div.board-body", {}, stage, panelRoot, libraryRoot)));

  const panel = new ImagePanel(panelRoot, {
    close: () => view.select(null),
    nodeSaved: (node) => view.upsertNode(node),
    balanceChanged: () => refreshCredits(),
  });
  const library = new LibraryPanel(libraryRoot, config.assets_url, {
    putBack: async (asset) => {
      const node = await view.addNode("image", { asset_id: asset.id });
      if (node) toast("The image is back on the board.");
    },
  });
  const view = new BoardView(stage, board, {
    select: (node) => panel.show(node && node.kind === "image" ? node : null, node && view.gens.get(node.id)),
    nodeChanged: (node, gen) => {
      if (panel.node && panel.node.id === node.id) panel.show(node, gen);
    },
    tool: (node, name) => {
      if (name === "fullscreen") openFullscreen(node);
      else if (name === "download") download(node);
      else if (name === "crop") openCrop(node, (n) => view.upsertNode(n));
    },
    deleted: (node, answer) => {
      if (answer && answer.asset_id) {
        library.expect(answer.asset_id);
        toast("Node deleted. Its image is kept in your assets library.",
          { action: { label: "Open library", run: () => library.show() }, ms: 10000 });
      } else {
        toast("Node deleted.");
      }
    },
  });
  for (const b of adders) b.addEventListener("click", () => view.addNode(b.dataset.add));
  libraryButton.addEventListener("click", () => (library.open ? library.hide() : library.show()));

  const stream = new BoardStream(`${API_BASE}/v1/boards/${boardId}/events`, (type, data) => {
    view.handleEvent(type, data);
    if (type.startsWith("generation.")) refreshCredits();
  }, (state, reason) => {
    setLive(state);
    if (state === "live") refreshCredits(); // the balance may have moved while the stream was down
    if (reason === "not_found") {
      toast("This board was deleted.", { kind: "error" });
      window.location.hash = "#/boards";
    } else if (reason === "unauthenticated") {
      showSignIn("Your key is no longer accepted. Sign in again.");
    }
  });
  const onKey = (e) => {
    if (e.key !== "Delete" && e.key !== "Backspace") return;
    if (e.target.closest("input, textarea, select, [contenteditable]") || document.querySelector(".overlay")) return;
    const sel = view.selected;
    if (!sel) return;
    e.preventDefault();
    if (sel.type === "node") view.deleteNode(sel.id);
    else view.deleteEdge(sel.id);
  };
  document.addEventListener("keydown", onKey);
  current = { view, panel, library, stream, onKey };
  stream.start();
}

// ------------------------------------------------------------------ routing

async function route() {
  if (!getKey()) {
    showSignIn();
    return;
  }
  signOut.hidden = false;
  refreshCredits();
  const m = /^#\/boards\/([^/]+)$/.exec(window.location.hash);
  if (m) await showBoard(decodeURIComponent(m[1]));
  else await showBoards();
}

signOut.addEventListener("click", () => {
  setKey("");
  window.location.hash = "";
  showSignIn();
});
window.addEventListener("hashchange", () => route());
window.addEventListener("online", () => current?.stream.reconnectNow());
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") current?.stream.reconnectNow();
});

await loadConfig();
route();
