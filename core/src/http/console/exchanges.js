// Exchanges: the list with a declare form, and one exchange's page: its bindings and a
// form that publishes a message through it.

import { api, get, enc, rateOf, vhostNames } from "./api.js";
import { h, fill, rate, table, field, input, select, form, dangerButton, notice } from "./dom.js";
import { bindingsPanel } from "./bindings.js";

/** The name of an exchange in a path: the default exchange is `amq.default`. */
const pathName = (name) => enc(name || "amq.default");

function exchangeLink(vhost, name) {
  return h("a", { href: `#/exchanges/${enc(vhost)}/${pathName(name)}` }, name || "(AMQP default)");
}

export async function list(view) {
  const body = h("div", {});
  const vhosts = await vhostNames().catch(() => ["/"]);
  const declare = form("Add an exchange", [
    field("Virtual host", select("vhost", vhosts, "/")),
    field("Name", input("name", { required: true })),
    field("Type", select("type", ["direct", "fanout", "topic", "headers", "x-delayed-message"], "direct")),
    field("Delayed type (for x-delayed-message)", select("delayed", ["direct", "fanout", "topic", "headers"], "direct")),
    field("Durable", h("input", { type: "checkbox", name: "durable", ".checked": true })),
    field("Auto-delete", h("input", { type: "checkbox", name: "auto_delete" })),
    field("Internal", h("input", { type: "checkbox", name: "internal" })),
  ], "Add exchange", async (v) => {
    const args = v.type === "x-delayed-message" ? { "x-delayed-type": v.delayed } : {};
    await api("PUT", `/api/exchanges/${enc(v.vhost)}/${enc(v.name)}`, {
      type: v.type, durable: v.durable, auto_delete: v.auto_delete, internal: v.internal, arguments: args,
    });
    await refresh();
    return `exchange ${v.name} declared.`;
  });
  fill(view, h("h1", {}, "Exchanges"), body, declare);

  async function refresh() {
    const rows = await get("/api/exchanges");
    fill(body, table([
      { label: "Name", cell: (x) => exchangeLink(x.vhost, x.name) },
      { label: "Virtual host", cell: (x) => x.vhost },
      { label: "Type", cell: (x) => x.type },
      { label: "Features", cell: (x) => [x.durable ? "durable" : "transient", x.auto_delete ? "auto-delete" : null, x.internal ? "internal" : null].filter(Boolean).join(", ") },
      { label: "Rate in", cell: (x) => rate(rateOf(x, "publish_in")), num: true },
      { label: "Rate out", cell: (x) => rate(rateOf(x, "publish_out")), num: true },
    ], rows, (x) => ({ "data-vhost": x.vhost, "data-exchange": x.name }), "No exchanges."));
  }
  const safe = () => refresh().catch((e) => { if (!e.unauthorized) fill(body, notice("error", e.message)); });
  await safe();
  return { refresh: safe };
}

export async function detail(view, { vhost, name }) {
  const real = name === "amq.default" ? "" : name;
  const path = `/api/exchanges/${enc(vhost)}/${pathName(real)}`;
  const facts = h("div", {});
  const bindings = bindingsPanel(vhost, real, "exchange");
  const publish = form("Publish a message", [
    field("Routing key", input("routing_key")),
    field("Delivery mode", select("delivery_mode", [["1", "1 (non-persistent)"], ["2", "2 (persistent)"]], "1")),
    field("Headers (JSON object)", input("headers", { placeholder: '{"x-delay": 60000}' })),
    field("Properties (JSON object)", input("properties", { placeholder: '{"content_type": "text/plain"}' })),
    field("Payload", h("textarea", { name: "payload", rows: 4 })),
    field("Payload encoding", select("payload_encoding", [["string", "string"], ["base64", "base64"]], "string")),
  ], "Publish message", async (v) => {
    const properties = v.properties ? JSON.parse(v.properties) : {};
    properties.delivery_mode = Number(v.delivery_mode);
    if (v.headers) properties.headers = JSON.parse(v.headers);
    const out = await api("POST", `${path}/publish`, {
      routing_key: v.routing_key, payload: v.payload, payload_encoding: v.payload_encoding, properties,
    });
    return out && out.routed ? "message published and routed." : "message published, but not routed to any queue.";
  }, { id: "publish" });
  const danger = real === "" || real.startsWith("amq.") ? null : h("section", { class: "panel" }, h("h2", {}, "Delete"),
    dangerButton("Delete exchange", async () => {
      await api("DELETE", path);
      location.hash = "#/exchanges";
    }));
  fill(view, h("p", { class: "crumbs" }, h("a", { href: "#/exchanges" }, "Exchanges"), " · in virtual host ", h("code", {}, vhost)),
    h("h1", {}, `Exchange ${real || "(AMQP default)"}`), facts, bindings.panel, publish, danger);

  async function refresh() {
    const x = await get(path);
    fill(facts, h("section", { class: "panel" }, h("h2", {}, "Details"),
      h("dl", { class: "facts" },
        h("dt", {}, "Virtual host"), h("dd", {}, x.vhost),
        h("dt", {}, "Type"), h("dd", {}, x.type),
        h("dt", {}, "Durable"), h("dd", {}, x.durable ? "yes" : "no"),
        h("dt", {}, "Auto-delete"), h("dd", {}, x.auto_delete ? "yes" : "no"),
        h("dt", {}, "Internal"), h("dd", {}, x.internal ? "yes" : "no"),
        h("dt", {}, "Arguments"), h("dd", {}, JSON.stringify(x.arguments || {})),
        h("dt", {}, "Rate in"), h("dd", {}, rate(rateOf(x, "publish_in"))),
        h("dt", {}, "Rate out"), h("dd", {}, rate(rateOf(x, "publish_out"))),
        x.type === "x-delayed-message" ? [h("dt", {}, "Scheduled"), h("dd", {},
          h("a", { href: `#/scheduled/${enc(vhost)}/${enc(real)}` }, "see pending messages"))] : null)));
  }
  const safe = () => refresh().catch((e) => { if (!e.unauthorized) fill(facts, notice("error", e.message)); });
  await safe();
  return { refresh: () => { safe(); bindings.refresh(); } };
}
