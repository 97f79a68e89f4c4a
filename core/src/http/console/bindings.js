// The bindings panel shared by a queue's page (bindings to it) and an exchange's (bindings
// from it): a table with unbind buttons and a form to add one.

import { api, get, enc } from "./api.js";
import { h, fill, table, field, input, select, form, dangerButton, notice } from "./dom.js";

/** `side` is "queue" (bindings whose destination is the queue `name`) or "exchange"
 * (bindings whose source is the exchange `name`). */
export function bindingsPanel(vhost, name, side) {
  const list = h("div", {});
  const v = enc(vhost);
  const path = side === "queue"
    ? `/api/queues/${v}/${enc(name)}/bindings`
    : `/api/exchanges/${v}/${enc(name || "amq.default")}/bindings/source`;

  async function refresh() {
    const rows = await get(path);
    fill(list, table([
      { label: side === "queue" ? "From exchange" : "To", cell: (b) => side === "queue" ? (b.source || "(default exchange)") : `${b.destination_type} ${b.destination}` },
      { label: "Routing key", cell: (b) => b.routing_key },
      { label: "Arguments", cell: (b) => Object.keys(b.arguments || {}).length ? JSON.stringify(b.arguments) : "" },
      { label: "Action", cell: (b) => b.source === "" ? "(implicit)" : dangerButton("Unbind", async () => {
        const letter = b.destination_type === "exchange" ? "e" : "q";
        await api("DELETE", `/api/bindings/${v}/e/${enc(b.source)}/${letter}/${enc(b.destination)}/${enc(b.properties_key)}`);
        await refresh();
      }) },
    ], rows, () => ({}), "No bindings."));
  }

  const other = input("other", { required: true });
  const kind = select("kind", [["q", "queue"], ["e", "exchange"]], "q");
  const add = form("Add binding", [
    side === "queue" ? field("From exchange", other) : [field("Destination type", kind), field("Destination name", other)],
    field("Routing key", input("routing_key")),
    field("Arguments (JSON object)", input("arguments", { placeholder: "{}" })),
  ], "Bind", async (values) => {
    const args = values.arguments ? JSON.parse(values.arguments) : {};
    const url = side === "queue"
      ? `/api/bindings/${v}/e/${enc(values.other)}/q/${enc(name)}`
      : `/api/bindings/${v}/e/${enc(name)}/${values.kind}/${enc(values.other)}`;
    await api("POST", url, { routing_key: values.routing_key, arguments: args });
    await refresh();
    return "bound.";
  });

  const panel = h("section", { class: "panel" }, h("h2", {}, "Bindings"), list, add);
  refresh().catch((e) => fill(list, notice("error", e.message)));
  return { panel, refresh: () => refresh().catch(() => {}) };
}
