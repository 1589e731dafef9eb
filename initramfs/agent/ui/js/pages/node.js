// A node's page: its row of the node table, its VMs, its graphs (this
// node's; another node's are on its own agent), and maintenance: Drain
// marks the node drained (PUT /cluster/nodes/{node}/drain: it takes no new
// VMs), then live-migrates each of its running VMs, one after the other, to
// the other online node with the most free memory (POST
// /vms/{name}/migrate, as `vireo node drain`); Undrain (DELETE …/drain)
// lets it take VMs again.

import { ApiError, del, get, post, put, vmPath, waitTask } from "../api.js";
import { act, dangerButton, statusLine } from "../actions.js";
import { historyCharts } from "../chart.js";
import { badge, fill, h, link } from "../dom.js";
import { drainedTag, nodeBadge, nodesTable, nodeTable, vmsOf } from "../nodes.js";

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
    drawButtons(node);
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

  const nodePath = `/cluster/nodes/${encodeURIComponent(name)}/drain`;
  /** The nodes that may take this node's VMs: online, not drained. */
  const takers = () => table.filter((n) => n.name !== name && n.state === "online" && !n.drained);

  /** Marks the node drained, then moves every running VM off it, each to
   *  the other online node with the most free memory, counting what this
   *  drain already sent there (as `vireo node drain` does). A VM on
   *  another node is moved by its owner: its task is followed there. */
  async function drain(progress) {
    await put(nodePath);
    const { vms } = await draw();
    const running = vms.filter((v) => v.running);
    const free = new Map(takers().filter((n) => n.stats)
      .map((n) => [n.name, n.stats.memory_total - n.stats.memory_used]));
    for (const [i, vm] of running.entries()) {
      const target = [...free.entries()].sort((a, b) => b[1] - a[1]).map(([n]) => n)[0];
      if (!target) throw new Error(`no other online node to take ${vm.name}`);
      const step = `${vm.name} to ${target} (${i + 1} of ${running.length})`;
      progress(step);
      const task = await post(`${vmPath(vm.name)}/migrate`, { node: target });
      await waitTask(task, (t) => progress(`${step}${t.total ? ` ${Math.round((100 * t.done) / t.total)} %` : ""}`));
      free.set(target, free.get(target) - (vm.memory_mib || 0) * 1048576);
    }
    return true;
  }

  // Redrawn only when what they offer changes (never under the pointer).
  let shown = null;
  function drawButtons(node) {
    if (node.tenantView) return;
    const canDrain = takers().length > 0;
    const key = `${node.state} ${node.drained} ${canDrain}`;
    if (key === shown) return;
    shown = key;
    fill(head, h("h1", {}, name), nodeBadge(node.state), drainedTag(node));
    fill(buttons,
      canDrain ? dangerButton("Drain", () => act(line, `Drain ${name}`, drain).then(draw))
        : h("button", { disabled: true, title: "no other online node to take its VMs" }, "Drain"),
      node.drained ? h("button", { onclick: () => act(line, `Undrain ${name}`, () => del(nodePath)).then(draw) }, "Undrain") : null);
  }

  const head = h("div", { class: "page-head" });
  const { node } = await draw();
  if (node.tenantView) fill(head, h("h1", {}, name), nodeBadge(node.state));
  await drawCharts(node).catch(() => {});
  fill(main, head, buttons, line, summary, vmList, charts);
  const timer = setInterval(() => draw().then(({ node: n }) => drawCharts(n)).catch(() => {}), 5000);
  return () => clearInterval(timer);
}
