// The agent's REST API (docs/api/agent.yaml), the same the CLI uses. The
// token from POST /auth/login rides on every request as a Bearer header.

const TOKEN_KEY = "vireo.token";
const USER_KEY = "vireo.user";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const session = {
  get token() { return localStorage.getItem(TOKEN_KEY); },
  get user() {
    try { return JSON.parse(localStorage.getItem(USER_KEY)); } catch { return null; }
  },
  save(token, user) {
    if (token) localStorage.setItem(TOKEN_KEY, token); else localStorage.removeItem(TOKEN_KEY);
    localStorage.setItem(USER_KEY, JSON.stringify(user));
  },
  clear() {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(USER_KEY);
  },
};

/** Called on a 401: the app sends the user to the login page. */
let onUnauthorized = () => {};
export function setUnauthorizedHandler(handler) { onUnauthorized = handler; }

/** The header naming the node a request is for, and the node an answer
 *  came from (a request about another node's VM is answered by its owner). */
export const NODE_HEADER = "X-Vireo-Node";

/**
 * METHOD path [body] → the answer's JSON (null for 204); an ApiError
 * otherwise. `node` sends the request on to that node's agent (its tasks).
 * A task another node answered with (a VM's owner) carries that node as
 * `task.node`, so that following it asks the node that runs it.
 */
export async function api(method, path, body, node) {
  const headers = {};
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (node !== undefined && node !== null) headers[NODE_HEADER] = String(node);
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, `the agent does not answer: ${e.message}`);
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!response.ok) {
    const message = (data && data.error) || `${response.status} ${response.statusText}`;
    if (response.status === 401 && !path.startsWith("/auth/login")) onUnauthorized();
    throw new ApiError(response.status, message);
  }
  const from = response.headers.get(NODE_HEADER);
  if (from && data && data.kind && data.id && data.state) data.node = from;
  // Another node's answer (its VM) says so, out of the way of the data
  // (not enumerable: a VM sent back as a definition does not carry it).
  if (from && data && typeof data === "object") Object.defineProperty(data, "answeredBy", { value: from });
  return data;
}

/** The same calls sent to node `node`'s agent (null: the one serving the
 *  page): a VM's volumes and backups are on the node that runs it. */
export function onNode(node) {
  return {
    node,
    api: (method, path, body) => api(method, path, body, node),
    get: (path) => api("GET", path, undefined, node),
    post: (path, body) => api("POST", path, body, node),
    put: (path, body) => api("PUT", path, body, node),
    del: (path) => api("DELETE", path, undefined, node),
  };
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const put = (path, body) => api("PUT", path, body);
export const del = (path) => api("DELETE", path);

/** Logs in. An agent without authentication (404 on /auth/login) lets everyone in as admin. */
export async function login(user, password) {
  try {
    const answer = await api("POST", "/auth/login", { user, password });
    session.save(answer.token, { user: answer.user, role: answer.role, tenant: answer.tenant });
  } catch (e) {
    if (e.status !== 404) throw e;
    session.save(null, { user: user || "admin", role: "admin", tenant: null, noAuth: true });
  }
  return session.user;
}

/** Logs in with an API token (`vireo` tokens, a node's admin token): who it is comes from /auth/whoami. */
export async function loginWithToken(token) {
  let response;
  try {
    response = await fetch("/auth/whoami", { headers: { Authorization: `Bearer ${token}` } });
  } catch (e) {
    throw new ApiError(0, `the agent does not answer: ${e.message}`);
  }
  if (!response.ok) throw new ApiError(response.status, response.status === 401 ? "That token is not valid." : `${response.status} ${response.statusText}`);
  const who = await response.json();
  session.save(token, { user: who.user, role: who.role, tenant: who.tenant });
  return session.user;
}

/** Polls a task (on its node) until it ends; `progress(task)` sees each state. Throws if it failed. */
export async function waitTask(task, progress = () => {}) {
  for (;;) {
    progress(task);
    if (task.state !== "running") break;
    await new Promise((r) => setTimeout(r, 400));
    task = await api("GET", `/tasks/${encodeURIComponent(task.id)}`, undefined, task.node);
  }
  if (task.state === "failed") throw new ApiError(500, `${task.kind} failed: ${task.error}`);
  if (task.state === "cancelled") throw new ApiError(409, `${task.kind} was cancelled`);
  return task;
}

/** The WebSocket URL of a VM's console: its first message replays the last
 *  `replay` bytes of the log (the token as a query parameter). */
export function consoleUrl(vm, replay) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const token = session.token ? `&token=${encodeURIComponent(session.token)}` : "";
  return `${scheme}://${location.host}/vms/${encodeURIComponent(vm)}/console?replay=${replay}${token}`;
}

export const vmPath = (name) => `/vms/${encodeURIComponent(name)}`;
export const volPath = (ref) => {
  const [pool, volume] = ref.split("/");
  return `/pools/${encodeURIComponent(pool)}/volumes/${encodeURIComponent(volume)}`;
};
