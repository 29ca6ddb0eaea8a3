// The board's live events. A browser EventSource cannot send the Authorization header the api
// requires, so this reads the same text/event-stream with fetch() and parses it as the HTML
// spec's EventSource does: same fields, same Last-Event-ID on reconnect, same "id" reset.

import { ApiError, authHeaders } from "./api.js";

const MIN_RETRY_MS = 500;
const MAX_RETRY_MS = 8000;
const SILENCE_MS = 45000; // the server sends a keep-alive every 15 s: silence this long is a dead link

export class BoardStream {
  /**
   * @param {string} url  the board's /events URL
   * @param {(type: string, data: any, id: string) => void} onEvent
   * @param {(state: "connecting"|"live"|"offline"|"closed", detail?: string) => void} onState
   */
  constructor(url, onEvent, onState) {
    this.url = url;
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastEventId = "";
    this.retryMs = MIN_RETRY_MS;
    this.stopped = false;
    this.controller = null;
    this.timer = null;
    this.wake = null;
  }

  start() {
    this.stopped = false;
    this.loop();
  }

  /** Skip the backoff wait (the browser came back online, or the tab became visible). */
  reconnectNow() {
    if (this.wake) {
      clearTimeout(this.timer);
      this.wake();
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
    this.onState("closed");
  }

  async loop() {
    while (!this.stopped) {
      let waitMs = this.retryMs;
      try {
        const fatal = await this.connect();
        if (fatal) {
          this.stopped = true;
          this.onState("closed", fatal);
          return;
        }
      } catch (exc) {
        if (this.stopped) return;
        if (exc instanceof ApiError && exc.retryAfter) waitMs = exc.retryAfter * 1000;
      }
      if (this.stopped) return;
      this.onState("offline");
      // Full jitter, so many pages that lost one server do not all come back at once.
      await new Promise((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(resolve, Math.random() * waitMs + 100);
      });
      this.wake = null;
      this.retryMs = Math.min(MAX_RETRY_MS, this.retryMs * 2);
    }
  }

  /** One connection; resolves when it ends (to reconnect), or with a reason to stop for good. */
  async connect() {
    this.controller = new AbortController();
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    this.onState("connecting");
    const resp = await fetch(this.url, { headers, cache: "no-store", signal: this.controller.signal });
    if (resp.status === 401) return "unauthenticated";
    if (resp.status === 404) return "not_found";
    if (!resp.ok || !resp.body) {
      const err = new ApiError(resp.status, "events_unavailable", "Live updates are unavailable.", null);
      err.retryAfter = Number(resp.headers.get("Retry-After")) || 0;
      throw err;
    }
    this.onState("live");
    this.retryMs = MIN_RETRY_MS;
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let watchdog = null;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => this.controller.abort(), SILENCE_MS);
    };
    arm();
    const parser = new SseParser((type, data, id) => {
      let parsed;
      try {
        parsed = JSON.parse(data);
      } catch {
        return;
      }
      this.onEvent(type, parsed, id);
    }, (id) => {
      this.lastEventId = id;
    });
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        parser.push(value);
      }
    } finally {
      clearTimeout(watchdog);
    }
    return null;
  }
}

/** The HTML spec's event-stream interpretation (fields id, event, data; comments ignored). */
export class SseParser {
  constructor(dispatch, setLastId) {
    this.dispatch = dispatch;
    this.setLastId = setLastId;
    this.buffer = "";
    this.data = [];
    this.type = "";
    this.idBuffer = null; // null: no id seen on this connection yet (the last one still holds)
    this.skipLF = false;
  }

  push(chunk) {
    // A chunk that ended in "\r" may have been cut inside a "\r\n": drop that "\n".
    if (this.skipLF && chunk.startsWith("\n")) chunk = chunk.slice(1);
    this.skipLF = chunk.endsWith("\r");
    this.buffer += chunk;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.idBuffer !== null) this.setLastId(this.idBuffer);
      if (this.data.length) this.dispatch(this.type || "message", this.data.join("\n"), this.idBuffer || "");
      this.data = [];
      this.type = "";
      return;
    }
    if (line.startsWith(":")) return;
    const at = line.indexOf(":");
    const field = at < 0 ? line : line.slice(0, at);
    let value = at < 0 ? "" : line.slice(at + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.idBuffer = value;
  }
}
