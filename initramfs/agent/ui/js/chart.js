// Line charts in SVG for the history the agent keeps (GET /node/history,
// GET /vms/{name}/history): CPU, memory, disk and network over the last hour.

import { fmtBytes, h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 320, H = 120, PAD_LEFT = 4, PAD_TOP = 6;

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

/**
 * One chart: `points` from the history, `series` [{key, label, cls}],
 * `format` for the values, `max` a fixed top (else the largest value).
 */
export function lineChart(title, points, series, format, max) {
  const top = max || Math.max(1, ...points.flatMap((p) => series.map((s) => p[s.key])));
  const t0 = points.length ? points[0].t : 0;
  const span = Math.max(1, (points.length ? points[points.length - 1].t : 0) - t0);
  const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": title });
  for (const y of [0.25, 0.5, 0.75]) {
    plot.append(svg("line", { x1: 0, x2: W, y1: PAD_TOP + y * (H - PAD_TOP), y2: PAD_TOP + y * (H - PAD_TOP), class: "grid" }));
  }
  for (const s of series) {
    const coords = points.map((p) => {
      const x = PAD_LEFT + ((p.t - t0) / span) * (W - PAD_LEFT);
      const y = H - (Math.min(p[s.key], top) / top) * (H - PAD_TOP);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    // A single point still shows: a dot instead of a line.
    if (coords.length === 1) {
      const [x, y] = coords[0].split(",");
      plot.append(svg("circle", { cx: x, cy: y, r: 2.5, class: `series ${s.cls}` }));
    }
    plot.append(svg("polyline", { points: coords.join(" "), class: `series ${s.cls}`, "data-points": coords.length }));
  }
  const last = points[points.length - 1];
  return h("figure", { class: "chart", "data-points": points.length },
    h("figcaption", {}, h("strong", {}, title), h("span", { class: "muted" }, ` max ${format(top)}`)),
    plot,
    h("div", { class: "legend" }, series.map((s) => h("span", { class: `key ${s.cls}` },
      `${s.label}: ${last ? format(last[s.key]) : "–"}`))),
    points.length ? null : h("p", { class: "muted empty" }, "No samples yet"));
}

const rate = (v) => `${fmtBytes(v)}/s`;
const pct = (v) => `${v.toFixed(1)} %`;

/** The four charts of a history answer. */
export function historyCharts(history) {
  const p = history.points;
  return h("div", { class: "charts", "data-testid": "charts" },
    lineChart("CPU", p, [{ key: "cpu_pct", label: "busy", cls: "s1" }], pct, 100),
    lineChart("Memory", p, [{ key: "mem_bytes", label: "used", cls: "s1" }], fmtBytes, history.mem_total_bytes || undefined),
    lineChart("Disk", p, [{ key: "disk_read_bps", label: "read", cls: "s1" }, { key: "disk_write_bps", label: "write", cls: "s2" }], rate),
    lineChart("Network", p, [{ key: "net_rx_bps", label: "in", cls: "s1" }, { key: "net_tx_bps", label: "out", cls: "s2" }], rate));
}
