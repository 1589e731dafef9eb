// The login page: POST /auth/login (or an API token, checked by GET
// /auth/whoami), then where the user was going.

import { login, loginWithToken } from "../api.js";
import { fill, h } from "../dom.js";

export function render(main, _params, { navigate }) {
  const error = h("p", { class: "error-text", role: "alert" });
  const user = h("input", { name: "user", autocomplete: "username", autofocus: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password" });
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h("form", { class: "card login", onsubmit: async (event) => {
    event.preventDefault();
    submit.disabled = true;
    fill(error);
    try {
      await (user.value ? login(user.value, password.value) : loginWithToken(password.value));
      const next = new URLSearchParams(location.search).get("next");
      navigate(next && next.startsWith("/ui/") && next !== "/ui/login" ? next : "/ui/vms", true);
    } catch (e) {
      fill(error, e.status === 401 && user.value ? "Wrong user name or password." : e.message);
      submit.disabled = false;
    }
  } },
  h("h1", {}, "Log in to Vireo"),
  h("label", {}, "User", user),
  h("label", {}, "Password", password),
  h("p", { class: "muted" }, "With no user name, the password is taken as an API token."),
  error, submit);
  fill(main, form);
}
