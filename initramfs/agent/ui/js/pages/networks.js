// Networks: every network of the node with its state and guest ports;
// create and delete (operators); each network's DHCP leases and port
// forwards (add, delete). A tenant reads the networks and its own ports
// and forwards only (the agent filters them).

import { del, get, post, session } from "../api.js";
import { act, dangerButton, statusLine } from "../actions.js";
import { fill, fmtTime, h } from "../dom.js";

const KINDS = ["nat", "isolated", "private", "bridge", "macvtap", "overlay"];

export async function render(main) {
  const line = statusLine();
  const content = h("div");
  const operator = !session.user || session.user.role !== "tenant";
  const run = (label, work) => act(line, label, work).then(draw);
  const netPath = (name) => `/networks/${encodeURIComponent(name)}`;

  async function draw() {
    const nets = await get("/networks");
    const details = await Promise.all(nets.map(async (n) => ({
      leases: operator ? await get(`${netPath(n.spec.name)}/leases`).catch(() => []) : null,
      forwards: n.spec.kind === "nat" ? await get(`${netPath(n.spec.name)}/forwards`).catch(() => []) : null,
    })));
    fill(content, h("section", { class: "card" }, h("h2", {}, "Networks"), h("div", { class: "scroll" }, h("table", { class: "list", "data-testid": "networks" },
      h("thead", {}, h("tr", {}, ["Network", "Kind", "Subnet", "Gateway", "Bridge", "State", "Ports", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, nets.length ? nets.map((n) => h("tr", { "data-network": n.spec.name },
        h("td", {}, n.spec.name), h("td", {}, n.spec.kind + (n.spec.vlan ? ` · VLAN ${n.spec.vlan}` : "")),
        h("td", {}, n.spec.subnet || "–"), h("td", {}, n.gateway || "–"), h("td", {}, n.bridge || n.spec.uplink || "–"),
        h("td", {}, h("span", { class: `badge ${n.active ? "state-running" : "state-crashed"}` }, n.active ? "up" : "down")),
        h("td", {}, n.ports.map((p) => `${p.vm} (${p.mac})`).join(", ") || "none"),
        h("td", {}, operator ? dangerButton("Delete", () => run(`Delete ${n.spec.name}`, () => del(netPath(n.spec.name)))) : null)))
        : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No networks yet.")))))),
    operator ? createForm() : null,
    nets.map((n, i) => networkSection(n, details[i])));
  }

  function createForm() {
    const name = h("input", { "aria-label": "network name", placeholder: "name", required: true, size: 12, maxlength: 12 });
    const kind = h("select", { "aria-label": "kind" }, KINDS.map((k) => h("option", {}, k)));
    const subnet = h("input", { "aria-label": "subnet", placeholder: "10.0.0.0/24", size: 16 });
    const uplink = h("input", { "aria-label": "uplink", placeholder: "uplink NIC (optional)", size: 14 });
    return h("form", { class: "card", "data-testid": "create-network", onsubmit: (event) => {
      event.preventDefault();
      const spec = { name: name.value, kind: kind.value };
      if (subnet.value) spec.subnet = subnet.value;
      if (uplink.value) spec.uplink = uplink.value;
      run(`Create ${name.value}`, () => post("/networks", spec));
    } }, h("h2", {}, "New network"), h("div", { class: "actions" }, name, kind, subnet, uplink, h("button", { type: "submit" }, "Create")));
  }

  function networkSection(n, { leases, forwards }) {
    const parts = [];
    if (leases) {
      parts.push(h("h3", {}, "DHCP leases"), leases.length ? h("table", { class: "list", "data-testid": `leases-${n.spec.name}` },
        h("thead", {}, h("tr", {}, ["MAC", "Address", "Host name", "Expires"].map((c) => h("th", {}, c)))),
        h("tbody", {}, leases.map((l) => h("tr", {}, h("td", {}, l.mac), h("td", {}, l.ip), h("td", {}, l.hostname || "–"), h("td", {}, fmtTime(l.expires))))))
        : h("p", { class: "muted" }, "No leases."));
    }
    if (forwards) parts.push(h("h3", {}, "Port forwards"), forwardTable(n, forwards), operator ? forwardForm(n) : null);
    return parts.length ? h("section", { class: "card", "data-testid": `network-${n.spec.name}` }, h("h2", {}, n.spec.name), parts) : null;
  }

  function forwardTable(n, forwards) {
    if (!forwards.length) return h("p", { class: "muted" }, "No port forwards.");
    return h("div", { class: "scroll" }, h("table", { class: "list", "data-testid": `forwards-${n.spec.name}` },
      h("thead", {}, h("tr", {}, ["Node port", "To", "Protocol", "Guest address", "Tenant", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, forwards.map((f) => h("tr", { "data-forward": f.node_port },
        h("td", { class: "num" }, f.node_port), h("td", {}, f.to), h("td", {}, f.protocol), h("td", {}, f.ip || "–"), h("td", {}, f.tenant),
        h("td", {}, operator ? dangerButton("Delete", () => run(`Delete forward ${f.node_port}`,
          () => del(`${netPath(n.spec.name)}/forwards/${f.node_port}`))) : null))))));
  }

  function forwardForm(n) {
    const port = h("input", { type: "number", min: 1, max: 65535, "aria-label": "node port", placeholder: "node port", required: true });
    const to = h("input", { "aria-label": "forward to", placeholder: "VM:PORT or IP:PORT", required: true, size: 18 });
    const protocol = h("select", { "aria-label": "protocol" }, h("option", {}, "tcp"), h("option", {}, "udp"));
    const tenant = h("input", { "aria-label": "forward tenant", placeholder: "tenant", required: true, size: 10 });
    return h("form", { class: "actions", "data-testid": `add-forward-${n.spec.name}`, onsubmit: (event) => {
      event.preventDefault();
      run(`Forward ${port.value}`, () => post(`${netPath(n.spec.name)}/forwards`,
        { node_port: Number(port.value), to: to.value, protocol: protocol.value, tenant: tenant.value }));
    } }, port, to, protocol, tenant, h("button", { type: "submit" }, "Add forward"));
  }

  await draw();
  fill(main, h("div", { class: "page-head" }, h("h1", {}, "Networks")), line, content);
}
