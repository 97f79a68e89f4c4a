// Scheduled: what each x-delayed-message exchange holds — its pending count, a chart of how
// many fall due when (read from the scheduler's own structure, not by scanning messages),
// the next messages due with paging, and cancelling one or many by routing key or due range.

import { api, get, enc } from "./api.js";
import { h, fill, num, bytes, when, relative, table, field, input, form, dangerButton, notice } from "./dom.js";
import { barChart } from "./chart.js";

const PAGE_SIZE = 25;

export async function list(view) {
  const body = h("div", {});
  fill(view, h("h1", {}, "Scheduled messages"),
    h("p", {}, "Messages held by delayed (x-delayed-message) exchanges until they fall due."), body);
  async function refresh() {
    const rows = await get("/api/scheduled");
    fill(body, table([
      { label: "Exchange", cell: (s) => h("a", { href: `#/scheduled/${enc(s.vhost)}/${enc(s.exchange)}` }, s.exchange) },
      { label: "Virtual host", cell: (s) => s.vhost },
      { label: "Pending", cell: (s) => num(s.pending), field: "pending", num: true },
    ], rows, (s) => ({ "data-vhost": s.vhost, "data-scheduled": s.exchange }), "No delayed exchanges."));
  }
  const safe = () => refresh().catch((e) => { if (!e.unauthorized) fill(body, notice("error", e.message)); });
  await safe();
  return { refresh: safe };
}

/** ms since the epoch from a datetime-local value (local time), or undefined when empty. */
function msOf(value) {
  if (!value) return undefined;
  const t = new Date(value).getTime();
  if (Number.isNaN(t)) throw new Error(`not a date and time: ${value}`);
  return t;
}

export async function detail(view, { vhost, name }) {
  const base = `/api/scheduled/${enc(vhost)}/${enc(name)}`;
  const summary = h("div", {});
  const chart = h("div", { id: "due-chart" });
  const items = h("div", { id: "pending" });
  const pager = h("div", { class: "actions pager" });
  // The cursors of the pages seen, so "Previous" can go back; the first page has none.
  let cursors = [null];
  let filter = {};

  const filterForm = form("Filter the list", [
    field("Routing key", input("routing_key")),
    field("Due from", input("from", { type: "datetime-local", step: 1 })),
    field("Due until", input("to", { type: "datetime-local", step: 1 })),
  ], "Apply filter", async (v) => {
    filter = { routing_key: v.routing_key || undefined, from_ms: msOf(v.from), to_ms: msOf(v.to) };
    cursors = [null];
    await refreshList();
    return "filter applied.";
  });
  const cancelForm = form("Cancel by filter", [
    field("Routing key", input("routing_key")),
    field("Due from", input("from", { type: "datetime-local", step: 1 })),
    field("Due until", input("to", { type: "datetime-local", step: 1 })),
  ], "Cancel matching messages", async (v) => {
    const body = {};
    if (v.routing_key) body.routing_key = v.routing_key;
    if (v.from) body.from_ms = msOf(v.from);
    if (v.to) body.to_ms = msOf(v.to);
    if (Object.keys(body).length === 0) throw new Error("give a routing key or a due range: an empty filter would cancel everything");
    const out = await api("POST", `${base}/cancel`, body);
    cursors = [null];
    await refresh();
    return `${num(out.cancelled)} message(s) cancelled${out.more ? "; more match, cancel again for the rest" : ""}.`;
  }, { id: "cancel-filter" });

  fill(view, h("p", { class: "crumbs" }, h("a", { href: "#/scheduled" }, "Scheduled"), " · in virtual host ", h("code", {}, vhost)),
    h("h1", {}, `Scheduled on ${name}`), summary,
    h("section", { class: "panel" }, h("h2", {}, "When they fall due"), chart),
    h("section", { class: "panel" }, h("h2", {}, "Next due"), items, pager),
    filterForm, cancelForm);

  async function refreshChart() {
    let due;
    try {
      due = await get(`${base}/due`);
    } catch (e) {
      if (e.unauthorized) throw e;
      fill(chart, notice("info", `The due-time chart is not available from this broker (${e.message}).`));
      return;
    }
    const bars = (due.buckets || []).map((b) => ({ label: b.label, value: b.count || 0 }));
    fill(chart, barChart("Pending messages by when they fall due", bars),
      h("p", { class: "note" }, due.exact === false ? "Counts for the later buckets are estimates from the scheduler's structure." : "Counts are exact."));
  }

  async function refreshList() {
    const after = cursors[cursors.length - 1];
    const q = new URLSearchParams({ page_size: PAGE_SIZE });
    if (after) q.set("after", after);
    for (const [k, v] of Object.entries(filter)) if (v !== undefined) q.set(k, v);
    const page = await get(`${base}?${q}`);
    // A cancel button waiting for its confirming click is not redrawn away.
    if (items.querySelector("button.armed")) return;
    const now = Date.now();
    fill(items, table([
      { label: "Id", cell: (m) => String(m.id) },
      { label: "Routing key", cell: (m) => m.routing_key },
      { label: "Size", cell: (m) => bytes(m.body_size), num: true },
      { label: "Due", cell: (m) => h("time", { datetime: new Date(m.due_ms).toISOString() }, when(m.due_ms)) },
      { label: "Due in", cell: (m) => relative(m.due_ms, now) },
      { label: "Action", cell: (m) => dangerButton("Cancel", async () => {
        await api("DELETE", `${base}/${enc(m.id)}`);
        await refresh();
      }, { "data-action": "cancel" }) },
    ], page.items, (m) => ({ "data-id": m.id, "data-due-ms": m.due_ms }), "Nothing pending."));
    const prev = h("button", { type: "button", disabled: cursors.length === 1, onclick: () => { cursors.pop(); refreshList(); } }, "Previous page");
    const next = h("button", { type: "button", disabled: !page.next, onclick: () => { cursors.push(page.next); refreshList(); } }, "Next page");
    fill(pager, prev, h("span", {}, `Page ${cursors.length}`), next);
  }

  async function refresh() {
    const counts = await get("/api/scheduled");
    const mine = counts.find((c) => c.vhost === vhost && c.exchange === name);
    fill(summary, h("section", { class: "panel" }, h("dl", { class: "facts" },
      h("dt", {}, "Virtual host"), h("dd", {}, vhost),
      h("dt", {}, "Pending"), h("dd", { "data-field": "pending" }, mine ? num(mine.pending) : "unknown (no such delayed exchange)"))));
    await Promise.all([refreshChart(), refreshList()]);
  }
  const safe = () => refresh().catch((e) => { if (!e.unauthorized) fill(summary, notice("error", e.message)); });
  await safe();
  return { refresh: safe };
}
