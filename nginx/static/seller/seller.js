// The seller page (docs/pages.md): Connect onboarding status and the button that starts or
// continues it (the browser follows the onboarding link to Stripe and comes back through the
// service's return endpoint), the Express dashboard link, the balance, payouts and the
// payments for the seller's listings — all through the public API.
"use strict";

(() => {
  const { api, el, $, money, when, say, explain, fillTable, query } = Pages;

  const yesNo = (value) => el("span", { className: value ? "ok" : "todo" }, value ? "enabled" : "not yet");

  async function loadStatus() {
    try {
      const status = await api("GET", "/api/connect/status");
      $("account-id").textContent = status.account_id || "none yet";
      $("charges-enabled").replaceChildren(yesNo(status.charges_enabled));
      $("payouts-enabled").replaceChildren(yesNo(status.payouts_enabled));
      $("details-submitted").textContent = status.details_submitted ? "yes" : "no";
      const due = Array.isArray(status.requirements_due) ? status.requirements_due : [];
      $("requirements-due").textContent = due.length ? due.join(", ") : "nothing";
      const ready = status.charges_enabled && status.details_submitted;
      say("onboarding-summary",
          ready ? "Payments enabled: buyers can pay for your listings."
                : status.account_id ? "Onboarding is not finished: payments are not enabled yet."
                                    : "Set up payments to sell: Stripe will ask for your details.",
          ready ? "ok" : "todo");
      $("onboard").textContent = status.account_id ? "Continue onboarding" : "Set up payments";
      $("onboard").classList.toggle("hidden", ready);
      $("dashboard").disabled = !status.details_submitted;
      return status;
    } catch (error) {
      say("onboarding-message", explain(error), "error");
      return null;
    }
  }

  async function loadBalance() {
    try {
      const balance = await api("GET", "/api/connect/balance");
      const rows = [
        ...balance.available.map((m) => ({ kind: "available", ...m })),
        ...balance.pending.map((m) => ({ kind: "pending", ...m })),
      ];
      fillTable($("balance"), [["", (r) => r.kind], ["Amount", (r) => money(r.amount, r.currency)]],
                rows, "Nothing yet.");
      say("balance-message", `Payouts are made ${balance.payout_delay_days} days after a payment.`);
    } catch (error) {
      $("balance").replaceChildren();
      say("balance-message", error.code === "not_onboarded" ? "No Stripe account yet." : explain(error),
          error.code === "not_onboarded" ? "todo" : "error");
    }
  }

  async function loadPayouts() {
    try {
      const page = await api("GET", "/api/connect/payouts" + query({ limit: 20 }));
      fillTable($("payouts"), [
        ["Created", (p) => when(p.created_at)],
        ["Amount", (p) => money(p.amount, p.currency)],
        ["Status", (p) => el("span", { className: "payout-status" }, p.status)],
        ["Arrives", (p) => when(p.arrival_date)],
        ["Failure", (p) => p.failure_code || ""],
      ], page.data, "No payouts yet.");
    } catch (error) {
      say("payouts-message", explain(error), "error");
    }
  }

  async function loadPayments() {
    try {
      const page = await api("GET", "/api/payments" + query({ as: "seller", limit: 20 }));
      fillTable($("payments"), [
        ["Created", (p) => when(p.created_at)],
        ["Listing", (p) => el("span", { className: "mono" }, p.listing_id)],
        ["Amount", (p) => money(p.amount, p.currency)],
        ["Fee", (p) => money(p.application_fee, p.currency)],
        ["Refunded", (p) => money(p.amount_refunded, p.currency)],
        ["Status", (p) => el("span", { className: "payment-status" }, p.status)],
        ["Disputed", (p) => (p.is_disputed ? "yes" : "")],
      ], page.data, "No payments yet.");
    } catch (error) {
      say("payments-message", explain(error), "error");
    }
  }

  function loadAll() {
    loadStatus();
    loadBalance();
    loadPayouts();
    loadPayments();
    Inbox.load();
  }

  $("onboard").addEventListener("click", async () => {
    $("onboard").disabled = true;
    try {
      const created = await api("POST", "/api/connect/accounts", {});
      if (!/^https?:\/\//.test(created.onboarding_url)) throw new Error("The onboarding link is not a web address.");
      say("onboarding-message", "Taking you to Stripe…", "ok");
      // Stripe's hosted onboarding; it sends the browser back to the service's return endpoint.
      location.assign(created.onboarding_url);
    } catch (error) {
      $("onboard").disabled = false;
      say("onboarding-message", explain(error), "error");
    }
  });
  $("dashboard").addEventListener("click", async () => {
    try {
      const link = await api("POST", "/api/connect/dashboard-link", {});
      if (!/^https?:\/\//.test(link.url)) throw new Error("The dashboard link is not a web address.");
      const anchor = $("dashboard-link");
      anchor.href = link.url;
      anchor.classList.remove("hidden");
      say("onboarding-message", "Your dashboard link is ready (it works once, for a few minutes).", "ok");
    } catch (error) {
      say("onboarding-message", explain(error), "error");
    }
  });
  $("refresh").addEventListener("click", loadAll);

  Inbox.setUp();
  Pages.setUpSignIn(loadAll);
})();
