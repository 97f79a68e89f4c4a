// Overview: the node's totals, message rates and queued messages charted over the last
// ten minutes, alarms, listeners and node facts.

import { get, rateOf } from "./api.js";
import { h, fill, num, bytes, notice, table } from "./dom.js";
import { lineChart } from "./chart.js";

const SPAN_MS = 10 * 60 * 1000;
const RATES = [
  ["publish", "Publish"],
  ["deliver_get", "Deliver / get"],
  ["ack", "Ack"],
  ["confirm", "Confirm"],
  ["redeliver", "Redeliver"],
];

/** Rate points from RabbitMQ's `samples` (newest first, cumulative totals). */
function fromSamples(samples) {
  const points = [];
  for (let i = 0; i + 1 < samples.length; i++) {
    const a = samples[i];
    const b = samples[i + 1];
    const dt = a.timestamp - b.timestamp;
    if (dt > 0) points.push([a.timestamp, Math.max(0, ((a.sample - b.sample) * 1000) / dt)]);
  }
  return points;
}

export function mount(view) {
  // Points gathered in the browser, for a broker that sends no samples.
  const seen = Object.fromEntries([...RATES.map(([k]) => k), "ready", "unacked"].map((k) => [k, []]));
  const charts = h("div", { class: "charts" });
  const body = h("div", {});
  fill(view, h("h1", {}, "Overview"), charts, body);

  async function refresh() {
    const now = Date.now();
    const [o, nodes] = await Promise.all([
      get("/api/overview?msg_rates_age=600&msg_rates_incr=5"),
      get("/api/nodes").catch(() => []),
    ]);
    const stats = o.message_stats || {};
    const rates = RATES.map(([key, label]) => {
      const details = stats[key + "_details"];
      let points;
      if (details && Array.isArray(details.samples) && details.samples.length > 1) {
        points = fromSamples(details.samples);
      } else {
        seen[key].push([now, rateOf(o, key)]);
        points = seen[key];
      }
      return { label, points };
    });
    const qt = o.queue_totals || {};
    const queued = [["ready", "Ready", "messages_ready"], ["unacked", "Unacked", "messages_unacknowledged"]].map(([k, label, field]) => {
      const samples = qt[field + "_details"] && qt[field + "_details"].samples;
      let points;
      if (Array.isArray(samples) && samples.length > 0) {
        points = samples.map((s) => [s.timestamp, s.sample]);
      } else {
        seen[k].push([now, qt[field] || 0]);
        points = seen[k];
      }
      return { label, points };
    });
    for (const list of Object.values(seen)) {
      while (list.length && list[0][0] < now - SPAN_MS) list.shift();
    }
    fill(charts, lineChart("Message rates, last 10 minutes", rates, SPAN_MS, "/s"),
      lineChart("Queued messages, last 10 minutes", queued, SPAN_MS, ""));
    const t = o.object_totals || {};
    const node = nodes[0] || {};
    const alarms = o.alarms || [];
    fill(body,
      h("section", { class: "panel" }, h("h2", {}, "Totals"),
        h("dl", { class: "facts", id: "totals" },
          fact("Connections", num(t.connections), "connections"),
          fact("Channels", num(t.channels), "channels"),
          fact("Exchanges", num(t.exchanges), "exchanges"),
          fact("Queues", num(t.queues), "queues"),
          fact("Consumers", num(t.consumers), "consumers"),
          fact("Messages ready", num(qt.messages_ready), "messages_ready"),
          fact("Messages unacked", num(qt.messages_unacknowledged), "messages_unacknowledged"),
          fact("Messages total", num(qt.messages), "messages"))),
      h("section", { class: "panel" }, h("h2", {}, "Alarms"),
        alarms.length === 0
          ? h("p", { class: "state ok", id: "alarms" }, "No alarms: publishing is allowed.")
          : h("ul", { id: "alarms", class: "state bad" }, alarms.map((a) => h("li", {}, `ALARM: ${a.resource} on ${a.node}`)))),
      h("section", { class: "panel" }, h("h2", {}, "Node"),
        h("dl", { class: "facts" },
          fact("Name", o.node || node.name),
          fact("Version", `${o.product_name || "Warren"} ${o.product_version || ""} (RabbitMQ ${o.rabbitmq_version || "?"} API)`),
          node.uptime !== undefined ? fact("Uptime", uptime(node.uptime)) : null,
          node.mem_used !== undefined ? fact("Memory", `${bytes(node.mem_used)} of ${bytes(node.mem_limit)} limit`) : null,
          node.disk_free !== undefined ? fact("Disk free", `${bytes(node.disk_free)} (limit ${bytes(node.disk_free_limit)})`) : null,
          node.fd_used !== undefined ? fact("File descriptors", `${num(node.fd_used)} of ${num(node.fd_total)}`) : null)),
      h("section", { class: "panel" }, h("h2", {}, "Listeners"),
        table([
          { label: "Protocol", cell: (l) => l.protocol },
          { label: "Address", cell: (l) => l.ip_address },
          { label: "Port", cell: (l) => String(l.port), num: true },
        ], o.listeners || [])));
  }

  const safe = () => refresh().catch((e) => { if (!e.unauthorized) fill(body, notice("error", e.message)); });
  safe();
  return { refresh: safe };
}

function fact(label, value, id) {
  return [h("dt", {}, label), h("dd", { "data-total": id || null }, value)];
}

function uptime(ms) {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return (d ? `${d} d ` : "") + `${hh} h ${m} min`;
}
