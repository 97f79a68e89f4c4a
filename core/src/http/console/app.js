// The console's shell: login, navigation by the URL's hash, and a refresh every 5 s of the
// page on screen. Each page module exports `mount(view, params)`, which draws the page and
// may return `{refresh, stop}`.

import { api, setCredentials, clearCredentials, hasCredentials, userName } from "./api.js";
import { h, fill, field, input, notice } from "./dom.js";
import * as overview from "./overview.js";
import * as queues from "./queues.js";
import * as exchanges from "./exchanges.js";
import * as connections from "./connections.js";
import * as admin from "./admin.js";
import * as scheduled from "./scheduled.js";

const REFRESH_MS = 5000;

// Hash patterns: `:name` segments are percent-decoded parameters.
const ROUTES = [
  ["/", overview.mount, "Overview"],
  ["/queues", queues.list, "Queues"],
  ["/queues/:vhost/:name", queues.detail, "Queue"],
  ["/exchanges", exchanges.list, "Exchanges"],
  ["/exchanges/:vhost/:name", exchanges.detail, "Exchange"],
  ["/connections", connections.connections, "Connections"],
  ["/channels", connections.channels, "Channels"],
  ["/users", admin.users, "Users"],
  ["/vhosts", admin.vhosts, "Virtual hosts"],
  ["/permissions", admin.permissions, "Permissions"],
  ["/definitions", admin.definitions, "Definitions"],
  ["/scheduled", scheduled.list, "Scheduled"],
  ["/scheduled/:vhost/:name", scheduled.detail, "Scheduled"],
];

const view = document.getElementById("view");
let current = null;
let timer = null;
let loginMessage = null;
let generations = 0;

function match(path) {
  const parts = path.split("/").filter(Boolean);
  for (const [pattern, mount, title] of ROUTES) {
    const want = pattern.split("/").filter(Boolean);
    if (want.length !== parts.length) continue;
    const params = {};
    let ok = true;
    want.forEach((w, i) => {
      if (w.startsWith(":")) params[w.slice(1)] = decodeURIComponent(parts[i]);
      else if (w !== parts[i]) ok = false;
    });
    if (ok) return { mount, title, params, pattern };
  }
  return null;
}

function stop() {
  generations++;
  clearInterval(timer);
  timer = null;
  if (current && current.stop) current.stop();
  current = null;
}

async function route() {
  stop();
  if (!hasCredentials()) return showLogin();
  const path = location.hash.replace(/^#/, "") || "/";
  const found = match(path);
  for (const a of document.querySelectorAll("#nav a")) {
    const target = a.getAttribute("href").slice(1);
    const here = target === "/" ? path === "/" : path === target || path.startsWith(target + "/");
    if (here) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!found) {
    fill(view, h("h1", {}, "Not found"), notice("error", `no page ${path}`));
    return;
  }
  document.title = `${found.title} · Warren`;
  document.body.dataset.page = found.pattern;
  // Each page draws into its own element: one still loading when the user moves on draws
  // into a detached element, never over the page that replaced it.
  const generation = ++generations;
  const el = h("div", { class: "page" });
  fill(view, el);
  let page;
  try {
    page = (await found.mount(el, found.params)) || {};
  } catch (e) {
    if (!e.unauthorized) fill(el, h("h1", {}, found.title), notice("error", e.message));
    return;
  }
  if (generation !== generations) {
    if (page.stop) page.stop();
    return;
  }
  current = page;
  if (page.refresh) {
    timer = setInterval(() => {
      // Not while hidden, nor while a button waits for its confirming click.
      if (!document.hidden && !el.querySelector("button.armed")) page.refresh();
    }, REFRESH_MS);
  }
}

function showLogin() {
  stop();
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  document.title = "Log in · Warren";
  document.body.dataset.page = "login";
  const user = input("username", { autocomplete: "username", required: true, autocapitalize: "none" });
  const pass = input("password", { type: "password", autocomplete: "current-password" });
  const status = h("div", { "aria-live": "polite" }, loginMessage ? notice("error", loginMessage) : null);
  const login = h("form", { class: "panel login", id: "login" },
    h("h1", {}, "Log in to Warren"),
    field("Username", user), field("Password", pass),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Log in")), status);
  login.addEventListener("submit", async (event) => {
    event.preventDefault();
    setCredentials(user.value, pass.value);
    try {
      await api("GET", "/api/whoami");
      loginMessage = null;
      enter();
    } catch (e) {
      clearCredentials();
      const text = e.status === 401 ? "Login failed: wrong username or password." : e.message;
      fill(status, notice("error", text));
    }
  });
  fill(view, login);
  user.focus();
}

function enter() {
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  document.getElementById("who-name").textContent = "User: " + userName();
  route();
}

document.getElementById("logout").addEventListener("click", () => {
  clearCredentials();
  loginMessage = null;
  showLogin();
});

window.addEventListener("warren-unauthorized", () => {
  // The login form says itself why a login failed.
  if (document.body.dataset.page === "login") return;
  clearCredentials();
  loginMessage = "Your login is no longer accepted; please log in again.";
  showLogin();
});

window.addEventListener("hashchange", () => {
  if (hasCredentials()) route();
});

if (hasCredentials()) enter();
else showLogin();
