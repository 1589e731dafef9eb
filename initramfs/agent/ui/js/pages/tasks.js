// The task list: running work with its progress, finished work with its
// outcome; a running task can be cancelled.

import { del, get } from "../api.js";
import { act, statusLine } from "../actions.js";
import { fill, fmtBytes, fmtTime, h } from "../dom.js";

export async function render(main) {
  const body = h("tbody");
  const line = statusLine();

  async function draw() {
    const tasks = (await get("/tasks")).sort((a, b) => b.started - a.started);
    body.replaceChildren(...tasks.map((t) => h("tr", { "data-task": t.id },
      h("td", {}, t.id), h("td", {}, t.kind), h("td", {}, t.target),
      h("td", {}, h("span", { class: `badge task-${t.state}` }, t.state)),
      h("td", {}, progress(t)),
      h("td", {}, fmtTime(t.started)),
      h("td", {}, t.error || ""),
      h("td", {}, t.state === "running" ? h("button", { class: "danger", onclick: () =>
        act(line, `Cancel ${t.id}`, () => del(`/tasks/${encodeURIComponent(t.id)}`)).then(draw) }, "Cancel") : null))));
  }

  await draw();
  fill(main, h("div", { class: "page-head" }, h("h1", {}, "Tasks")), line,
    h("div", { class: "scroll" }, h("table", { class: "list", "data-testid": "tasks" },
      h("thead", {}, h("tr", {}, ["Task", "Kind", "Target", "State", "Progress", "Started", "Error", ""].map((c) => h("th", {}, c)))),
      body)));
  const timer = setInterval(() => draw().catch(() => {}), 1000);
  return () => clearInterval(timer);
}

function progress(t) {
  if (!t.total) return t.done ? `${t.done} ${t.unit || ""}` : "";
  const pct = Math.min(100, Math.round((100 * t.done) / t.total));
  const amount = t.unit === "bytes" ? ` (${fmtBytes(t.done)} of ${fmtBytes(t.total)})` : "";
  return h("span", { class: "progress" }, h("progress", { max: 100, value: pct }), ` ${pct} %${amount}`);
}
