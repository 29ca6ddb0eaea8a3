// The public HTTP contract, as the canvas uses it: every call carries the API key; errors come
// back as ApiError with the envelope's code and human sentence.

// The api serves the page at <base>/canvas/, so <base> is the api this page talks to.
export const API_BASE = new URL("../", window.location.href).href.replace(/\/$/, "");
const KEY_STORAGE = "easel.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export function getKey() {
  return window.sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setKey(key) {
  if (key) window.sessionStorage.setItem(KEY_STORAGE, key);
  else window.sessionStorage.removeItem(KEY_STORAGE);
}

export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${getKey()}`, ...extra };
}

// URLs in nodes are absolute (API_PUBLIC_URL). Behind another host name or a second replica the
// page resolves the api path against the api it was served from, so it never goes cross-origin.
export function apiUrl(url) {
  if (!url) return url;
  const u = new URL(url, API_BASE + "/");
  const base = new URL(API_BASE + "/");
  if (u.origin === base.origin) return u.href;
  const at = u.pathname.indexOf("/v1/");
  return at >= 0 ? API_BASE + u.pathname.slice(at) + u.search : u.href;
}

const listeners = new Set();
/** Called with every 401, so the page can ask for the key again. */
export function onUnauthorized(fn) {
  listeners.add(fn);
}

async function errorFrom(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  const err = body && body.error ? body.error : {};
  const message = err.message || `The server answered ${resp.status}.`;
  return new ApiError(resp.status, err.code || "http_error", message, body);
}

/** JSON request against `base` (the api by default). Resolves to the parsed body (null on 204). */
export async function request(method, path, { json, body, headers = {}, base = API_BASE, signal } = {}) {
  const init = { method, headers: authHeaders(headers), signal, cache: "no-store" };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  let resp;
  try {
    resp = await fetch(base + path, init);
  } catch (exc) {
    if (exc && exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network_error", "The server could not be reached. Check your connection and retry.", null);
  }
  if (resp.status === 401) listeners.forEach((fn) => fn());
  if (!resp.ok) throw await errorFrom(resp);
  if (resp.status === 204) return null;
  return resp.json();
}

export const api = {
  get: (path, opts) => request("GET", path, opts),
  post: (path, json, opts = {}) => request("POST", path, { ...opts, json }),
  patch: (path, json, opts = {}) => request("PATCH", path, { ...opts, json }),
  del: (path, opts) => request("DELETE", path, opts),
};

/**
 * Follow an authenticated 302 (image content, thumbnail, download) and return the bytes.
 * The short-lived URL it lands on is another origin for S3 storage, which is read with CORS.
 */
export async function fetchBlob(url) {
  let resp;
  try {
    resp = await fetch(url, { headers: authHeaders(), redirect: "follow", cache: "no-store" });
  } catch {
    throw new ApiError(0, "network_error", "The image could not be loaded.", null);
  }
  if (!resp.ok) throw await errorFrom(resp);
  return { blob: await resp.blob(), response: resp };
}

// ------------------------------------------------------------------ images, cached and throttled

const cache = new Map(); // url -> Promise<object URL>; image ids never change content
const waiting = [];
let running = 0;
const MAX_PARALLEL = 6;

function pump() {
  while (running < MAX_PARALLEL && waiting.length) {
    const job = waiting.shift();
    running += 1;
    job().finally(() => {
      running -= 1;
      pump();
    });
  }
}

/** An object URL for an image route (thumbnail or content), fetched once per page. */
export function imageObjectUrl(url) {
  const key = apiUrl(url);
  let p = cache.get(key);
  if (!p) {
    p = new Promise((resolve, reject) => {
      waiting.push(() =>
        fetchBlob(key).then(({ blob }) => resolve(URL.createObjectURL(blob)), reject),
      );
      pump();
    });
    p.catch(() => cache.delete(key)); // a failed load may be retried later
    cache.set(key, p);
  }
  return p;
}

/** Like imageObjectUrl but for another service (assets), whose URLs are used as given. */
export function foreignImageObjectUrl(url) {
  let p = cache.get(url);
  if (!p) {
    p = fetchBlob(url).then(({ blob }) => URL.createObjectURL(blob));
    p.catch(() => cache.delete(url));
    cache.set(url, p);
  }
  return p;
}
