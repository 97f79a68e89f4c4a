// Charts as inline SVG, drawn here: no library, nothing fetched. Each series has its own
// dash pattern and each bar its own hatch, with text labels, so they read without colour.

import { h } from "./dom.js";

const W = 640;
const H = 200;
const PAD = { left: 48, right: 12, top: 12, bottom: 26 };
const DASHES = ["", "6 3", "2 3", "10 3 2 3", "1 5"];

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function shortNumber(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(v >= 1e7 ? 0 : 1) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + "k";
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** A line chart of `series` ([{label, points: [[t_ms, value], …]}]) over the last
 * `spanMs`, ending now; with a legend naming each series and its latest value. */
export function lineChart(title, series, spanMs, unit = "/s") {
  const now = Date.now();
  const t0 = now - spanMs;
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1]))));
  const x = (t) => PAD.left + ((t - t0) / spanMs) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const grid = [0, 0.5, 1].map((f) => [
    h("svg:line", { x1: PAD.left, x2: W - PAD.right, y1: y(max * f), y2: y(max * f), class: "grid" }),
    h("svg:text", { x: PAD.left - 6, y: y(max * f) + 4, "text-anchor": "end", class: "axis" }, shortNumber(max * f)),
  ]);
  const minutes = Math.round(spanMs / 60000);
  const ticks = [0, 0.5, 1].map((f) => h("svg:text", {
    x: x(t0 + f * spanMs), y: H - 8, class: "axis",
    "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle",
  }, f === 1 ? "now" : `-${Math.round(minutes * (1 - f))} min`));
  const lines = series.map((s, i) => {
    const pts = s.points.filter((p) => p[0] >= t0).sort((a, b) => a[0] - b[0]);
    if (pts.length === 0) return null;
    return h("svg:polyline", {
      points: pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "),
      class: `series s${i}`, "stroke-dasharray": DASHES[i % DASHES.length] || null,
    });
  });
  const svg = h("svg:svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart",
    "aria-label": `${title}: ` + series.map((s) => `${s.label} ${latest(s, unit)}${unit}`).join(", "),
  }, h("svg:title", {}, title), grid, ticks, lines);
  const legend = h("ul", { class: "legend" }, series.map((s, i) => h("li", {},
    h("svg:svg", { viewBox: "0 0 30 10", class: "swatch", "aria-hidden": "true" },
      h("svg:line", { x1: 0, x2: 30, y1: 5, y2: 5, class: `series s${i}`, "stroke-dasharray": DASHES[i % DASHES.length] || null })),
    `${s.label}: ${latest(s, unit)}${unit}`)));
  return h("figure", { class: "chart-box" }, h("figcaption", {}, title), svg, legend);
}

/** The newest value of a series: a rate with one decimal below 10, a count whole. */
function latest(s, unit) {
  const v = s.points.length === 0 ? 0 : s.points.reduce((a, b) => (b[0] > a[0] ? b : a))[1];
  return unit && v < 10 ? Number(v).toFixed(1) : Math.round(v).toLocaleString("en-US");
}

/** A bar chart of `bars` ([{label, value}]): each bar hatched differently, its count written
 * above it and its label below. */
export function barChart(title, bars) {
  const max = niceMax(Math.max(0, ...bars.map((b) => b.value)));
  const slot = (W - PAD.left - PAD.right) / Math.max(1, bars.length);
  const base = H - PAD.bottom - 8;
  const patterns = h("svg:defs", {}, bars.map((_, i) => h("svg:pattern", {
    id: `hatch${i}`, width: 8, height: 8, patternUnits: "userSpaceOnUse",
    patternTransform: `rotate(${[45, -45, 0, 90][i % 4]})`,
  }, h("svg:rect", { width: 8, height: 8, class: `bar-bg b${i}` }),
    h("svg:line", { x1: 0, y1: 0, x2: 0, y2: 8, class: "hatch", "stroke-width": 2 + (i % 3) }))));
  const drawn = bars.map((b, i) => {
    const height = (b.value / max) * (base - PAD.top - 14);
    const bx = PAD.left + i * slot + slot * 0.15;
    return h("svg:g", { class: "bar" },
      h("svg:rect", { x: bx, y: base - height, width: slot * 0.7, height: Math.max(height, 1), fill: `url(#hatch${i})`, class: "bar-rect" }),
      h("svg:text", { x: bx + slot * 0.35, y: base - height - 4, "text-anchor": "middle", class: "value" }, b.value.toLocaleString("en-US")),
      h("svg:text", { x: bx + slot * 0.35, y: H - 8, "text-anchor": "middle", class: "axis" }, b.label));
  });
  return h("figure", { class: "chart-box" }, h("figcaption", {}, title),
    h("svg:svg", {
      viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart",
      "aria-label": `${title}: ` + bars.map((b) => `${b.label} ${b.value}`).join(", "),
    }, h("svg:title", {}, title), patterns,
      h("svg:line", { x1: PAD.left, x2: W - PAD.right, y1: base, y2: base, class: "grid" }), drawn));
}
