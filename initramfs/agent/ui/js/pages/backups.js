// Every backup in every pool: restore (into its VM or a new one), verify, delete.

import { del, get, post } from "../api.js";
import { act, dangerButton, statusLine } from "../actions.js";
import { fill, fmtBytes, fmtTime, h, link } from "../dom.js";

export async function render(main) {
  const line = statusLine();
  const body = h("tbody");

  async function draw() {
    const pools = (await get("/pools")).filter((p) => p.available);
    const lists = await Promise.all(pools.map((p) => get(`/pools/${encodeURIComponent(p.name)}/backups`).catch(() => [])));
    const entries = lists.flat().sort((a, b) => (b.manifest?.created || 0) - (a.manifest?.created || 0));
    body.replaceChildren(...entries.map((b) => {
      const path = `/pools/${encodeURIComponent(b.pool)}/backups/${encodeURIComponent(b.id)}`;
      const run = (label, work) => act(line, label, work).then(draw);
      const m = b.manifest;
      const target = h("input", { "aria-label": "restore as", placeholder: m ? m.vm : "", size: 12 });
      return h("tr", {},
        h("td", {}, b.id), h("td", {}, b.pool),
        h("td", {}, m ? link(`/ui/vms/${encodeURIComponent(m.vm)}`, m.vm) : h("span", { class: "error-text" }, b.error)),
        h("td", {}, m ? fmtTime(m.created) : "–"),
        h("td", { class: "num" }, m ? fmtBytes(m.disks.reduce((n, d) => n + (d.stored_bytes || 0), 0)) : "–"),
        h("td", {}, m ? (m.live ? `live, paused ${m.pause_ms?.toFixed(0) ?? "?"} ms` : "stopped") : ""),
        h("td", { class: "row-actions" }, m ? [
          target,
          h("button", { onclick: () => run(`Restore ${b.id}`, () => post(`${path}/restore`, target.value ? { vm: target.value } : {})) }, "Restore"),
          h("button", { onclick: () => run(`Verify ${b.id}`, () => post(`${path}/verify`)) }, "Verify"),
        ] : null, dangerButton("Delete", () => run(`Delete ${b.id}`, () => del(path)))));
    }));
    if (!entries.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No backups yet: back a VM up from its page.")));
  }

  await draw();
  fill(main, h("div", { class: "page-head" }, h("h1", {}, "Backups")), line,
    h("div", { class: "scroll" }, h("table", { class: "list", "data-testid": "backups" },
      h("thead", {}, h("tr", {}, ["Backup", "Pool", "VM", "Taken", "Size", "Kind", ""].map((c) => h("th", {}, c)))), body)));
}
