// The admin console (docs/pages.md): disputes (filter, detail, refund, resolve, evidence), the
// payment search, the webhook inbox backlog with replay, dead notification deliveries with
// retry, and the audit log with filters — all
// through the public admin API (docs/payments.md, "Admin tools"; docs/disputes.md).
"use strict";

(() => {
  const { api, el, $, money, when, say, explain, fillTable, onSubmit, fields, query } = Pages;
  let shownDispute = null;
  let paymentsNext = null;
  let auditNext = null;

  const json = (value) => (value === null || value === undefined ? "" : JSON.stringify(value));
  const short = (id) => el("span", { className: "mono", title: id }, id ? String(id).slice(0, 8) : "");

  // --- disputes --------------------------------------------------------------------------
  async function loadDisputes() {
    try {
      const page = await api("GET", "/api/admin/disputes" + query(fields($("dispute-filter"))));
      fillTable($("disputes"), [
        ["Opened", (d) => when(d.created_at)],
        ["Kind", (d) => d.kind],
        ["Status", (d) => el("span", { className: "dispute-status" }, d.status)],
        ["Reason", (d) => d.reason],
        ["Payment", (d) => `${money(d.payment.amount_received, d.payment.currency)} ${d.payment.status}`],
        ["Refunded", (d) => money(d.payment.amount_refunded, d.payment.currency)],
        ["", (d) => el("button", { type: "button", className: "open-dispute", dataset: { id: d.id } }, "Open")],
      ], page.data, "No disputes match.");
    } catch (error) {
      say("disputes-message", explain(error), "error");
    }
  }

  async function showDispute(id) {
    shownDispute = id;
    const detail = await api("GET", `/api/admin/disputes/${encodeURIComponent(id)}`);
    $("dispute-detail").classList.remove("hidden");
    $("detail-id").textContent = detail.id;
    const currency = detail.payment.currency;
    const rows = [
      ["Status", el("span", { id: "detail-status", className: "status" }, detail.status)],
      ["Kind", detail.kind],
      ["Reason", detail.reason],
      ["Details", detail.details || ""],
      ["Outcome", detail.outcome || ""],
      ["Payment", el("span", { className: "mono" }, detail.payment_id)],
      ["Payment status", detail.payment.status],
      ["Captured", money(detail.payment.amount_received, currency)],
      ["Refunded", el("span", { id: "detail-refunded" }, money(detail.payment.amount_refunded, currency))],
      ["Buyer", el("span", { className: "mono" }, detail.payment.buyer_id)],
      ["Seller", el("span", { className: "mono" }, detail.payment.seller_id)],
    ];
    if (detail.due_by) rows.push(["Evidence due", detail.due_by]);
    if (detail.evidence_status) rows.push(["Evidence", detail.evidence_status]);
    $("detail-fields").replaceChildren(...rows.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
    fillTable($("detail-refunds"), [
      ["Created", (r) => when(r.created_at)],
      ["Amount", (r) => money(r.amount, currency)],
      ["Status", (r) => el("span", { className: "refund-status" }, r.status)],
      ["Reason", (r) => r.reason || ""],
      ["Stripe", (r) => el("span", { className: "mono" }, r.stripe_refund_id || "")],
    ], detail.refunds, "No refunds.");
    fillTable($("detail-history"), [
      ["At", (h) => when(h.at)],
      ["Operation", (h) => h.operation],
      ["Actor", (h) => `${h.actor_role || ""} ${h.actor_profile_id ? h.actor_profile_id.slice(0, 8) : ""}`],
      ["Result", (h) => (h.success ? "ok" : `refused: ${h.error_code}`)],
      ["Change", (h) => el("span", { className: "mono" }, `${json(h.old_values)} → ${json(h.new_values)}`)],
    ], detail.history, "No history.");
    const open = detail.status === "open";
    $("refund-submit").disabled = !(open || detail.kind === "chargeback");
    $("resolve-submit").disabled = !(open && detail.kind === "platform");
    $("evidence-submit").disabled = detail.kind !== "chargeback";
    return detail;
  }

  // --- payments --------------------------------------------------------------------------
  async function searchPayments(more) {
    try {
      const values = fields($("payment-search"));
      if (more && paymentsNext) values.cursor = paymentsNext;
      const page = await api("GET", "/api/admin/payments" + query({ limit: 25, ...values }));
      const table = $("payments");
      const columns = [
        ["Created", (p) => when(p.created_at)],
        ["Kind", (p) => p.kind],
        ["Status", (p) => el("span", { className: "payment-status" }, p.status)],
        ["Amount", (p) => money(p.amount, p.currency)],
        ["Captured", (p) => money(p.amount_received, p.currency)],
        ["Refunded", (p) => money(p.amount_refunded, p.currency)],
        ["Buyer", (p) => short(p.buyer_id)],
        ["Seller", (p) => short(p.seller_id)],
        ["Payment", (p) => el("span", { className: "mono" }, p.id)],
      ];
      if (more) {
        const body = table.querySelector("tbody");
        for (const p of page.data) body.append(el("tr", {}, ...columns.map(([, cell]) => el("td", {}, cell(p)))));
      } else {
        fillTable(table, columns, page.data, "No payments match.");
      }
      paymentsNext = page.next_cursor;
      $("payments-more").classList.toggle("hidden", !paymentsNext);
      say("payments-message", "");
    } catch (error) {
      say("payments-message", explain(error), "error");
    }
  }

  // --- webhook inbox ---------------------------------------------------------------------
  async function loadEvents() {
    try {
      const page = await api("GET", "/api/admin/webhook-events" + query({ limit: 50, ...fields($("event-filter")) }));
      fillTable($("events"), [
        ["Received", (e) => when(e.received_at)],
        ["Event", (e) => el("span", { className: "mono" }, e.id)],
        ["Type", (e) => e.type],
        ["Endpoint", (e) => e.endpoint],
        ["Status", (e) => el("span", { className: "event-status", dataset: { id: e.id } }, e.status)],
        ["Attempts", (e) => e.attempts],
        ["Last error", (e) => e.last_error || ""],
        ["", (e) => el("button", { type: "button", className: "replay", dataset: { id: e.id } }, "Replay")],
      ], page.data, "The inbox has no such events.");
    } catch (error) {
      say("events-message", explain(error), "error");
    }
  }

  async function replay(button) {
    button.disabled = true;
    try {
      const after = await api("POST", `/api/admin/webhook-events/${encodeURIComponent(button.dataset.id)}/replay`, {});
      const cell = button.closest("tr").querySelector(".event-status");
      cell.textContent = after.status;
      cell.className = "event-status " + (after.status === "processed" ? "ok" : "error");
      say("events-message", `Replayed ${after.id}: ${after.status}${after.last_error ? " (" + after.last_error + ")" : ""}.`,
          after.status === "processed" ? "ok" : "error");
    } catch (error) {
      say("events-message", explain(error), "error");
    } finally {
      button.disabled = false;
    }
  }

  // --- notification deliveries -----------------------------------------------------------
  async function loadDeliveries() {
    try {
      const page = await api("GET", "/api/admin/notifications" + query({ limit: 50, ...fields($("delivery-filter")) }));
      fillTable($("deliveries"), [
        ["Created", (d) => when(d.created_at)],
        ["Kind", (d) => d.kind],
        ["Channel", (d) => d.channel],
        ["To profile", (d) => el("span", { className: "mono" }, d.profile_id)],
        ["State", (d) => el("span", { className: "delivery-state", dataset: { id: String(d.id) } }, d.state)],
        ["Attempts", (d) => d.attempts],
        ["Last error", (d) => d.last_error || ""],
        ["", (d) => (d.state === "dead"
          ? el("button", { type: "button", className: "retry-delivery", dataset: { id: String(d.id) } }, "Retry")
          : "")],
      ], page.data, "No deliveries in that state.");
    } catch (error) {
      say("deliveries-message", explain(error), "error");
    }
  }

  async function retryDelivery(button) {
    button.disabled = true;
    try {
      const after = await api("POST", `/api/admin/notifications/${encodeURIComponent(button.dataset.id)}/retry`, {});
      button.closest("tr").querySelector(".delivery-state").textContent = after.state;
      button.remove();
      say("deliveries-message", `Delivery ${after.id} (${after.kind} by ${after.channel}) is queued again.`, "ok");
    } catch (error) {
      button.disabled = false;
      say("deliveries-message", explain(error), "error");
    }
  }

  // --- audit log -------------------------------------------------------------------------
  async function loadAudit(more) {
    try {
      const values = fields($("audit-filter"));
      if (more && auditNext) values.cursor = auditNext;
      const page = await api("GET", "/api/admin/audit-logs" + query({ limit: 50, ...values }));
      const columns = [
        ["At", (a) => when(a.occurred_at)],
        ["Operation", (a) => el("span", { className: "audit-operation" }, a.operation)],
        ["Entity", (a) => `${a.entity_type} ${a.entity_id || ""}`],
        ["Actor", (a) => `${a.actor_role || ""} ${a.actor_profile_id || ""}`],
        ["Result", (a) => (a.success ? "ok" : `refused: ${a.error_code}`)],
        ["Change", (a) => el("span", { className: "mono" }, `${json(a.old_values)} → ${json(a.new_values)}`)],
        ["Request", (a) => short(a.request_id)],
      ];
      if (more) {
        const body = $("audit").querySelector("tbody");
        for (const a of page.data) body.append(el("tr", {}, ...columns.map(([, cell]) => el("td", {}, cell(a)))));
      } else {
        fillTable($("audit"), columns, page.data, "No audit rows match.");
      }
      auditNext = page.next_cursor;
      $("audit-more").classList.toggle("hidden", !auditNext);
      say("audit-message", "");
    } catch (error) {
      say("audit-message", explain(error), "error");
    }
  }

  // --- wiring ----------------------------------------------------------------------------
  onSubmit("dispute-filter", "disputes-message", loadDisputes);
  $("disputes").addEventListener("click", (event) => {
    const button = event.target.closest("button.open-dispute");
    if (button) showDispute(button.dataset.id).catch((error) => say("disputes-message", explain(error), "error"));
  });
  onSubmit("refund-form", "detail-message", async (values, form) => {
    const refund = await api("POST", `/api/admin/disputes/${encodeURIComponent(shownDispute)}/refund`,
                             { amount: Number(values.amount), reason: values.reason });
    say("detail-message", `Refund of ${refund.amount} minor units: ${refund.status}.`, "ok");
    form.reset();
    await showDispute(shownDispute);
    loadDisputes();
  });
  onSubmit("resolve-form", "detail-message", async (values) => {
    const body = { outcome: values.outcome };
    if (values.note) body.note = values.note;
    const resolved = await api("POST", `/api/admin/disputes/${encodeURIComponent(shownDispute)}/resolve`, body);
    say("detail-message", `Dispute ${resolved.status} (${resolved.outcome}).`, "ok");
    await showDispute(shownDispute);
    loadDisputes();
  });
  onSubmit("evidence-form", "detail-message", async (values) => {
    const evidence = {};
    for (const name of ["product_description", "uncategorized_text"]) if (values[name]) evidence[name] = values[name];
    const updated = await api("POST", `/api/admin/disputes/${encodeURIComponent(shownDispute)}/evidence`,
                              { evidence, submit: values.submit_now === "yes" });
    say("detail-message", `Evidence ${updated.evidence_status || "sent"}.`, "ok");
    await showDispute(shownDispute);
  });

  onSubmit("payment-search", "payments-message", () => searchPayments(false));
  $("payments-more").addEventListener("click", () => searchPayments(true));
  onSubmit("event-filter", "events-message", loadEvents);
  $("events").addEventListener("click", (event) => {
    const button = event.target.closest("button.replay");
    if (button) replay(button);
  });
  onSubmit("delivery-filter", "deliveries-message", loadDeliveries);
  $("deliveries").addEventListener("click", (event) => {
    const button = event.target.closest("button.retry-delivery");
    if (button) retryDelivery(button);
  });
  onSubmit("audit-filter", "audit-message", () => loadAudit(false));
  $("audit-more").addEventListener("click", () => loadAudit(true));

  Pages.setUpSignIn(() => {
    loadDisputes();
    searchPayments(false);
    loadEvents();
    loadDeliveries();
    loadAudit(false);
  });
})();
