// A node's page: its row of the node table, its VMs, its graphs (this
// node's; another node's are on its own agent) and the drain button, which
// live-migrates each of its running VMs to the least loaded other online
// node through POST /vms/{name}/migrate, one after the other.

import { ApiError, get, post, vmPath, waitTask } from "../api.js";
import { act, dangerButton, statusLine } from "../actions.js";
import { historyCharts } from "../chart.js";
import { badge, fill, h, link } from "../dom.js";
import { nodeBadge, nodesTable, nodeTable, vmsOf } from "../nodes.js";

export async function render(main, [name]) {
  const line = statusLine();
  const summary = h("section", { class: "card" });
  const vmList = h("section", { class: "card" });
  const charts = h("section", { class: "card" });
  const buttons = h("div", { class: "actions", "data-testid": "node-actions" });
  let table = [];

  async function draw() {
    table = await nodeTable();
    const node = table.find((n) => n.name === name);
    if (!node) throw new ApiError(404, `no node named '${name}'`);
    const vms = await vmsOf(node);
    fill(summary, nodesTable([node]));
    fill(vmList, h("h2", {}, `VMs on ${name}`), vms.length ? h("div", { class: "scroll" }, h("table", { class: "list", "data-testid": "node-vms" },
      h("thead", {}, h("tr", {}, ["VM", "State"].map((c) => h("th", {}, c)))),
      h("tbody", {}, vms.map((v) => h("tr", { "data-vm": v.name },
        h("td", {}, link(`/ui/vms/${encodeURIComponent(v.name)}`, v.name)), h("td", {}, badge(v.state))))))) :
      h("p", { class: "muted" }, "No VMs on this node."));
    return { node, vms };
  }

  async function drawCharts(node) {
    if (!node.here) {
      fill(charts, h("p", { class: "muted" }, `${name}'s graphs are on its own agent${node.api ? ` (http://${node.api}/ui/nodes/${name})` : ""}.`));
      return;
    }
    const history = await get("/node/history").catch((e) => (e.status === 403 ? null : Promise.reject(e)));
    fill(charts, history ? [h("h2", {}, "Last hour"), historyCharts(history)] : h("p", { class: "muted" }, "Each of your VMs has its graphs on its page."));
  }

  /** Moves every running VM off the node, each to the least loaded other online node. */
  async function drain(progress) {
    const { vms } = await draw();
    const running = vms.filter((v) => v.running);
    for (const [i, vm] of running.entries()) {
      const target = pickTarget(table, name);
      if (!target) throw new Error("no other online node to take the VMs");
      const step = `${vm.name} to ${target} (${i + 1} of ${running.length})`;
      progress(step);
      const task = await post(`${vmPath(vm.name)}/migrate`, { node: target });
      await waitTask(task, (t) => progress(`${step}${t.total ? ` ${Math.round((100 * t.done) / t.total)} %` : ""}`));
    }
    return true;
  }

  const { node } = await draw();
  const canDrain = table.filter((n) => n.state === "online").length > 1 && !node.tenantView;
  fill(buttons, canDrain ? dangerButton("Drain", () => act(line, `Drain ${name}`, drain).then(draw))
    : h("button", { disabled: true, title: "no other online node to take its VMs" }, "Drain"));
  await drawCharts(node).catch(() => {});
  fill(main, h("div", { class: "page-head" }, h("h1", {}, name), nodeBadge(node.state)),
    buttons, line, summary, vmList, charts);
  const timer = setInterval(() => draw().then(({ node: n }) => drawCharts(n)).catch(() => {}), 5000);
  return () => clearInterval(timer);
}

/** The online node other than `from` with the lowest CPU share, then fewest VMs. */
export function pickTarget(table, from) {
  const others = table.filter((n) => n.name !== from && n.state === "online" && n.stats);
  others.sort((a, b) => (a.stats.cpu_percent - b.stats.cpu_percent) || (a.stats.vms_running - b.stats.vms_running));
  return others.length ? others[0].name : null;
}
