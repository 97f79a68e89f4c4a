// The one way the console talks to the broker: the management API's JSON over fetch, with
// the logged-in user's credentials as HTTP basic auth on every call (as RabbitMQ's console).
// The credentials live in sessionStorage: gone when the tab closes, never in a cookie.

const KEY = "warren.credentials";
const USER = "warren.user";

/** An API error: `message` is the API's `reason` (or what went wrong), `status` the HTTP code. */
export class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
    this.unauthorized = status === 401;
  }
}

export function setCredentials(user, password) {
  // btoa wants Latin-1: encode UTF-8 first so any password survives.
  const utf8 = new TextEncoder().encode(`${user}:${password}`);
  sessionStorage.setItem(KEY, btoa(String.fromCharCode(...utf8)));
  sessionStorage.setItem(USER, user);
}

/** The logged-in user's name. */
export function userName() {
  return sessionStorage.getItem(USER) || "";
}

export function clearCredentials() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(USER);
}

export function hasCredentials() {
  return sessionStorage.getItem(KEY) !== null;
}

/** Calls the API: resolves to the parsed JSON (null for an empty body), rejects with an
 * ApiFailure. A 401 also tells the app (the `warren-unauthorized` event) to show the login. */
export async function api(method, path, body, extraHeaders = {}) {
  const headers = {
    "X-Requested-With": "XMLHttpRequest",
    Accept: "application/json",
    ...extraHeaders,
  };
  const token = sessionStorage.getItem(KEY);
  if (token) headers.Authorization = "Basic " + token;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = typeof body === "string" ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  } catch (e) {
    throw new ApiFailure(0, "the broker did not answer (" + e.message + ")");
  }
  const text = await response.text();
  let json = null;
  if (text) {
    try { json = JSON.parse(text); } catch { json = null; }
  }
  if (!response.ok) {
    const reason = (json && (json.reason || json.error)) || `${response.status} ${response.statusText}`;
    const failure = new ApiFailure(response.status, reason);
    if (response.status === 401) {
      window.dispatchEvent(new CustomEvent("warren-unauthorized", { detail: reason }));
    }
    throw failure;
  }
  return json;
}

export const get = (path) => api("GET", path);

/** One path segment: a vhost "/" is "%2F". */
export const enc = encodeURIComponent;

/** A `message_stats` count; a missing key is 0 (RabbitMQ omits zero counts). */
export function count(object, key) {
  return (object && object.message_stats && object.message_stats[key]) || 0;
}

/** A `message_stats` rate per second; 0.0 when absent. */
export function rateOf(object, key) {
  const details = object && object.message_stats && object.message_stats[key + "_details"];
  return (details && details.rate) || 0;
}

/** The vhosts' names, for selects. */
export async function vhostNames() {
  return (await get("/api/vhosts")).map((v) => v.name);
}
