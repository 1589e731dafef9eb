// The overview: every node of the cluster (this one alone outside a
// cluster) with its state, uptime, load, CPU, memory, disk and VM count,
// and this node's graphs.

import { get } from "../api.js";
import { historyCharts } from "../chart.js";
import { fill, h } from "../dom.js";
import { nodesTable, nodeTable } from "../nodes.js";

export async function render(main) {
  const nodes = h("section", { class: "card" });
  const charts = h("section", { class: "card" });

  async function draw() {
    const table = await nodeTable();
    // A tenant may not read the node's history (403): its graphs are per VM.
    const history = await get("/node/history").catch((e) => {
      if (e.status === 403) return null;
      throw e;
    });
    fill(nodes, h("h2", {}, table.length > 1 ? `Nodes (${table.length})` : "Node"), nodesTable(table));
    const me = table.find((n) => n.here);
    fill(charts, history ? [h("h2", {}, `${me ? me.name : "This node"}: last hour`), historyCharts(history)]
      : h("p", { class: "muted" }, "Each of your VMs has its graphs on its page."));
  }

  await draw();
  fill(main, h("div", { class: "page-head" }, h("h1", {}, "Overview")), nodes, charts);
  const timer = setInterval(() => draw().catch(() => {}), 5000);
  return () => clearInterval(timer);
}
