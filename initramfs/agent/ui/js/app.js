// The app: a router over /ui/... paths (the agent serves index.html for
// each), the header with the navigation and the user, and the error page.

import { ApiError, session, setUnauthorizedHandler } from "./api.js";
import { fill, h, link } from "./dom.js";
import * as backups from "./pages/backups.js";
import * as login from "./pages/login.js";
import * as networks from "./pages/networks.js";
import * as node from "./pages/node.js";
import * as overview from "./pages/overview.js";
import * as storage from "./pages/storage.js";
import * as tasks from "./pages/tasks.js";
import * as vm from "./pages/vm.js";
import * as vms from "./pages/vms.js";

const routes = [
  [/^\/ui\/?$/, overview, "Overview"],
  [/^\/ui\/login$/, login, "Log in"],
  [/^\/ui\/vms$/, vms, "VMs"],
  [/^\/ui\/vms\/([^/]+)$/, vm, "VM"],
  [/^\/ui\/nodes\/([^/]+)$/, node, "Node"],
  [/^\/ui\/storage$/, storage, "Storage"],
  [/^\/ui\/networks$/, networks, "Networks"],
  [/^\/ui\/backups$/, backups, "Backups"],
  [/^\/ui\/tasks$/, tasks, "Tasks"],
];

const NAV = [["/ui/", "Overview"], ["/ui/vms", "VMs"], ["/ui/storage", "Storage"], ["/ui/networks", "Networks"], ["/ui/backups", "Backups"], ["/ui/tasks", "Tasks"]];

let cleanup = null;

export function navigate(path, replace = false) {
  if (replace) history.replaceState(null, "", path); else history.pushState(null, "", path);
  route();
}

/** A page that cannot be shown: what went wrong, and where to go instead. */
export function errorPage(main, error) {
  const status = error instanceof ApiError ? error.status : 0;
  const title = status === 403 ? "Not allowed" : status === 404 ? "Not found" : "Something went wrong";
  fill(main, h("section", { class: "error-page", "data-testid": "error-page" },
    h("h1", {}, title),
    h("p", { class: "error-text" }, error.message || String(error)),
    status ? h("p", { class: "muted" }, `HTTP ${status}`) : null,
    h("p", {}, link("/ui/vms", "Back to your VMs"))));
}

function header() {
  const user = session.user;
  const here = location.pathname.replace(/\/$/, "") || "/ui";
  // Pools are the operators' (a tenant's API answers 403 there).
  const nav = user && user.role === "tenant" ? NAV.filter(([href]) => href !== "/ui/storage" && href !== "/ui/backups") : NAV;
  fill(document.getElementById("nav"), user ? nav.map(([href, label]) => {
    const a = link(href, label);
    const current = href === "/ui/" ? here === "/ui" : here.startsWith(href);
    if (current) a.setAttribute("aria-current", "page");
    return a;
  }) : null);
  fill(document.getElementById("who"), user ? [
    h("span", { class: "user", "data-testid": "user" }, user.user, user.tenant ? ` · ${user.tenant}` : "", user.role ? ` (${user.role})` : ""),
    h("button", { class: "link", onclick: logout }, "Log out"),
  ] : null);
}

function logout() {
  session.clear();
  navigate("/ui/login");
}

async function route() {
  if (cleanup) { try { cleanup(); } catch { /* a page's leftovers */ } cleanup = null; }
  const path = location.pathname;
  const main = document.getElementById("main");
  if (!session.user && path !== "/ui/login") {
    navigate(`/ui/login?next=${encodeURIComponent(path)}`, true);
    return;
  }
  header();
  const found = routes.find(([pattern]) => pattern.test(path));
  if (!found) {
    errorPage(main, new ApiError(404, `no page ${path}`));
    return;
  }
  const [pattern, page, title] = found;
  const params = path.match(pattern).slice(1).map(decodeURIComponent);
  document.title = `${params[0] || title} · Vireo`;
  fill(main, h("p", { class: "muted" }, "Loading…"));
  try {
    cleanup = (await page.render(main, params, { navigate, errorPage })) || null;
  } catch (e) {
    errorPage(main, e);
  }
}

// Links marked data-link stay in the app.
document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-link]");
  if (!a || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", route);
setUnauthorizedHandler(() => {
  session.clear();
  navigate(`/ui/login?next=${encodeURIComponent(location.pathname)}`, true);
});
route();
