// A VM's page: its state and definition, the lifecycle buttons, migrate
// (in a cluster), snapshots, backups, clone and template, edit when stopped
// (vCPUs, memory, disks, NICs), its disks' downloads, its serial console and
// its graphs.

import { get, onNode, vmPath, volPath, waitTask } from "../api.js";
import { act, dangerButton, statusLine } from "../actions.js";
import { historyCharts } from "../chart.js";
import { badge, fill, fmtBytes, fmtTime, h } from "../dom.js";
import { terminal } from "../terminal.js";
import { downloadVolume } from "./storage.js";
import { isTemplate } from "./vms.js";

// Every call of the page goes to the node that runs the VM (`at`): its
// disks, snapshots and backups are that node's, and so are the tasks its
// actions start. Set on each refresh (`ownVm`), as a migration moves the VM.
let at = onNode(null);

export async function render(main, [name], { navigate }) {
  let vm = await ownVm(name);
  let targets = [];
  const line = statusLine();
  const head = h("div", { class: "page-head" });
  const buttons = h("div", { class: "actions", "data-testid": "vm-actions" });
  const edit = h("div");
  const details = h("dl", { class: "details" });
  const disks = h("section", { class: "card" });
  const backups = h("section", { class: "card" });
  const charts = h("section", { class: "card" });
  const term = terminal(name);

  // Runs an action, then shows the VM (and its disks and backups) afresh.
  const run = async (label, work) => {
    const result = await act(line, label, work);
    await refresh(true);
    return result;
  };

  // The buttons are redrawn only when what they offer changes, so a button
  // being clicked (or asking "Really …?") is never swapped under the pointer.
  let shown = "";
  async function refresh(all = false) {
    vm = await ownVm(name);
    targets = vm.pid ? await migrationTargets(name) : [];
    const key = `${vm.state} ${isTemplate(vm)} ${targets.join()}`;
    if (key !== shown || all) {
      shown = key;
      fill(head, h("h1", {}, vm.name), badge(vm.state), isTemplate(vm) ? h("span", { class: "tag" }, "template") : null);
      fill(buttons, actionButtons(vm, run, navigate, targets));
      const stopped = vm.state === "stopped" || vm.state === "crashed";
      fill(edit, stopped && !isTemplate(vm) ? editForm(vm, run) : null);
    }
    fill(details, describe(vm));
    if (all) await Promise.all([drawDisks(disks, vm, run), drawBackups(backups, vm, run)]);
  }

  async function drawCharts() {
    const history = await at.get(`${vmPath(name)}/history`);
    fill(charts, h("h2", {}, "Last hour"), historyCharts(history));
  }

  await refresh(true);
  await drawCharts().catch(() => {});
  fill(main, head, buttons, line,
    h("div", { class: "columns" },
      h("section", { class: "card" }, h("h2", {}, "Definition"), details),
      term.el),
    edit, disks, backups, charts);

  const timers = [
    setInterval(() => refresh().catch(() => {}), 2000),
    setInterval(() => drawCharts().catch(() => {}), 5000),
  ];
  return () => { timers.forEach(clearInterval); term.close(); };
}

function actionButtons(vm, run, navigate, targets) {
  const path = vmPath(vm.name);
  const running = vm.state !== "stopped" && vm.state !== "crashed";
  const out = [];
  if (isTemplate(vm)) {
    out.push(cloneForm(vm, run, navigate, true));
  } else if (!running) {
    out.push(h("button", { onclick: () => run("Start", () => at.post(`${path}/start`)) }, "Start"));
  } else {
    out.push(h("button", { onclick: () => run("Shutdown", () => at.post(`${path}/shutdown`)) }, "Shut down"));
    out.push(h("button", { onclick: () => run("Reboot", () => at.post(`${path}/reboot`)) }, "Reboot"));
    out.push(dangerButton("Destroy", () => run("Destroy", () => at.post(`${path}/destroy`))));
    if (vm.pid && targets.length) out.push(migrateForm(vm, run, targets));
  }
  out.push(h("button", { onclick: () => backup(vm, run) }, "Back up"));
  if (!running && !isTemplate(vm)) {
    out.push(h("button", { onclick: () => run("Make template", () => at.post("/templates", { vm: vm.name })) }, "Make template"));
    out.push(cloneForm(vm, run, navigate, false));
    out.push(dangerButton("Delete", () => run("Delete", () => at.del(path)).then((ok) => ok && navigate("/ui/vms"))));
  }
  return out;
}

async function backup(vm, run) {
  const pools = (await at.get("/pools")).filter((p) => p.available);
  if (!pools.length) throw new Error("no pool is available for backups");
  await run(`Back up to ${pools[0].name}`, () => at.post("/backups", { vm: vm.name, storage: pools[0].name }));
}

/** Clone: a template through POST /templates/{vm}/clone; a stopped VM by full copies of its disks. */
function cloneForm(vm, run, navigate, fromTemplate) {
  const name = h("input", { placeholder: "new VM name", "aria-label": "clone name", required: true, size: 14 });
  return h("form", { class: "inline", onsubmit: async (event) => {
    event.preventDefault();
    const target = name.value;
    const ok = await run(`Clone to ${target}`, async (progress) => {
      if (fromTemplate) return at.post(`/templates/${encodeURIComponent(vm.name)}/clone`, { name: target });
      return cloneByCopy(vm, target, progress);
    });
    if (ok) navigate(`/ui/vms/${encodeURIComponent(target)}`);
  } }, name, h("button", { type: "submit" }, "Clone"));
}

/** The VM as its node answers it (this node forwards the request to the
 *  VM's owner, wherever a migration took it); the page's calls then go to
 *  that node (`at`). */
async function ownVm(name) {
  const vm = await get(vmPath(name));
  at = onNode(vm.answeredBy || null);
  return vm;
}

/** The nodes a VM could live-migrate to: online, not drained, not the
 *  node it runs on (none outside a cluster; a tenant may not read the
 *  node table). */
async function migrationTargets(name) {
  const [nodes, vms, me] = await Promise.all([get("/cluster/nodes").catch(() => []),
    get("/cluster/vms").catch(() => []), get("/node")]);
  const on = (vms.find((v) => v.name === name) || {}).node || me.name;
  return nodes.filter((n) => n.state === "online" && !n.drained && n.name !== on).map((n) => n.name);
}

/** Live migration to another node (POST /vms/{name}/migrate, a task that
 *  runs on the VM's node), its transfer rate capped if asked. */
function migrateForm(vm, run, targets) {
  const node = h("select", { "aria-label": "target node" }, targets.map((t) => h("option", { value: t }, t)));
  const disks = h("select", { "aria-label": "disks" }, h("option", { value: "shared" }, "shared disks"), h("option", { value: "copy" }, "copy disks"));
  const cap = h("input", { type: "number", min: 1, placeholder: "no cap", "aria-label": "bandwidth Mbit/s", size: 7 });
  return h("form", { class: "inline", "data-testid": "migrate-vm", onsubmit: (event) => {
    event.preventDefault();
    const args = { node: node.value, disks: disks.value };
    if (cap.value) args.bandwidth_mbps = Number(cap.value);
    run(`Migrate to ${node.value}`, () => at.post(`${vmPath(vm.name)}/migrate`, args));
  } }, node, disks, cap, "Mbit/s", h("button", { type: "submit" }, "Migrate"));
}

/** A stopped VM's vCPUs, memory, disks and NICs (PUT /vms/{name}, the rest kept). */
function editForm(vm, run) {
  const vcpus = h("input", { type: "number", min: 1, max: 254, value: vm.vcpus, "aria-label": "vCPUs", size: 3 });
  const memory = h("input", { type: "number", min: 16, value: vm.memory_mib, "aria-label": "memory MiB", size: 6 });
  const disks = h("div", { class: "edit-list", "data-testid": "edit-disks" });
  const nics = h("div", { class: "edit-list", "data-testid": "edit-nics" });
  const row = (list, fields, data) => {
    const el = h("div", { class: "row-actions" }, fields,
      h("button", { type: "button", class: "danger", onclick: () => el.remove() }, "Remove"));
    el.data = data;
    list.append(el);
  };
  const addDisk = (d = { volume: "", readonly: false }) => {
    const volume = h("input", { value: d.volume, placeholder: "pool/volume", "aria-label": "disk volume", required: true, size: 22 });
    const readonly = h("input", { type: "checkbox", checked: d.readonly, "aria-label": "read-only" });
    row(disks, [volume, h("label", { class: "check" }, readonly, "read-only")], () => ({ volume: volume.value, readonly: readonly.checked }));
  };
  // A NIC on a node network is edited by its network; any other kind is kept as it is.
  const addNic = (n = { network: "" }) => {
    if (!("network" in n) || n.network === undefined) {
      row(nics, [h("span", {}, `${n.tap ? `tap ${n.tap}` : `macvtap ${n.macvtap}`} ${n.mac || ""}`)], () => n);
      return;
    }
    const network = h("input", { value: n.network, placeholder: "network", "aria-label": "NIC network", required: true, size: 12 });
    row(nics, [network, h("span", { class: "muted" }, n.mac || "new MAC")], () => ({ ...n, network: network.value }));
  };
  vm.disks.forEach((d) => addDisk(d));
  (vm.nics || []).forEach((n) => addNic(n));
  return h("form", { class: "card edit", "data-testid": "edit-vm", onsubmit: (event) => {
    event.preventDefault();
    const spec = {
      ...specOf(vm), vcpus: Number(vcpus.value), memory_mib: Number(memory.value),
      disks: [...disks.children].map((el) => el.data()), nics: [...nics.children].map((el) => el.data()),
    };
    run("Edit", () => at.put(vmPath(vm.name), spec));
  } }, h("h2", {}, "Edit (stopped)"),
  h("div", { class: "row-actions" }, vcpus, "vCPUs", memory, "MiB"),
  h("h3", {}, "Disks"), disks, h("button", { type: "button", onclick: () => addDisk() }, "Add disk"),
  h("h3", {}, "NICs"), nics, h("button", { type: "button", onclick: () => addNic() }, "Add NIC"),
  h("div", { class: "actions" }, h("button", { type: "submit", "data-testid": "save-vm" }, "Save")));
}

/** The definition part of a VM answer (what POST and PUT /vms take). */
function specOf(vm) {
  const spec = { ...vm };
  for (const k of ["uuid", "state", "pid", "started_at", "restarts", "last_exit"]) delete spec[k];
  return spec;
}

async function cloneByCopy(vm, target, progress) {
  const disks = [];
  for (const [i, d] of vm.disks.entries()) {
    const [pool, volume] = d.volume.split("/");
    const copy = `${target}-${volume}`;
    progress(`copying disk ${i + 1} of ${vm.disks.length}`);
    const answer = await at.post(`${volPath(d.volume)}/clone`, { name: copy });
    if (answer && answer.state) await waitTask(answer);
    disks.push({ ...d, volume: `${pool}/${copy}` });
  }
  const spec = { ...specOf(vm), name: target, disks };
  spec.nics = (spec.nics || []).map(({ mac: _mac, ...nic }) => nic);
  return at.post("/vms", spec);
}

function describe(vm) {
  const boot = vm.boot.kind === "kernel" ? `kernel ${vm.boot.kernel}` : `disk ${vm.boot.disk ?? 0}`;
  const rows = [
    ["vCPUs", vm.vcpus], ["Memory", fmtBytes(vm.memory_mib * 1048576)], ["Boot", boot],
    ["Disks", vm.disks.map((d) => d.volume + (d.readonly ? " (read-only)" : "")).join(", ") || "none"],
    ["NICs", (vm.nics || []).map((n) => `${n.tap || n.macvtap} ${n.mac || ""}`).join(", ") || "none"],
    ["Tags", Object.entries(vm.tags || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "none"],
    ["Started", fmtTime(vm.started_at)], ["Process", vm.pid ?? "–"], ["Restarts", vm.restarts],
    ["Last exit", vm.last_exit ? `${vm.last_exit.outcome} at ${fmtTime(vm.last_exit.at)}` : "–"],
    ["UUID", vm.uuid],
  ];
  return rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]);
}

/** The VM's disks with their snapshots: take one, revert to the newest. */
async function drawDisks(section, vm, run) {
  const volumes = await Promise.all(vm.disks.map((d) => at.get(volPath(d.volume)).catch((e) => ({ volume: d.volume, error: e.message }))));
  const snapName = h("input", { "aria-label": "snapshot name", value: `snap-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, "")}`, size: 18 });
  const take = () => run(`Snapshot ${snapName.value}`, async () => {
    for (const d of vm.disks) await at.post(`${volPath(d.volume)}/snapshots`, { name: snapName.value });
  });
  const revert = () => run("Revert", async () => {
    for (const v of volumes) {
      const newest = (v.snapshots || []).at(-1);
      if (newest) await at.post(`${volPath(v.volume)}/snapshots/${encodeURIComponent(newest.name)}/revert`);
    }
  });
  const anySnapshot = volumes.some((v) => (v.snapshots || []).length);
  fill(section, h("h2", {}, "Disks and snapshots"),
    h("table", { class: "list", "data-testid": "disks" },
      h("thead", {}, h("tr", {}, ["Volume", "Format", "Size", "On disk", "Snapshots", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, volumes.map((v) => h("tr", {},
        h("td", {}, v.volume), h("td", {}, v.format || "–"), h("td", { class: "num" }, fmtBytes(v.virtual_size)),
        h("td", { class: "num" }, fmtBytes(v.real_size)),
        h("td", { "data-testid": "snapshots" }, v.error || (v.snapshots || []).map((s) => s.name).join(", ") || "none"),
        h("td", {}, v.error ? null : h("button", { onclick: () => run(`Download ${v.volume}`, () => downloadVolume(v.volume, at.node)) }, "Download")))))),
    vm.disks.length ? h("div", { class: "actions" }, snapName,
      h("button", { onclick: take }, "Take snapshot"),
      anySnapshot ? dangerButton("Revert to newest snapshot", revert) : null) : null);
}

/** This VM's backups in every pool, each restorable into the VM. */
async function drawBackups(section, vm, run) {
  const pools = (await at.get("/pools").catch(() => [])).filter((p) => p.available);
  const lists = await Promise.all(pools.map((p) => at.get(`/pools/${encodeURIComponent(p.name)}/backups?vm=${encodeURIComponent(vm.name)}`).catch(() => [])));
  const entries = lists.flat().filter((b) => b.manifest).reverse();
  fill(section, h("h2", {}, "Backups"), entries.length ? h("table", { class: "list", "data-testid": "vm-backups" },
    h("thead", {}, h("tr", {}, ["Backup", "Pool", "Taken", "Size", ""].map((c) => h("th", {}, c)))),
    h("tbody", {}, entries.map((b) => h("tr", {},
      h("td", {}, b.id), h("td", {}, b.pool), h("td", {}, fmtTime(b.manifest.created)),
      h("td", { class: "num" }, fmtBytes(b.manifest.disks.reduce((n, d) => n + (d.stored_bytes || 0), 0))),
      h("td", {}, dangerButton("Restore", () => run(`Restore ${b.id}`,
        () => at.post(`/pools/${encodeURIComponent(b.pool)}/backups/${encodeURIComponent(b.id)}/restore`, {})))))))) :
    h("p", { class: "muted" }, "No backups of this VM yet."));
}
