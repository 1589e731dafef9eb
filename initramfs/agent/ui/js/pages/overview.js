// The overview: the nodes (this node until the cluster's node table
// lands), their load and VM counts, and the node's graphs.

import { get } from "../api.js";
import { historyCharts } from "../chart.js";
import { fill, fmtBytes, fmtDuration, h, link } from "../dom.js";

export async function render(main) {
  const nodes = h("section", { class: "card" });
  const charts = h("section", { class: "card" });

  async function draw() {
    const [node, vms] = await Promise.all([get("/node"), get("/vms")]);
    const running = vms.filter((v) => v.state === "running").length;
    // A tenant may not read the node's history (403): its graphs are per VM.
    const history = await get("/node/history").catch((e) => {
      if (e.status === 403) return null;
      throw e;
    });
    const last = history && history.points.at(-1);
    fill(nodes, h("h2", {}, "Nodes"), h("div", { class: "scroll" }, h("table", { class: "list", "data-testid": "nodes" },
      h("thead", {}, h("tr", {}, ["Node", "State", "Uptime", "Load", "CPU", "Memory", "KVM", "VMs"].map((c) => h("th", {}, c)))),
      h("tbody", {}, h("tr", {},
        h("td", {}, node.name, h("div", { class: "muted" }, `${node.arch} · ${node.kernel}`)),
        h("td", {}, h("span", { class: "badge state-running" }, "online")),
        h("td", {}, fmtDuration(node.uptime_s)),
        h("td", { class: "num" }, `${node.load["1m"].toFixed(2)} ${node.load["5m"].toFixed(2)} ${node.load["15m"].toFixed(2)}`),
        h("td", { class: "num" }, `${node.cpus} CPUs${last ? ` · ${last.cpu_pct.toFixed(0)} %` : ""}`),
        h("td", { class: "num" }, `${last ? `${fmtBytes(last.mem_bytes)} of ` : ""}${fmtBytes(node.memory_bytes)}`),
        h("td", {}, node.kvm.available ? node.kvm.kind : "none"),
        h("td", { class: "num" }, link("/ui/vms", `${running} running / ${vms.length}`)))))));
    fill(charts, history ? [h("h2", {}, `${node.name}: last hour`), historyCharts(history)]
      : h("p", { class: "muted" }, "Each of your VMs has its graphs on its page."));
  }

  await draw();
  fill(main, h("div", { class: "page-head" }, h("h1", {}, "Overview")), nodes, charts);
  const timer = setInterval(() => draw().catch(() => {}), 5000);
  return () => clearInterval(timer);
}
