// Storage: the pools with their space, each pool's volumes; create,
// upload (with its progress), download and delete volumes, mark templates.
// In a cluster, any node's storage: a node's own pools are on its agent,
// which this one forwards to.

import { get, NODE_HEADER, onNode, post, session, volPath } from "../api.js";
import { act, dangerButton, statusLine } from "../actions.js";
import { fill, fmtBytes, h } from "../dom.js";

export async function render(main) {
  const line = statusLine();
  const content = h("div");
  const picker = await nodePicker(() => {
    uploads.clear();
    act(line, `Storage of ${picker.value}`, draw);
  });
  // The node whose storage is shown (null: this node's).
  const at = () => onNode(picker ? picker.value : null);

  async function draw() {
    const node = at();
    const pools = await node.get("/pools");
    const sections = await Promise.all(pools.map(async (p) => {
      const volumes = p.available ? await node.get(`/pools/${encodeURIComponent(p.name)}/volumes`).catch(() => []) : [];
      return poolSection(p, volumes, node);
    }));
    fill(content, h("section", { class: "card" }, h("h2", {}, "Pools"), h("div", { class: "scroll" }, h("table", { class: "list", "data-testid": "pools" },
      h("thead", {}, h("tr", {}, ["Pool", "Kind", "Where", "State", "Free", "Total"].map((c) => h("th", {}, c)))),
      h("tbody", {}, pools.map((p) => h("tr", {},
        h("td", {}, p.name), h("td", {}, p.kind), h("td", {}, p.path || `${p.server}:${p.export}`),
        h("td", {}, p.available ? "available" : `unavailable: ${p.error}`),
        h("td", { class: "num" }, fmtBytes(p.free_bytes)), h("td", { class: "num" }, fmtBytes(p.total_bytes)))))))), sections);
  }

  // Each pool's upload form is kept across redraws: its progress bar stays.
  const uploads = new Map();
  const upload = (pool, run) => {
    if (!uploads.has(pool.name)) uploads.set(pool.name, uploadForm(pool, run, at().node));
    return uploads.get(pool.name);
  };

  function poolSection(pool, volumes, node) {
    const name = h("input", { "aria-label": "volume name", placeholder: "name", required: true, size: 14 });
    const size = h("input", { "aria-label": "size in MiB", type: "number", min: 1, value: 64, size: 6 });
    const format = h("select", { "aria-label": "format" }, h("option", {}, "qcow2"), h("option", {}, "raw"));
    const run = (label, work) => act(line, label, work).then(draw);
    return h("section", { class: "card" }, h("h2", {}, `Volumes in ${pool.name}`),
      h("div", { class: "scroll" }, h("table", { class: "list", "data-testid": `volumes-${pool.name}` },
        h("thead", {}, h("tr", {}, ["Volume", "Format", "Size", "On disk", "Snapshots", "Used by", ""].map((c) => h("th", {}, c)))),
        h("tbody", {}, volumes.map((v) => h("tr", {},
          h("td", {}, v.volume.split("/")[1], v.template ? h("span", { class: "tag" }, "template") : null,
            v.linked_to ? h("div", { class: "muted" }, `linked to ${v.linked_to}`) : null),
          h("td", {}, v.format), h("td", { class: "num" }, fmtBytes(v.virtual_size)), h("td", { class: "num" }, fmtBytes(v.real_size)),
          h("td", {}, (v.snapshots || []).map((s) => s.name).join(", ")),
          h("td", {}, (v.used_by || []).join(", ")),
          h("td", { class: "row-actions" },
            h("button", { onclick: () => run(`Download ${v.volume}`, () => downloadVolume(v.volume, node.node)) }, "Download"),
            v.template ? null : h("button", { onclick: () => run(`Template ${v.volume}`, () => node.put(`${volPath(v.volume)}/template`)) }, "Make template"),
            dangerButton("Delete", () => run(`Delete ${v.volume}`, () => node.del(volPath(v.volume)))))))))),
      pool.available ? h("form", { class: "actions", onsubmit: (event) => {
        event.preventDefault();
        run(`Create ${name.value}`, () => node.post(`/pools/${encodeURIComponent(pool.name)}/volumes`,
          { name: name.value, format: format.value, size: Number(size.value) * 1048576 }));
      } }, name, size, "MiB", format, h("button", { type: "submit" }, "Create volume")) : null,
      pool.available ? upload(pool, run) : null);
  }

  await draw();
  fill(main, h("div", { class: "page-head" }, h("h1", {}, "Storage"), picker), line, content);
}

/** A choice of node when there are several online (null otherwise, or
 *  for a tenant, who may not read the node table); `changed` on a pick. */
async function nodePicker(changed) {
  const [nodes, me] = await Promise.all([get("/cluster/nodes").catch(() => []), get("/node")]);
  const online = nodes.filter((n) => n.state === "online");
  if (online.length < 2) return null;
  return h("select", { "aria-label": "node", "data-testid": "storage-node", onchange: changed },
    online.map((n) => h("option", { value: n.name, selected: n.name === me.name }, n.name)));
}

/** Upload an image file as a new volume: streamed with PUT …/data, its
 *  progress from the browser's upload events. */
function uploadForm(pool, run, node) {
  const file = h("input", { type: "file", "aria-label": "image file", required: true });
  const name = h("input", { "aria-label": "upload as", placeholder: "volume name (default: the file's)", size: 22 });
  const format = h("select", { "aria-label": "upload format" }, h("option", { value: "" }, "detect format"),
    h("option", {}, "raw"), h("option", {}, "qcow2"));
  const bar = h("progress", { max: 100, value: 0, "data-testid": "upload-progress", hidden: true });
  return h("form", { class: "actions", "data-testid": `upload-${pool.name}`, onsubmit: (event) => {
    event.preventDefault();
    const chosen = file.files[0];
    const target = name.value || chosen.name;
    const path = `/pools/${encodeURIComponent(pool.name)}/volumes/${encodeURIComponent(target)}/data${format.value ? `?format=${format.value}` : ""}`;
    bar.hidden = false;
    run(`Upload ${target}`, (progress) => uploadFile(path, node, chosen, (sent, total) => {
      const pct = total ? Math.round((100 * sent) / total) : 0;
      bar.value = pct;
      progress(`${pct} % (${fmtBytes(sent)} of ${fmtBytes(total)})`);
    }));
  } }, file, name, format, h("button", { type: "submit" }, "Upload"), bar);
}

/** PUT `path` on `node` (null: this one) with the file as the body;
 *  `onProgress(sent, total)` as it goes. */
function uploadFile(path, node, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", path);
    if (session.token) xhr.setRequestHeader("Authorization", `Bearer ${session.token}`);
    if (node) xhr.setRequestHeader(NODE_HEADER, node);
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      let answer = null;
      try { answer = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(answer);
      else reject(new Error((answer && answer.error) || `${xhr.status} ${xhr.statusText}`));
    };
    xhr.onerror = () => reject(new Error("the upload broke off"));
    xhr.send(file);
  });
}

/** The guest's view of a volume on `node` (null: this one) as a file,
 *  streamed by the browser straight to its downloads (never held in the
 *  page): a plain link cannot send the token, so it carries a single-use
 *  ticket instead, which also names the node the download comes from. */
export async function downloadVolume(ref, node) {
  const path = `${volPath(ref)}/data`;
  const { ticket } = await post("/auth/download-ticket", node ? { path, node } : { path });
  const a = document.createElement("a");
  a.href = `${path}?format=raw&ticket=${encodeURIComponent(ticket)}`;
  a.download = `${ref.split("/")[1]}.raw`;
  document.body.append(a);
  a.click();
  a.remove();
}
