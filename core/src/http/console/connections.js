// Connections (with a close button that sends a reason) and channels.

import { api, get, enc, rateOf } from "./api.js";
import { h, fill, num, rate, when, table, input, dangerButton, notice } from "./dom.js";

export async function connections(view) {
  const body = h("div", {});
  const reason = input("reason", { value: "Closed via the management console", id: "close-reason" });
  fill(view, h("h1", {}, "Connections"),
    h("div", { class: "panel field" }, h("label", { for: "close-reason" }, "Reason sent to clients closed here"), reason),
    body);
  async function refresh() {
    const rows = await get("/api/connections");
    fill(body, table([
      { label: "Name", cell: (c) => c.name },
      { label: "User", cell: (c) => c.user },
      { label: "Virtual host", cell: (c) => c.vhost },
      { label: "State", cell: (c) => c.state },
      { label: "TLS", cell: (c) => c.ssl ? "yes" : "no" },
      { label: "Channels", cell: (c) => num(c.channels), num: true },
      { label: "Client", cell: (c) => clientName(c.client_properties) },
      { label: "Connected", cell: (c) => c.connected_at ? when(c.connected_at) : "" },
      { label: "Publish", cell: (c) => rate(rateOf(c, "publish")), num: true },
      { label: "Action", cell: (c) => dangerButton("Close", async () => {
        await api("DELETE", `/api/connections/${enc(c.name)}`, undefined, { "X-Reason": reason.value });
        await refresh();
      }) },
    ], rows, (c) => ({ "data-connection": c.name }), "No connections."));
  }
  const safe = () => refresh().catch((e) => { if (!e.unauthorized) fill(body, notice("error", e.message)); });
  await safe();
  return { refresh: safe };
}

function clientName(props) {
  if (!props) return "";
  return [props.product, props.version].filter(Boolean).join(" ");
}

export async function channels(view) {
  const body = h("div", {});
  fill(view, h("h1", {}, "Channels"), body);
  async function refresh() {
    const rows = await get("/api/channels");
    fill(body, table([
      { label: "Channel", cell: (c) => c.name },
      { label: "User", cell: (c) => c.user },
      { label: "Virtual host", cell: (c) => c.vhost },
      { label: "Mode", cell: (c) => [c.confirm ? "confirm" : null, c.transactional ? "transactional" : null].filter(Boolean).join(", ") || "plain" },
      { label: "State", cell: (c) => c.state },
      { label: "Consumers", cell: (c) => num(c.consumer_count), num: true },
      { label: "Prefetch", cell: (c) => num(c.prefetch_count), num: true },
      { label: "Unacked", cell: (c) => num(c.messages_unacknowledged), num: true },
      { label: "Publish", cell: (c) => rate(rateOf(c, "publish")), num: true },
      { label: "Deliver / get", cell: (c) => rate(rateOf(c, "deliver_get")), num: true },
      { label: "Ack", cell: (c) => rate(rateOf(c, "ack")), num: true },
    ], rows, () => ({}), "No channels."));
  }
  const safe = () => refresh().catch((e) => { if (!e.unauthorized) fill(body, notice("error", e.message)); });
  await safe();
  return { refresh: safe };
}
