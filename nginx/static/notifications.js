// The signed-in caller's notifications inbox (GET /api/notifications, POST
// /api/notifications/{id}/read), shared by the buyer and seller pages.
"use strict";

const Inbox = (() => {
  const { api, el, $, when, say, explain, fillTable } = Pages;

  function summary(payload) {
    if (!payload || typeof payload !== "object") return "";
    return Object.entries(payload).map(([key, value]) => `${key}: ${value}`).join(", ");
  }

  async function load() {
    try {
      const page = await api("GET", "/api/notifications");
      fillTable($("notifications"), [
        ["When", (n) => when(n.created_at)],
        ["Kind", (n) => el("span", { className: "kind" }, n.kind)],
        ["Details", (n) => el("span", { className: "mono" }, summary(n.payload))],
        ["Read", (n) => n.read_at
          ? el("span", { className: "read" }, "read")
          : el("button", { type: "button", className: "mark-read", dataset: { id: n.id } }, "Mark read")],
      ], page.data, "No notifications.");
    } catch (error) {
      say("notifications-message", explain(error), "error");
    }
  }

  function setUp() {
    $("refresh-notifications").addEventListener("click", load);
    $("notifications").addEventListener("click", async (event) => {
      const button = event.target.closest("button.mark-read");
      if (!button) return;
      button.disabled = true;
      try {
        await api("POST", `/api/notifications/${encodeURIComponent(button.dataset.id)}/read`, {});
        say("notifications-message", "Marked read.", "ok");
        await load();
      } catch (error) {
        button.disabled = false;
        say("notifications-message", explain(error), "error");
      }
    });
  }

  return { load, setUp };
})();
