// The node table both the overview and a node's page read: GET
// /cluster/nodes (a node outside a cluster answers itself alone). A tenant
// may not read it (403): it sees this node's public facts and its own VMs.

import { get } from "./api.js";
import { fmtBytes, fmtDuration, h, link } from "./dom.js";

/** [{name, state, here, drained, stats}], as /cluster/nodes has them. */
export async function nodeTable() {
  try {
    const [nodes, me] = await Promise.all([get("/cluster/nodes"), get("/node")]);
    return nodes.map((n) => ({ ...n, here: n.name === me.name }));
  } catch (e) {
    if (e.status !== 403) throw e;
  }
  const [me, vms] = await Promise.all([get("/node"), get("/vms")]);
  return [{
    name: me.name, state: "online", here: true, tenantView: true,
    stats: {
      uptime_s: me.uptime_s, load_1m: me.load["1m"], cpus: me.cpus, cpu_percent: null,
      memory_total: me.memory_bytes, memory_used: null, disk_total: null, disk_used: null,
      vms: vms.length, vms_running: vms.filter((v) => v.pid).length,
    },
  }];
}

/** The VMs of a node: its share of /cluster/vms, or this node's /vms. */
export async function vmsOf(node) {
  if (node.here) {
    const vms = await get("/vms");
    return vms.map((v) => ({ name: v.name, state: v.state, running: Boolean(v.pid), memory_mib: v.memory_mib }));
  }
  const all = await get("/cluster/vms");
  return all.filter((v) => v.node === node.name).map((v) => ({ ...v, running: v.state === "running" }));
}

const used = (u, total) => (u === null || u === undefined ? fmtBytes(total) : `${fmtBytes(u)} of ${fmtBytes(total)}`);

/** The table: state, uptime, load, CPU, memory, disk, VM count. */
export function nodesTable(nodes) {
  return h("div", { class: "scroll" }, h("table", { class: "list", "data-testid": "nodes" },
    h("thead", {}, h("tr", {}, ["Node", "State", "Uptime", "Load", "CPU", "Memory", "Disk", "VMs"].map((c) => h("th", {}, c)))),
    h("tbody", {}, nodes.map((n) => {
      const st = n.stats;
      const row = (...cells) => h("tr", { "data-node": n.name }, h("td", {}, link(`/ui/nodes/${encodeURIComponent(n.name)}`, n.name),
        n.here ? h("span", { class: "tag" }, "this node") : null), h("td", {}, nodeBadge(n.state), drainedTag(n)), ...cells);
      if (!st) return row(h("td", { colspan: 6, class: "muted" }, "no statistics published yet"));
      return row(
        h("td", {}, fmtDuration(st.uptime_s)),
        h("td", { class: "num" }, st.load_1m.toFixed(2)),
        h("td", { class: "num" }, `${st.cpus} CPUs${st.cpu_percent === null ? "" : ` · ${st.cpu_percent.toFixed(0)} %`}`),
        h("td", { class: "num" }, used(st.memory_used, st.memory_total)),
        h("td", { class: "num" }, st.disk_total === null ? "–" : used(st.disk_used, st.disk_total)),
        h("td", { class: "num" }, `${st.vms_running} running / ${st.vms}`));
    }))));
}

/** In maintenance (PUT /cluster/nodes/{node}/drain): it takes no new VMs. */
export function drainedTag(node) {
  return node.drained ? h("span", { class: "badge state-paused", "data-testid": "drained", title: "takes no new VMs" }, "drained") : null;
}

/** A node's state as a badge: online green, offline grey, fenced red. */
export function nodeBadge(state) {
  const cls = state === "online" ? "state-running" : state === "offline" ? "state-stopped" : "state-crashed";
  return h("span", { class: `badge ${cls}` }, state);
}
