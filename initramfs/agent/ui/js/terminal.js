// A VM's serial console over the agent's WebSocket. A small hand-written
// view rather than xterm.js (docs/ui.md): the UI has no build step, and the
// consoles it shows are line-oriented serial output; control sequences are
// dropped, carriage returns and backspaces honoured, keys sent as bytes.

import { consoleUrl } from "./api.js";
import { h } from "./dom.js";

const KEEP_CHARS = 200_000;
/** Bytes of the console's past the agent replays on each (re)connect. */
const REPLAY_BYTES = 65536;
const KEYS = {
  Enter: "\r", Backspace: "\x7f", Tab: "\t", Escape: "\x1b",
  ArrowUp: "\x1b[A", ArrowDown: "\x1b[B", ArrowRight: "\x1b[C", ArrowLeft: "\x1b[D",
};

/** Removes ANSI escape sequences (CSI, OSC, two-byte escapes). */
export function stripEscapes(text) {
  return text
    .replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, "")
    .replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g, "")
    .replace(/\x1b[@-_]/g, "");
}

/** Applies text to the screen: \r\n is a newline, a lone \r returns to the line's start, \b erases. */
export function applyText(screen, text) {
  let out = screen;
  for (const piece of stripEscapes(text).replace(/\r\n/g, "\n").split(/(\r|\x08|\x7f)/)) {
    if (piece === "\r") out = out.slice(0, out.lastIndexOf("\n") + 1);
    else if (piece === "\x08" || piece === "\x7f") { if (!out.endsWith("\n")) out = out.slice(0, -1); }
    else out += piece.replace(/[\x00-\x08\x0b-\x1f]/g, "");
  }
  return out.length > KEEP_CHARS ? out.slice(out.length - KEEP_CHARS) : out;
}

/** The console view; call `close()` when leaving the page. */
export function terminal(vmName) {
  const screen = h("pre", { class: "terminal", tabindex: 0, "data-testid": "console", "aria-label": `console of ${vmName}` });
  const status = h("span", { class: "muted" }, "connecting…");
  let text = "";
  let socket = null;
  let closed = false;

  function show(chunk) {
    const atBottom = screen.scrollTop + screen.clientHeight >= screen.scrollHeight - 4;
    text = applyText(text, chunk);
    screen.textContent = text;
    if (atBottom) screen.scrollTop = screen.scrollHeight;
  }

  function connect() {
    const decoder = new TextDecoder();
    socket = new WebSocket(consoleUrl(vmName, REPLAY_BYTES));
    socket.binaryType = "arraybuffer";
    // The first message replays the recent past, taken by the agent together
    // with the live subscription: the screen starts afresh on each connect,
    // nothing missed or shown twice in between.
    socket.onopen = () => {
      status.textContent = "connected";
      text = "";
      screen.textContent = "";
      screen.scrollTop = screen.scrollHeight;
    };
    socket.onmessage = (m) => show(typeof m.data === "string" ? m.data : decoder.decode(m.data, { stream: true }));
    socket.onclose = () => {
      status.textContent = "disconnected";
      if (!closed) setTimeout(() => { if (!closed) connect(); }, 2000);
    };
  }

  screen.addEventListener("keydown", (event) => {
    if (!socket || socket.readyState !== WebSocket.OPEN || event.metaKey) return;
    let bytes = KEYS[event.key];
    if (!bytes && event.ctrlKey && event.key.length === 1) {
      bytes = String.fromCharCode(event.key.toUpperCase().charCodeAt(0) & 0x1f);
    } else if (!bytes && event.key.length === 1 && !event.altKey) {
      bytes = event.key;
    }
    if (bytes) { socket.send(new TextEncoder().encode(bytes)); event.preventDefault(); }
  });
  screen.addEventListener("paste", (event) => {
    const pasted = event.clipboardData.getData("text");
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(new TextEncoder().encode(pasted));
    event.preventDefault();
  });

  connect();
  const el = h("div", { class: "console" }, h("div", { class: "console-bar" }, h("strong", {}, "Serial console "), status), screen);
  return { el, close() { closed = true; if (socket) socket.close(); } };
}
