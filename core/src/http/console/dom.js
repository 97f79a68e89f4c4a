// Building the page without ever parsing data as HTML: every value goes in as a text node or
// an attribute, so a queue named "<img onerror=…>" is shown, never run.

/** An element: `attrs` are attributes (`on…` functions become listeners, `class`, `data-…`,
 * and properties such as `value` or `checked` when given as `.value`), children are nodes,
 * strings or numbers (as text), arrays of those, or null/false (skipped). */
export function h(tag, attrs, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key.startsWith(".")) {
      el[key.slice(1)] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces everything in `el` with `children`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A whole number with thousands separators. */
export function num(n) {
  return Number(n || 0).toLocaleString("en-US");
}

/** A per-second rate: "0.0/s", "12/s", "1,234/s". */
export function rate(r) {
  const v = Number(r || 0);
  return (v >= 10 ? Math.round(v).toLocaleString("en-US") : v.toFixed(1)) + "/s";
}

/** A byte count as B, KiB, MiB, GiB. */
export function bytes(n) {
  let v = Number(n || 0);
  for (const unit of ["B", "KiB", "MiB", "GiB"]) {
    if (v < 1024 || unit === "GiB") return (unit === "B" ? v : v.toFixed(1)) + " " + unit;
    v /= 1024;
  }
  return v + " B";
}

/** An absolute time (ms since the epoch) as local "YYYY-MM-DD HH:MM:SS". */
export function when(ms) {
  const d = new Date(ms);
  const p = (x) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** How far `ms` is from now: "in 1 min 59 s", "3 s ago". */
export function relative(ms, now = Date.now()) {
  let s = Math.round((ms - now) / 1000);
  const past = s < 0;
  s = Math.abs(s);
  const parts = [];
  for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]]) {
    if (s >= size || (size === 1 && parts.length === 0)) {
      parts.push(Math.floor(s / size) + " " + unit);
      s %= size;
    }
    if (parts.length === 2) break;
  }
  return past ? parts.join(" ") + " ago" : "in " + parts.join(" ");
}

/** A table. `columns` are `{label, cell(row) -> node|string, field?, num?}`; rows with
 * `rowAttrs(row)` as the row's attributes. On a narrow screen each cell shows its column's
 * label (the CSS reads `data-label`). */
export function table(columns, rows, rowAttrs = () => ({}), empty = "None.") {
  if (rows.length === 0) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
      h("tbody", {}, rows.map((row) =>
        h("tr", rowAttrs(row), columns.map((c) =>
          h("td", { "data-label": c.label, "data-field": c.field || null, class: c.num ? "num" : null }, c.cell(row))))))));
}

/** A labelled form field around `input` (which gets an id for the label). */
let fieldIds = 0;
export function field(label, input, hint) {
  const id = input.id || `f${++fieldIds}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input,
    hint ? h("small", {}, hint) : null);
}

/** A text input. */
export function input(name, attrs = {}) {
  return h("input", { name, type: "text", autocomplete: "off", ...attrs });
}

/** A select with `options` as [value, label] pairs or plain values. */
export function select(name, options, selected) {
  const el = h("select", { name }, options.map((o) => {
    const [value, label] = Array.isArray(o) ? o : [o, o];
    return h("option", { value }, label);
  }));
  if (selected !== undefined) el.value = selected;
  return el;
}

/** A message box: kind is "error", "ok" or "info"; its text says which (not only colour). */
export function notice(kind, text) {
  const prefix = { error: "Error: ", ok: "Done: ", info: "" }[kind] || "";
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, prefix + text);
}

/** A button that needs a second click within 4 s to act (no modal dialogs: they are
 * awkward on a phone and for keyboard users). */
export function dangerButton(label, action, attrs = {}) {
  let armed = null;
  const button = h("button", {
    type: "button", class: "danger", ...attrs,
    onclick: async () => {
      if (!armed) {
        button.textContent = "Confirm: " + label;
        button.classList.add("armed");
        armed = setTimeout(() => {
          armed = null;
          button.textContent = label;
          button.classList.remove("armed");
        }, 4000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      button.disabled = true;
      try { await action(); } finally { button.disabled = false; button.textContent = label; button.classList.remove("armed"); }
    },
  }, label);
  return button;
}

/** A form whose submit runs `action(values)`, showing its outcome in a status line. */
export function form(title, fields, submitLabel, action, attrs = {}) {
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const el = h("form", { class: "panel form", ...attrs }, title ? h("h3", {}, title) : null, fields,
    h("div", { class: "actions" }, h("button", { type: "submit" }, submitLabel)), status);
  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(el).entries());
    for (const box of el.querySelectorAll("input[type=checkbox]")) values[box.name] = box.checked;
    try {
      const said = await action(values, el);
      fill(status, notice("ok", said || "saved."));
    } catch (e) {
      fill(status, notice("error", e.message));
    }
  });
  return el;
}

/** Sets `el`'s contents to the outcome of `promise` (a node), or the error it failed with. */
export async function settle(el, promise) {
  try {
    fill(el, await promise);
  } catch (e) {
    if (e && e.unauthorized) return;
    fill(el, notice("error", e.message));
  }
}
