// Running an action from a button: its progress and outcome in a status
// line (and a toast), buttons that ask twice before destroying anything.

import { waitTask } from "./api.js";
import { fill, h, toast } from "./dom.js";

/** A status line the actions of a page report into. */
export function statusLine() {
  return h("p", { class: "action-status", "data-testid": "action-status", "aria-live": "polite" });
}

/**
 * Runs `work(progress)`; `progress(text)` updates the line. A Task answer
 * is followed to its end. Returns the result, or undefined on failure.
 */
export async function act(line, label, work) {
  fill(line, h("span", { class: "spinner" }), ` ${label}…`);
  line.className = "action-status busy";
  try {
    let result = await work((text) => fill(line, h("span", { class: "spinner" }), ` ${label}: ${text}`));
    if (result && result.id && result.state && result.kind) {
      result = await waitTask(result, (t) => {
        const pct = t.total ? ` ${Math.round((100 * t.done) / t.total)} %` : "";
        fill(line, h("span", { class: "spinner" }), ` ${label}${pct}`);
      });
    }
    fill(line, `${label}: done`);
    line.className = "action-status ok";
    toast(`${label}: done`);
    return result ?? true;
  } catch (e) {
    fill(line, `${label}: ${e.message}`);
    line.className = "action-status failed";
    toast(`${label}: ${e.message}`, "error");
    return undefined;
  }
}

/** A button that asks "Really …?" on the first click and acts on the second. */
export function dangerButton(label, onConfirm) {
  let armed = false;
  const button = h("button", { class: "danger", onclick: () => {
    if (!armed) {
      armed = true;
      button.textContent = `Really ${label.toLowerCase()}?`;
      setTimeout(() => { armed = false; button.textContent = label; }, 5000);
      return;
    }
    armed = false;
    button.textContent = label;
    onConfirm();
  } }, label);
  return button;
}
