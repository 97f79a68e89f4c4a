// Queues: the list (counts and rates) with a declare form, and one queue's page: counts,
// consumers, bindings, get messages, purge, delete.

import { api, get, enc, rateOf, vhostNames } from "./api.js";
import { h, fill, num, rate, bytes, table, field, input, select, form, dangerButton, notice } from "./dom.js";
import { bindingsPanel } from "./bindings.js";

function features(q) {
  const f = [];
  if (q.durable) f.push("durable");
  if (q.auto_delete) f.push("auto-delete");
  if (q.exclusive) f.push("exclusive");
  for (const key of Object.keys(q.arguments || {})) f.push(key.replace(/^x-/, ""));
  return f.join(", ");
}

export function queueLink(vhost, name) {
  return h("a", { href: `#/queues/${enc(vhost)}/${enc(name)}` }, name);
}

export async function list(view) {
  const body = h("div", {});
  const vhosts = await vhostNames().catch(() => ["/"]);
  const declare = form("Add a queue", [
    field("Virtual host", select("vhost", vhosts, "/")),
    field("Name", input("name", { required: true })),
    field("Type", select("type", ["classic", "quorum", "stream"], "classic")),
    field("Durable", h("input", { type: "checkbox", name: "durable", ".checked": true })),
    field("Auto-delete", h("input", { type: "checkbox", name: "auto_delete" })),
    field("Arguments (JSON object)", input("arguments", { placeholder: '{"x-message-ttl": 60000}' })),
  ], "Add queue", async (v) => {
    const args = v.arguments ? JSON.parse(v.arguments) : {};
    if (v.type !== "classic") args["x-queue-type"] = v.type;
    await api("PUT", `/api/queues/${enc(v.vhost)}/${enc(v.name)}`, { durable: v.durable, auto_delete: v.auto_delete, arguments: args });
    await refresh();
    return `queue ${v.name} declared.`;
  }, { id: "declare-queue" });
  fill(view, h("h1", {}, "Queues"), body, declare);

  async function refresh() {
    const queues = await get("/api/queues");
    fill(body, h("p", { class: "count" }, `${queues.length} queue${queues.length === 1 ? "" : "s"}`),
      table([
        { label: "Name", cell: (q) => queueLink(q.vhost, q.name) },
        { label: "Virtual host", cell: (q) => q.vhost },
        { label: "Type", cell: (q) => q.type || "classic" },
        { label: "Features", cell: (q) => features(q) },
        { label: "State", cell: (q) => q.state },
        { label: "Ready", cell: (q) => num(q.messages_ready), field: "messages_ready", num: true },
        { label: "Unacked", cell: (q) => num(q.messages_unacknowledged), field: "messages_unacknowledged", num: true },
        { label: "Total", cell: (q) => num(q.messages), field: "messages", num: true },
        { label: "Publish", cell: (q) => rate(rateOf(q, "publish")), num: true },
        { label: "Deliver / get", cell: (q) => rate(rateOf(q, "deliver_get")), num: true },
        { label: "Ack", cell: (q) => rate(rateOf(q, "ack")), num: true },
      ], queues, (q) => ({ "data-vhost": q.vhost, "data-queue": q.name }), "No queues."));
  }
  const safe = () => refresh().catch((e) => { if (!e.unauthorized) fill(body, notice("error", e.message)); });
  await safe();
  return { refresh: safe };
}

export async function detail(view, { vhost, name }) {
  const path = `/api/queues/${enc(vhost)}/${enc(name)}`;
  const facts = h("div", {});
  const consumers = h("div", {});
  const bindings = bindingsPanel(vhost, name, "queue");
  const got = h("div", { id: "got" });
  const getForm = form("Get messages", [
    field("Ack mode", select("ackmode", [
      ["ack_requeue_true", "Nack, requeue (the message stays)"],
      ["ack_requeue_false", "Ack (the message is removed)"],
      ["reject_requeue_true", "Reject, requeue"],
      ["reject_requeue_false", "Reject, no requeue"],
    ], "ack_requeue_true")),
    field("Encoding", select("encoding", [["auto", "Text if UTF-8, else base64"], ["base64", "base64"]], "auto")),
    field("Messages", input("count", { type: "number", min: 1, value: 1 })),
    field("Truncate payload at (bytes)", input("truncate", { type: "number", min: 1, value: 50000 })),
  ], "Get messages", async (v) => {
    const messages = await api("POST", `${path}/get`, {
      count: Number(v.count), ackmode: v.ackmode, encoding: v.encoding, truncate: Number(v.truncate),
    });
    fill(got, messages.length === 0 ? notice("info", "The queue is empty.") :
      messages.map((m, i) => h("article", { class: "panel message" },
        h("h3", {}, `Message ${i + 1}`),
        h("dl", { class: "facts" },
          h("dt", {}, "Exchange"), h("dd", {}, m.exchange || "(default)"),
          h("dt", {}, "Routing key"), h("dd", {}, m.routing_key),
          h("dt", {}, "Redelivered"), h("dd", {}, m.redelivered ? "yes" : "no"),
          h("dt", {}, "Remaining in queue"), h("dd", {}, num(m.message_count)),
          h("dt", {}, "Properties"), h("dd", {}, h("code", {}, JSON.stringify(m.properties))),
          h("dt", {}, `Payload (${num(m.payload_bytes)} bytes, ${m.payload_encoding})`),
          h("dd", {}, h("pre", {}, m.payload))))));
    await refresh();
    return `${messages.length} message(s) fetched.`;
  });
  const danger = h("section", { class: "panel" }, h("h2", {}, "Purge or delete"),
    h("div", { class: "actions" },
      dangerButton("Purge messages", async () => {
        await api("DELETE", `${path}/contents`);
        await refresh();
      }, { id: "purge" }),
      dangerButton("Delete queue", async () => {
        await api("DELETE", path);
        location.hash = "#/queues";
      }, { id: "delete-queue" })));
  fill(view, h("p", { class: "crumbs" }, h("a", { href: "#/queues" }, "Queues"), " · in virtual host ", h("code", {}, vhost)),
    h("h1", {}, `Queue ${name}`), facts,
    h("section", { class: "panel" }, h("h2", {}, "Consumers"), consumers),
    bindings.panel, getForm, got, danger);

  async function refresh() {
    const [q, all] = await Promise.all([get(path), get(`/api/consumers/${enc(vhost)}`).catch(() => [])]);
    fill(facts, h("section", { class: "panel" }, h("h2", {}, "Details"),
      h("dl", { class: "facts" },
        h("dt", {}, "Virtual host"), h("dd", {}, q.vhost),
        h("dt", {}, "Type"), h("dd", {}, q.type || "classic"),
        h("dt", {}, "Features"), h("dd", {}, features(q) || "none"),
        h("dt", {}, "State"), h("dd", {}, q.state),
        h("dt", {}, "Ready"), h("dd", { "data-field": "messages_ready" }, num(q.messages_ready)),
        h("dt", {}, "Unacked"), h("dd", { "data-field": "messages_unacknowledged" }, num(q.messages_unacknowledged)),
        h("dt", {}, "Total"), h("dd", { "data-field": "messages" }, num(q.messages)),
        h("dt", {}, "Ready bytes"), h("dd", {}, bytes(q.message_bytes_ready)),
        h("dt", {}, "Memory (estimate)"), h("dd", {}, bytes(q.memory)),
        h("dt", {}, "Publish rate"), h("dd", {}, rate(rateOf(q, "publish"))),
        h("dt", {}, "Deliver / get rate"), h("dd", {}, rate(rateOf(q, "deliver_get"))),
        h("dt", {}, "Ack rate"), h("dd", {}, rate(rateOf(q, "ack"))))));
    const mine = all.filter((c) => c.queue && c.queue.name === name);
    fill(consumers, table([
      { label: "Tag", cell: (c) => c.consumer_tag },
      { label: "Channel", cell: (c) => c.channel_details ? c.channel_details.name : "" },
      { label: "Ack required", cell: (c) => c.ack_required ? "yes" : "no" },
      { label: "Exclusive", cell: (c) => c.exclusive ? "yes" : "no" },
      { label: "Prefetch", cell: (c) => String(c.prefetch_count), num: true },
    ], mine, () => ({}), "No consumers."));
  }
  const safe = () => refresh().catch((e) => { if (!e.unauthorized) fill(facts, notice("error", e.message)); });
  await safe();
  return { refresh: () => { safe(); bindings.refresh(); } };
}
