// The buyer page (docs/pages.md): listings, "buy" (create-intent), the card form that confirms
// the intent in the browser — at the fake Stripe through its API with the publishable key and
// the client secret, or with Stripe.js and the Payment Element when the service uses Stripe —
// then the live payment status, "confirm delivery" (capture), "open a dispute" and the
// notifications inbox. Everything goes through the public API (and Stripe's browser side).
"use strict";

(() => {
  const { api, el, $, money, when, say, explain, fillTable, onSubmit, query } = Pages;
  const POLL_MS = 1000;
  const FINAL = new Set(["succeeded", "canceled", "failed", "refunded"]);
  let config = null;
  let current = null; // {payment_id, payment_intent_id, client_secret, stripe_account} of the checkout shown
  let shownPayment = null;
  let pollTimer = null;
  let stripe = null;
  let elements = null;

  // --- listings and buying ----------------------------------------------------------------
  async function loadListings() {
    try {
      const page = await api("GET", "/api/listings" + query({ kind: "item", limit: 50 }));
      fillTable($("listings"), [
        ["Title", (l) => l.title],
        ["Price", (l) => money(l.price, l.currency)],
        ["Seller", (l) => (l.seller_can_be_paid ? "ready" : el("span", { className: "todo" }, "not onboarded yet"))],
        ["", (l) => el("button", { type: "button", className: "buy", disabled: !l.seller_can_be_paid,
                                   dataset: { listing: l.id } }, "Buy")],
      ], page.data, "No listings for sale.");
    } catch (error) {
      say("listings-message", explain(error), "error");
    }
  }

  async function buy(listingId) {
    say("listings-message", "Reserving the listing…");
    const created = await api("POST", "/api/payments/create-intent", { listing_id: listingId });
    say("listings-message", `Reserved for you until ${when(created.reserved_until) || "—"}.`, "ok");
    showCheckout(created);
    await showPayment(created.payment_id);
    loadListings();
  }

  // --- the card form ----------------------------------------------------------------------
  function showCheckout(created) {
    current = created;
    $("checkout").classList.remove("hidden");
    const summary = $("checkout-summary");
    summary.replaceChildren(
      el("dt", {}, "Amount"), el("dd", { id: "checkout-amount" }, money(created.amount, created.currency)),
      el("dt", {}, "Platform fee"), el("dd", {}, money(created.application_fee, created.currency)),
      el("dt", {}, "Intent"), el("dd", { className: "mono" }, created.payment_intent_id));
    say("card-message", "");
    const stripeConfig = (config && config.stripe) || {};
    $("card-form-fake").classList.add("hidden");
    $("card-form-stripe").classList.add("hidden");
    if (!stripeConfig.publishable_key) {
      say("card-message", "Card payments are not configured (STRIPE_PUBLISHABLE_KEY is unset).", "error");
    } else if (stripeConfig.backend === "fake") {
      $("card-form-fake").classList.remove("hidden");
    } else {
      mountPaymentElement(created).catch((error) => say("card-message", explain(error), "error"));
    }
  }

  /** With the fake: what Stripe.js does, by hand — confirm with the publishable key and the
   * client secret as form fields (no Authorization header, so no CORS preflight); a direct
   * charge's intent lives on the seller's account, which Stripe.js names as `_stripe_account`. */
  async function confirmAtFake(paymentMethod) {
    const { publishable_key: key, fake_api_base: base } = config.stripe;
    const form = new URLSearchParams({ key, client_secret: current.client_secret, payment_method: paymentMethod });
    if (current.stripe_account) form.set("_stripe_account", current.stripe_account);
    const response = await fetch(`${base}/v1/payment_intents/${encodeURIComponent(current.payment_intent_id)}/confirm`, {
      method: "POST", credentials: "omit", cache: "no-store", body: form,
    });
    const intent = await response.json();
    if (!response.ok) {
      const error = intent.error || {};
      throw new Error(`The card was refused: ${error.message || response.status}` +
                      (error.decline_code ? ` (${error.decline_code})` : ""));
    }
    return intent;
  }

  function loadStripeJs() {
    if (window.Stripe) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const script = el("script", { src: "https://js.stripe.com/v3/" });
      script.addEventListener("load", resolve);
      script.addEventListener("error", () => reject(new Error("Stripe.js did not load")));
      document.head.append(script);
    });
  }

  /** With Stripe: Stripe.js and the Payment Element, initialised from GET /api/config — and,
   * for a direct charge, with the seller's account that owns the intent (`stripe_account`). */
  async function mountPaymentElement(created) {
    await loadStripeJs();
    stripe = window.Stripe(config.stripe.publishable_key,
                           created.stripe_account ? { stripeAccount: created.stripe_account } : undefined);
    elements = stripe.elements({ clientSecret: created.client_secret });
    elements.create("payment").mount("#payment-element");
    $("card-form-stripe").classList.remove("hidden");
  }

  async function confirmWithStripe() {
    const result = await stripe.confirmPayment({ elements, redirect: "if_required",
                                                 confirmParams: { return_url: location.href } });
    if (result.error) throw new Error(result.error.message);
    return result.paymentIntent;
  }

  // --- the payment's live status ----------------------------------------------------------
  async function showPayment(paymentId) {
    shownPayment = paymentId;
    $("payment-section").classList.remove("hidden");
    await refreshPayment();
  }

  async function refreshPayment() {
    clearTimeout(pollTimer);
    if (!shownPayment) return;
    const id = shownPayment;
    try {
      const payment = await api("GET", `/api/payments/${encodeURIComponent(id)}`);
      if (id !== shownPayment) return;
      renderPayment(payment);
      // Every second until the payment settles; while a dispute is open, every five (a refund
      // or the dispute's end shows without a reload).
      if (!FINAL.has(payment.status)) pollTimer = setTimeout(refreshPayment, POLL_MS);
      else if (payment.is_disputed) pollTimer = setTimeout(refreshPayment, POLL_MS * 5);
    } catch (error) {
      say("payment-message", explain(error), "error");
      pollTimer = setTimeout(refreshPayment, POLL_MS * 3);
    }
  }

  function renderPayment(payment) {
    $("payment-id").textContent = payment.id;
    const status = $("payment-status");
    status.textContent = payment.status;
    status.className = "status " + (payment.status === "succeeded" ? "ok" : FINAL.has(payment.status) ? "error" : "todo");
    $("payment-amount").textContent = money(payment.amount, payment.currency);
    $("payment-refunded").textContent = money(payment.amount_refunded, payment.currency);
    $("payment-disputed").textContent = payment.is_disputed ? "yes: an open dispute" : "no";
    if (current && current.payment_id === payment.id && ["failed", "canceled"].includes(payment.status)) {
      // A declined card fails the payment and frees the listing: the buyer starts again.
      current = null;
      $("card-form-fake").classList.add("hidden");
      $("card-form-stripe").classList.add("hidden");
      say("card-message", `This payment ${payment.status}: choose Buy again to try another card.`, "error");
      loadListings();
    }
    if (payment.status !== "requires_payment_method" && payment.status !== "creating" && current &&
        current.payment_id === payment.id) {
      $("card-form-fake").classList.add("hidden");
      $("card-form-stripe").classList.add("hidden");
    }
    $("capture").disabled = !(payment.status === "requires_capture" && !payment.is_disputed);
    $("open-dispute").disabled =
      payment.is_disputed || !["requires_capture", "succeeded", "processing"].includes(payment.status);
  }

  // --- my payments ----------------------------------------------------------------------
  async function loadMyPayments() {
    try {
      const page = await api("GET", "/api/payments" + query({ as: "buyer", limit: 20 }));
      fillTable($("my-payments"), [
        ["Created", (p) => when(p.created_at)],
        ["Amount", (p) => money(p.amount, p.currency)],
        ["Status", (p) => p.status],
        ["", (p) => el("button", { type: "button", className: "show-payment", dataset: { id: p.id } }, "Show")],
      ], page.data, "No payments yet.");
    } catch (error) {
      say("payment-message", explain(error), "error");
    }
  }

  // --- wiring ----------------------------------------------------------------------------
  $("listings").addEventListener("click", (event) => {
    const button = event.target.closest("button.buy");
    if (!button) return;
    button.disabled = true;
    buy(button.dataset.listing).catch((error) => {
      button.disabled = false;
      say("listings-message", explain(error), "error");
    });
  });
  $("refresh-listings").addEventListener("click", loadListings);
  onSubmit("buy-by-id", "listings-message", (values) => buy(values.listing_id || ""));

  onSubmit("card-form-fake", "card-message", async (values) => {
    say("card-message", "Confirming the card…");
    const intent = await confirmAtFake(values.payment_method);
    say("card-message", `Card accepted: the intent is ${intent.status}.`, "ok");
    await refreshPayment();
    loadMyPayments();
  });
  onSubmit("card-form-stripe", "card-message", async () => {
    say("card-message", "Confirming the card…");
    const intent = await confirmWithStripe();
    say("card-message", `Card accepted: the intent is ${intent ? intent.status : "being processed"}.`, "ok");
    await refreshPayment();
    loadMyPayments();
  });

  $("capture").addEventListener("click", async () => {
    $("capture").disabled = true;
    try {
      const captured = await api("POST", "/api/payments/capture", { payment_id: shownPayment });
      say("payment-message", `Delivery confirmed: the payment is ${captured.status}.`, "ok");
      await refreshPayment();
      loadMyPayments();
      Inbox.load();
    } catch (error) {
      say("payment-message", explain(error), "error");
      refreshPayment();
    }
  });
  onSubmit("dispute-form", "payment-message", async (values) => {
    const dispute = await api("POST", `/api/payments/${encodeURIComponent(shownPayment)}/disputes`,
                              { reason: values.reason, details: values.details });
    say("payment-message", `Dispute opened (${dispute.status}); an admin will look at it.`, "ok");
    await refreshPayment();
  });
  $("my-payments").addEventListener("click", (event) => {
    const button = event.target.closest("button.show-payment");
    if (button) showPayment(button.dataset.id);
  });

  Inbox.setUp();
  Pages.setUpSignIn(async () => {
    try {
      config = await api("GET", "/api/config");
    } catch (error) {
      say("card-message", "No configuration: " + explain(error), "error");
    }
    loadListings();
    loadMyPayments();
    Inbox.load();
  });
})();
