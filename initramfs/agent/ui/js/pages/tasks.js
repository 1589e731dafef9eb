// The task list: running work with its progress, finished work with its
// outcome; a running task can be cancelled. In a cluster, every node's
// tasks (GET /cluster/tasks): a migration runs on the VM's node, not
// necessarily the one serving this page; its cancel goes to that node.

import { api, ApiError, get } from "../api.js";
import { act, statusLine } from "../actions.js";
import { fill, fmtBytes, fmtTime, h } from "../dom.js";

export async function render(main) {
  const body = h("tbody");
  const line = statusLine();
  const missing = h("p", { class: "muted", "data-testid": "tasks-unanswered" });

  async function draw() {
    const { tasks, unanswered } = await allTasks();
    fill(missing, unanswered.length ? `No answer from ${unanswered.join(", ")}: their tasks are not listed.` : null);
    body.replaceChildren(...tasks.map((t) => h("tr", { "data-task": t.id, "data-node": t.node || "" },
      h("td", {}, t.id), h("td", {}, t.node || ""), h("td", {}, t.kind), h("td", {}, t.target),
      h("td", {}, h("span", { class: `badge task-${t.state}` }, t.state)),
      h("td", {}, progress(t)),
      h("td", {}, fmtTime(t.started)),
      h("td", {}, t.error || ""),
      h("td", {}, t.state === "running" ? h("button", { class: "danger", onclick: () =>
        act(line, `Cancel ${t.id}`, () => api("DELETE", `/tasks/${encodeURIComponent(t.id)}`, undefined, t.node)).then(draw) }, "Cancel") : null))));
  }

  await draw();
  fill(main, h("div", { class: "page-head" }, h("h1", {}, "Tasks")), line, missing,
    h("div", { class: "scroll" }, h("table", { class: "list", "data-testid": "tasks" },
      h("thead", {}, h("tr", {}, ["Task", "Node", "Kind", "Target", "State", "Progress", "Started", "Error", ""].map((c) => h("th", {}, c)))),
      body)));
  const timer = setInterval(() => draw().catch(() => {}), 1000);
  return () => clearInterval(timer);
}

/** Every node's tasks, newest first; this node's alone outside a cluster
 *  (404) or for a caller who may not read the cluster's (403). */
async function allTasks() {
  try {
    return await get("/cluster/tasks");
  } catch (e) {
    if (!(e instanceof ApiError) || (e.status !== 404 && e.status !== 403)) throw e;
  }
  const tasks = (await get("/tasks")).sort((a, b) => b.started - a.started);
  return { tasks, unanswered: [] };
}

function progress(t) {
  if (!t.total) return t.done ? `${t.done} ${t.unit || ""}` : "";
  const pct = Math.min(100, Math.round((100 * t.done) / t.total));
  const amount = t.unit === "bytes" ? ` (${fmtBytes(t.done)} of ${fmtBytes(t.total)})` : "";
  return h("span", { class: "progress" }, h("progress", { max: 100, value: pct }), ` ${pct} %${amount}`);
}
