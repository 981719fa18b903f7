// Shared by the buyer page, the seller page and the admin console (docs/pages.md): signing in
// with a pasted development token, calls to the public API, and small DOM helpers. A file, not
// inline code: the pages' Content-Security-Policy allows scripts of this origin only. Values
// from the API are always set as text (textContent), never as HTML.
"use strict";

const Pages = (() => {
  // The token lives in this tab's sessionStorage only: closing the tab forgets it, and no other
  // tab, cookie or localStorage ever holds it.
  const TOKEN_KEY = "payments.token";

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  /** An error envelope from the API: {error: {code, message, request_id}}. */
  class ApiError extends Error {
    constructor(status, envelope) {
      const error = (envelope && envelope.error) || {};
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || "http_" + status;
      this.requestId = error.request_id || null;
    }
  }

  /** One call to this origin's API with the Bearer token (no cookie, so no CSRF token needed);
   * a POST carries a fresh Idempotency-Key, so a retried click cannot act twice. */
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const current = token();
    if (current) headers.Authorization = "Bearer " + current;
    const init = { method, headers, credentials: "omit", cache: "no-store" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      headers["Idempotency-Key"] = crypto.randomUUID();
      init.body = JSON.stringify(body || {});
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch (_) {
      parsed = null;
    }
    if (!response.ok) throw new ApiError(response.status, parsed);
    return parsed;
  }

  /** Builds an element: el("td", {className: "x"}, "text", otherNode). Strings become text nodes. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (name === "dataset") Object.assign(node.dataset, value);
      else if (value !== undefined && value !== null) node[name] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function $(id) {
    return document.getElementById(id);
  }

  /** Minor units to a display amount: 2500 usd → "25.00 USD". */
  function money(amount, currency) {
    if (amount === null || amount === undefined) return "";
    const sign = amount < 0 ? "-" : "";
    const abs = Math.abs(amount);
    return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")} ${String(currency || "").toUpperCase()}`;
  }

  /** An API timestamp (RFC 3339, UTC) as "2026-12-06 20:10:30 UTC". */
  function when(iso) {
    if (!iso) return "";
    const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})/.exec(iso);
    return match ? `${match[1]} ${match[2]} UTC` : iso;
  }

  /** Shows a message in a page's status line; kind "error" for refusals. */
  function say(target, message, kind) {
    const node = typeof target === "string" ? $(target) : target;
    node.textContent = message;
    node.className = "message" + (kind ? " " + kind : "");
  }

  function explain(error) {
    if (error instanceof ApiError) {
      return `${error.message} (${error.code}${error.requestId ? ", request " + error.requestId : ""})`;
    }
    return String(error && error.message ? error.message : error);
  }

  /** A table body from rows: columns are [heading, row => text or Node]. */
  function fillTable(table, columns, rows, empty) {
    const head = el("tr", {}, ...columns.map(([heading]) => el("th", {}, heading)));
    table.replaceChildren(el("thead", {}, head));
    const body = el("tbody");
    if (!rows.length) {
      body.append(el("tr", {}, el("td", { colSpan: columns.length, className: "empty" }, empty || "Nothing yet.")));
    }
    for (const row of rows) {
      body.append(el("tr", {}, ...columns.map(([, cell]) => el("td", {}, cell(row)))));
    }
    table.append(body);
  }

  /** A form's named fields as an object, empty values left out. */
  function fields(form) {
    const out = {};
    for (const [name, value] of new FormData(form).entries()) {
      if (typeof value === "string" && value.trim() !== "") out[name] = value.trim();
    }
    return out;
  }

  function query(values) {
    const search = new URLSearchParams(values).toString();
    return search ? "?" + search : "";
  }

  /**
   * Wires the sign-in box (#signin-form, #token, #signout, #whoami). `onSignedIn(me)` runs with
   * the caller's profile (GET /api/me) once a token works, at load when the tab already has one.
   */
  function setUpSignIn(onSignedIn) {
    const form = $("signin-form");
    const who = $("whoami");
    async function check() {
      if (!token()) {
        document.body.classList.remove("signed-in");
        say(who, "Not signed in.");
        return;
      }
      try {
        const me = await api("GET", "/api/me");
        document.body.classList.add("signed-in");
        say(who, `Signed in as ${me.user_id} (${me.roles.join(" and ")}).`, "ok");
        onSignedIn(me);
      } catch (error) {
        document.body.classList.remove("signed-in");
        sessionStorage.removeItem(TOKEN_KEY);
        say(who, "This token is not accepted: " + explain(error), "error");
      }
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const pasted = $("token").value.trim().replace(/^Bearer\s+/i, "");
      $("token").value = "";
      if (pasted) sessionStorage.setItem(TOKEN_KEY, pasted);
      check();
    });
    $("signout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
    check();
  }

  /** Runs `submit(values, form)` on a form's submit, with errors shown in `status`. A second
   * submit while the first runs is ignored; the buttons' enabled state stays the page's to set
   * (a dispute once opened keeps its button disabled). */
  function onSubmit(form, status, submit) {
    const node = typeof form === "string" ? $(form) : form;
    node.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (node.getAttribute("aria-busy") === "true") return;
      node.setAttribute("aria-busy", "true");
      try {
        await submit(fields(node), node);
      } catch (error) {
        say(status, explain(error), "error");
      } finally {
        node.removeAttribute("aria-busy");
      }
    });
  }

  return { api, ApiError, el, $, money, when, say, explain, fillTable, fields, query, setUpSignIn, onSubmit, token };
})();
