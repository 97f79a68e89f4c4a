// Administration: users (create, change tags or password, delete), virtual hosts (create,
// delete), permissions (set, clear) and definitions (export as a file, import a file).

import { api, get, enc, vhostNames } from "./api.js";
import { h, fill, num, table, field, input, select, form, dangerButton, notice } from "./dom.js";

const TAGS_HINT = "Comma-separated: administrator, monitoring, policymaker, management (or none).";

function page(view, title, loader, ...forms) {
  const body = h("div", {});
  fill(view, h("h1", {}, title), body, ...forms);
  const safe = () => loader(body).catch((e) => { if (!e.unauthorized) fill(body, notice("error", e.message)); });
  return { body, safe };
}

export async function users(view) {
  const create = form("Add or replace a user", [
    field("Username", input("name", { required: true, autocapitalize: "none" })),
    field("Password", input("password", { type: "password", autocomplete: "new-password" })),
    field("Tags", input("tags", { value: "management" }), TAGS_HINT),
  ], "Save user", async (v) => {
    await api("PUT", `/api/users/${enc(v.name)}`, { password: v.password, tags: v.tags });
    safe();
    return `user ${v.name} saved.`;
  }, { id: "add-user" });
  const { safe } = page(view, "Users", async (body) => {
    const rows = await get("/api/users");
    fill(body, table([
      { label: "Name", cell: (u) => u.name },
      { label: "Tags", cell: (u) => tagsText(u.tags) || "none" },
      { label: "Can log in", cell: (u) => u.password_hash ? "yes (password set)" : "no password" },
      { label: "Change tags", cell: (u) => inline(tagsText(u.tags), "Tags", "Set tags", (tags) =>
        api("PUT", `/api/users/${enc(u.name)}`, { password_hash: u.password_hash, hashing_algorithm: u.hashing_algorithm, tags })) },
      { label: "Change password", cell: (u) => inline("", "New password", "Set password", (password) =>
        api("PUT", `/api/users/${enc(u.name)}`, { password, tags: tagsText(u.tags) }), "password") },
      { label: "Action", cell: (u) => dangerButton("Delete", async () => { await api("DELETE", `/api/users/${enc(u.name)}`); safe(); }) },
    ], rows, (u) => ({ "data-user": u.name }), "No users."));
  }, create);
  await safe();
  return {};
}

function tagsText(tags) {
  return Array.isArray(tags) ? tags.join(",") : tags || "";
}

/** A one-field form inside a table cell. */
function inline(value, label, button, action, type = "text") {
  const box = input(label.toLowerCase().replace(/ /g, "_"), { value, type, "aria-label": label });
  const status = h("span", { class: "form-status", "aria-live": "polite" });
  const el = h("form", { class: "inline" }, box, h("button", { type: "submit" }, button), status);
  el.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await action(box.value);
      fill(status, " saved");
    } catch (err) {
      fill(status, notice("error", err.message));
    }
  });
  return el;
}

export async function vhosts(view) {
  const create = form("Add a virtual host", [
    field("Name", input("name", { required: true })),
    field("Description", input("description")),
  ], "Add virtual host", async (v) => {
    await api("PUT", `/api/vhosts/${enc(v.name)}`, { description: v.description });
    safe();
    return `virtual host ${v.name} added.`;
  });
  const { safe } = page(view, "Virtual hosts", async (body) => {
    const rows = await get("/api/vhosts");
    fill(body, table([
      { label: "Name", cell: (v) => v.name },
      { label: "Description", cell: (v) => v.description || "" },
      { label: "Messages", cell: (v) => num(v.messages), num: true },
      { label: "Action", cell: (v) => dangerButton("Delete", async () => { await api("DELETE", `/api/vhosts/${enc(v.name)}`); safe(); }) },
    ], rows, (v) => ({ "data-vhost": v.name }), "No virtual hosts."));
  }, create);
  await safe();
  return {};
}

export async function permissions(view) {
  const [names, users] = await Promise.all([
    vhostNames().catch(() => ["/"]),
    get("/api/users").then((u) => u.map((x) => x.name)).catch(() => []),
  ]);
  const set = form("Set permissions", [
    field("User", select("user", users, users[0])),
    field("Virtual host", select("vhost", names, "/")),
    field("Configure (regular expression)", input("configure", { value: ".*" })),
    field("Write (regular expression)", input("write", { value: ".*" })),
    field("Read (regular expression)", input("read", { value: ".*" })),
  ], "Set permissions", async (v) => {
    await api("PUT", `/api/permissions/${enc(v.vhost)}/${enc(v.user)}`, { configure: v.configure, write: v.write, read: v.read });
    safe();
    return `permissions of ${v.user} in ${v.vhost} set.`;
  });
  const { safe } = page(view, "Permissions", async (body) => {
    const rows = await get("/api/permissions");
    fill(body, table([
      { label: "User", cell: (p) => p.user },
      { label: "Virtual host", cell: (p) => p.vhost },
      { label: "Configure", cell: (p) => h("code", {}, p.configure) },
      { label: "Write", cell: (p) => h("code", {}, p.write) },
      { label: "Read", cell: (p) => h("code", {}, p.read) },
      { label: "Action", cell: (p) => dangerButton("Clear", async () => {
        await api("DELETE", `/api/permissions/${enc(p.vhost)}/${enc(p.user)}`);
        safe();
      }) },
    ], rows, () => ({}), "No permissions."));
  }, set);
  await safe();
  return {};
}

export async function definitions(view) {
  const status = h("div", { "aria-live": "polite" });
  const exportButton = h("button", { type: "button", id: "export" }, "Download definitions");
  exportButton.addEventListener("click", async () => {
    try {
      const doc = await get("/api/definitions");
      const blob = new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" });
      const link = h("a", { href: URL.createObjectURL(blob), download: "warren-definitions.json" });
      document.body.appendChild(link);
      link.click();
      link.remove();
      fill(status, notice("ok", "definitions exported (warren-definitions.json)."));
    } catch (e) {
      fill(status, notice("error", e.message));
    }
  });
  const file = h("input", { type: "file", name: "file", accept: "application/json,.json", required: true });
  const upload = form("Import definitions", [field("Definitions file (JSON)", file)], "Upload definitions", async () => {
    const chosen = file.files[0];
    if (!chosen) throw new Error("choose a file first");
    const text = await chosen.text();
    try { JSON.parse(text); } catch (e) { throw new Error(`the file is not JSON (${e.message})`); }
    await api("POST", "/api/definitions", text);
    return `${chosen.name} imported.`;
  });
  fill(view, h("h1", {}, "Definitions"),
    h("section", { class: "panel" }, h("h2", {}, "Export"),
      h("p", {}, "Users, virtual hosts, permissions, exchanges, queues and bindings as one JSON document (RabbitMQ's format)."),
      h("div", { class: "actions" }, exportButton), status),
    upload);
  return {};
}
