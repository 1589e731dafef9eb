// The VM list: filter, sort, state at a glance; a new VM from a template.
// In a cluster, every node's VMs (`GET /vms?all=true`: each node lists
// those the caller may see) with a Node column.

import { api, get } from "../api.js";
import { act, statusLine } from "../actions.js";
import { badge, fill, fmtBytes, h, link } from "../dom.js";

export const TEMPLATE_TAG = "vireo.template";
export const isTemplate = (vm) => (vm.tags || {})[TEMPLATE_TAG] === "true";

const COLUMNS = [
  ["name", "Name", (vm) => vm.name],
  ["state", "State", (vm) => vm.state],
  ["vcpus", "vCPUs", (vm) => vm.vcpus],
  ["memory_mib", "Memory", (vm) => vm.memory_mib],
  ["tenant", "Tenant", (vm) => (vm.tags || {}).tenant || ""],
];

const NODE_COLUMN = ["node", "Node", (vm) => vm.node || ""];
const everyNodesVms = () => get("/vms?all=true");

export async function render(main, _params, { navigate }) {
  let vms = await everyNodesVms();
  const columns = vms.some((vm) => vm.node) ? [...COLUMNS, NODE_COLUMN] : COLUMNS;
  let sortKey = "name", ascending = true;
  const filter = h("input", { type: "search", placeholder: "Filter by name, state, tenant, node", "aria-label": "filter", "data-testid": "vm-filter" });
  const count = h("span", { class: "muted" });
  const body = h("tbody");
  const head = h("tr", {}, columns.map(([key, label]) => h("th", { scope: "col", class: "sortable", "data-key": key, onclick: () => {
    ascending = sortKey === key ? !ascending : true;
    sortKey = key;
    draw();
  } }, label)));
  const table = h("table", { class: "list", "data-testid": "vm-table" }, h("thead", {}, head), body);

  function draw() {
    const words = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const shown = vms.filter((vm) => {
      const hay = `${vm.name} ${vm.state} ${(vm.tags || {}).tenant || ""} ${vm.node || ""} ${isTemplate(vm) ? "template" : ""}`.toLowerCase();
      return words.every((w) => hay.includes(w));
    });
    const value = columns.find(([k]) => k === sortKey)[2];
    shown.sort((a, b) => {
      const x = value(a), y = value(b);
      const order = typeof x === "number" ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
      return ascending ? order : -order;
    });
    for (const th of head.children) {
      th.setAttribute("aria-sort", th.dataset.key === sortKey ? (ascending ? "ascending" : "descending") : "none");
    }
    const rows = shown.map((vm) => h("tr", { "data-vm": vm.name },
      h("td", {}, link(`/ui/vms/${encodeURIComponent(vm.name)}`, vm.name), isTemplate(vm) ? h("span", { class: "tag" }, "template") : null),
      h("td", {}, badge(vm.state)),
      h("td", { class: "num" }, vm.vcpus),
      h("td", { class: "num" }, fmtBytes(vm.memory_mib * 1048576)),
      h("td", {}, (vm.tags || {}).tenant || ""),
      columns.length > COLUMNS.length ? h("td", {}, vm.node) : null));
    body.replaceChildren(...rows);
    fill(count, `${shown.length} of ${vms.length}`);
    table.dataset.renderedMs = performance.now().toFixed(1);
  }
  filter.addEventListener("input", draw);

  const templates = vms.filter(isTemplate);
  fill(main,
    h("div", { class: "page-head" }, h("h1", {}, "Virtual machines"), count),
    h("div", { class: "toolbar" }, filter),
    h("div", { class: "scroll" }, table),
    await createForm(templates, navigate));
  draw();

  const timer = setInterval(async () => {
    try { vms = await everyNodesVms(); draw(); } catch { /* the next poll tries again */ }
  }, 3000);
  return () => clearInterval(timer);
}

/** New VM from a template: linked clones of its disks (or full copies),
 *  made by the template's node. */
async function createForm(templates, navigate) {
  if (!templates.length) {
    return h("section", { class: "card" }, h("h2", {}, "New VM"),
      h("p", { class: "muted" }, "No templates yet: make one from a stopped VM on its page."));
  }
  const pools = await get("/pools").catch(() => []);
  const template = h("select", { name: "template" }, templates.map((t) => h("option", { value: t.name }, t.node ? `${t.name} (${t.node})` : t.name)));
  const nodeOf = (name) => (templates.find((t) => t.name === name) || {}).node;
  const name = h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_\\-][A-Za-z0-9._\\-]{0,63}" });
  const full = h("input", { type: "checkbox", name: "full" });
  const pool = h("select", { name: "storage" }, h("option", { value: "" }, "the template's pool"),
    pools.filter((p) => p.available).map((p) => h("option", { value: p.name }, p.name)));
  const line = statusLine();
  return h("form", { class: "card", "data-testid": "create-vm", onsubmit: async (event) => {
    event.preventDefault();
    const body = { name: name.value, full: full.checked };
    if (pool.value) body.storage = pool.value;
    const done = await act(line, `Create ${name.value}`,
      () => api("POST", `/templates/${encodeURIComponent(template.value)}/clone`, body, nodeOf(template.value)));
    if (done) navigate(`/ui/vms/${encodeURIComponent(body.name)}`);
  } },
  h("h2", {}, "New VM from a template"),
  h("div", { class: "fields" },
    h("label", {}, "Template", template),
    h("label", {}, "Name", name),
    h("label", {}, "Storage", pool),
    h("label", { class: "check" }, full, "Full copy (else linked clones)")),
  h("button", { type: "submit" }, "Create"), line);
}
