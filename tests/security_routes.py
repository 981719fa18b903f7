"""Every route the app registers, with the guards it must have (issue 3).

The security matrix (tests/test_guards_auth.py) runs against every row of ROUTES, and
`test_every_registered_route_is_in_the_table` fails when a family adds a route to Sources/
without adding it here. A new family extends this file in three places:

1. a `SecuredRoute` row in ROUTES (method, path template, roles, example body, state-changing,
   audit operation, rate-limit policies, owner rule);
2. if its path or body names a resource, a builder in RESOURCE_BUILDERS that makes a fresh one
   owned by a given caller (placeholders `{id}`, `{listing_id}`, … are filled from it);
3. `ok_status` / `ok_code`: what the allowed caller gets on its own fresh resource, proving the
   guards let the right caller through (the matrix's control case).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from harness.api import make_listing, make_milestones, make_profile, onboarded_seller

SOURCES = Path(__file__).resolve().parents[1] / "Sources" / "PaymentsCore"

ALL_ROLES = frozenset({"buyer", "seller", "admin"})


@dataclass(frozen=True)
class SecuredRoute:
    method: str
    path: str                           # template: `{name}` segments are filled from the resource
    auth: str                           # "token" (Bearer or cookie), "public", "loopback", "diagnostics", or a
                                        # credential of its own: "stripe-signature", "signed-state"
    roles: frozenset = frozenset()      # roles allowed, for auth == "token"
    body: dict | None = None            # example JSON body; "{name}" string values are filled from the resource
    query: str = ""                     # example query string (without "?"); "{name}" filled too
    state_changing: bool = False
    resource: str | None = None         # key of RESOURCE_BUILDERS, when the path/body names a resource
    owner_only: bool = False            # another profile's resource → 404 not_found (existence does not leak)
    audit: str | None = None            # audit operation: successes and rejected attempts are recorded
    rate_limits: tuple = ()             # policies of RateLimiter.swift
    caller_role: str | None = None      # the allowed role the matrix signs in as (default: first allowed)
    ok_status: int = 200                # the allowed caller, its own fresh resource
    ok_code: str | None = None          # error code when ok_status is an error (handler reached, guards passed)
    refusal: tuple | None = None        # (status, code) without its own credential, for non-token routes
    refusal_page: bool = False          # the refusal is nginx's static HTML page (browser-facing), not JSON

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def signed_in(self) -> bool:
        return self.auth == "token"

    @property
    def role(self) -> str:
        return self.caller_role or sorted(self.roles)[0]

    @property
    def denied_roles(self) -> list[str]:
        return sorted(ALL_ROLES - set(self.roles)) if self.signed_in else []


ROUTES: list[SecuredRoute] = [
    # ops (OpsResponder)
    SecuredRoute("GET", "/api/health", auth="public"),
    SecuredRoute("GET", "/api/ready", auth="public"),
    SecuredRoute("GET", "/metrics", auth="loopback"),  # nginx allows loopback only
    # what the browser pages need to talk to Stripe (BrowserConfigResponder): public, no secret in it
    SecuredRoute("GET", "/api/config", auth="public"),

    # account (AccountResponder)
    SecuredRoute("GET", "/api/me", auth="token", roles=ALL_ROLES, caller_role="buyer"),
    SecuredRoute("GET", "/api/notifications", auth="token", roles=ALL_ROLES, caller_role="seller",
                 query="unread=true"),
    SecuredRoute("POST", "/api/notifications/{id}/read", auth="token", roles=ALL_ROLES, caller_role="buyer",
                 body={}, state_changing=True, resource="notification", owner_only=True,
                 audit="notification.read", rate_limits=("notifications",)),
    SecuredRoute("GET", "/api/admin/audit-logs", auth="token", roles=frozenset({"admin"}),
                 query="entity_type=notification&entity_id={entity_id}", resource="audit_entity",
                 audit="audit_log.list", rate_limits=("admin-read",)),

    # intents (IntentsResponder)
    SecuredRoute("POST", "/api/payments/create-intent", auth="token", roles=frozenset({"buyer"}),
                 body={"listing_id": "{listing_id}"}, state_changing=True, resource="listing",
                 audit="payment.create", rate_limits=("intent-ip", "intent"), ok_status=201),
    SecuredRoute("GET", "/api/payments/{id}", auth="token", roles=ALL_ROLES, caller_role="buyer",
                 resource="payment", owner_only=True),
    SecuredRoute("GET", "/api/payments", auth="token", roles=ALL_ROLES, caller_role="buyer",
                 query="as=buyer&limit=5"),
    # the buyer page's catalogue (ListingsResponder): read-only
    SecuredRoute("GET", "/api/listings", auth="token", roles=ALL_ROLES, caller_role="buyer",
                 query="kind=item&limit=5"),

    # capture (CaptureResponder). The matrix's payment has already succeeded, so the owner's
    # control request reaches the handler and gets its 409 without touching Stripe.
    SecuredRoute("POST", "/api/payments/capture", auth="token", roles=frozenset({"buyer", "admin"}),
                 caller_role="buyer", body={"payment_id": "{id}"},
                 state_changing=True, resource="payment", owner_only=True, audit="payment.capture",
                 rate_limits=("capture",), ok_status=409, ok_code="payment_not_capturable"),
    SecuredRoute("POST", "/api/payments/{id}/cancel", auth="token", roles=frozenset({"buyer", "admin"}),
                 caller_role="buyer", body={}, state_changing=True, resource="payment", owner_only=True,
                 audit="payment.cancel", rate_limits=("cancel",), ok_status=409, ok_code="payment_not_cancellable"),

    # webhooks (WebhookResponder): authenticated by Stripe-Signature, not by a token.
    SecuredRoute("POST", "/api/payments/webhook", auth="stripe-signature", state_changing=True,
                 body={"id": "evt_unsigned", "object": "event", "type": "payment_intent.succeeded"},
                 refusal=(400, "signature_invalid")),
    SecuredRoute("POST", "/api/payments/webhook/connect", auth="stripe-signature", state_changing=True,
                 body={"id": "evt_unsigned", "object": "event", "type": "account.updated"},
                 refusal=(400, "signature_invalid")),

    # milestones (MilestonesResponder)
    SecuredRoute("POST", "/api/payments/milestones/create-intent", auth="token", roles=frozenset({"buyer"}),
                 body={"listing_id": "{listing_id}", "milestone_id": "{milestone_id}"}, state_changing=True,
                 resource="job", audit="milestone.fund", rate_limits=("milestone",), ok_status=201),
    # The matrix's milestone is already released (transfer on record): its buyer's release is the
    # idempotent 200 without a Stripe call; anyone else's is 404.
    SecuredRoute("POST", "/api/payments/milestones/{id}/release", auth="token", roles=frozenset({"buyer"}), body={},
                 state_changing=True, resource="released_milestone", owner_only=True, audit="milestone.release",
                 rate_limits=("milestone",)),
    SecuredRoute("GET", "/api/listings/{id}/milestones", auth="token", roles=ALL_ROLES, caller_role="seller",
                 resource="own_job", owner_only=True),

    # Connect (ConnectResponder)
    SecuredRoute("POST", "/api/connect/accounts", auth="token", roles=frozenset({"seller"}), body={},
                 state_changing=True, audit="connect.account", rate_limits=("connect",), ok_status=201),
    SecuredRoute("GET", "/api/connect/status", auth="token", roles=frozenset({"seller"})),
    SecuredRoute("POST", "/api/connect/dashboard-link", auth="token", roles=frozenset({"seller"}), body={},
                 state_changing=True, resource="own_connect_account", rate_limits=("connect",)),
    SecuredRoute("GET", "/api/connect/balance", auth="token", roles=frozenset({"seller"}),
                 resource="own_connect_account"),
    SecuredRoute("GET", "/api/connect/payouts", auth="token", roles=frozenset({"seller"}), query="limit=5"),
    # The seller's browser comes back from Stripe's hosted pages without a token: the HMAC-signed
    # `state` is the credential (outside the CSRF policy).
    # nginx turns the app's 400 into a static HTML page for the browser (status kept, no redirect).
    SecuredRoute("GET", "/api/connect/onboarding/refresh", auth="signed-state", query="state=forged",
                 refusal=(400, "onboarding_state_invalid"), refusal_page=True),
    SecuredRoute("GET", "/api/connect/onboarding/return", auth="signed-state", query="state=forged",
                 refusal=(400, "onboarding_state_invalid"), refusal_page=True),

    # disputes (DisputesResponder, AdminDisputesResponder). The matrix's dispute is an open
    # platform dispute on a succeeded payment between two other profiles.
    SecuredRoute("POST", "/api/payments/{id}/disputes", auth="token", roles=frozenset({"buyer", "seller"}),
                 caller_role="buyer", body={"reason": "not_received", "details": "security matrix"},
                 state_changing=True, resource="payment", owner_only=True, audit="dispute.open",
                 rate_limits=("dispute",), ok_status=201),
    # A seller answers its direct charges' chargebacks; the matrix's control dispute is a platform
    # dispute on the caller's own direct charge, so the handler is reached and says it is none.
    SecuredRoute("POST", "/api/disputes/{id}/evidence", auth="token", roles=frozenset({"seller"}),
                 body={"evidence": {"product_description": "security matrix"}}, state_changing=True,
                 resource="own_direct_dispute", owner_only=True, audit="dispute.evidence", rate_limits=("dispute",),
                 ok_status=409, ok_code="not_a_chargeback"),
    SecuredRoute("GET", "/api/admin/disputes", auth="token", roles=frozenset({"admin"}), query="status=open"),
    SecuredRoute("GET", "/api/admin/disputes/{id}", auth="token", roles=frozenset({"admin"}), resource="dispute"),
    SecuredRoute("POST", "/api/admin/disputes/{id}/refund", auth="token", roles=frozenset({"admin"}),
                 body={"amount": "{over_captured}", "reason": "security matrix"}, state_changing=True,
                 resource="dispute", audit="dispute.refund", rate_limits=("admin-refund",),
                 ok_status=409, ok_code="refund_exceeds_captured"),
    SecuredRoute("POST", "/api/admin/disputes/{id}/resolve", auth="token", roles=frozenset({"admin"}),
                 body={"outcome": "dismiss", "note": "security matrix"}, state_changing=True, resource="dispute",
                 audit="dispute.resolve", rate_limits=("admin-resolve",)),
    SecuredRoute("POST", "/api/admin/disputes/{id}/evidence", auth="token", roles=frozenset({"admin"}),
                 body={"evidence": {"product_description": "security matrix"}}, state_changing=True,
                 resource="dispute", audit="dispute.evidence", rate_limits=("admin-evidence",),
                 ok_status=409, ok_code="not_a_chargeback"),

    # the admin's money tools (AdminPaymentsResponder, AdminWebhookEventsResponder). The matrix's
    # payment has succeeded; the admin's control refund asks for more than was captured, so it
    # reaches the handler and gets its 422 without touching Stripe.
    SecuredRoute("GET", "/api/admin/payments", auth="token", roles=frozenset({"admin"}), query="status=succeeded&limit=5",
                 audit="payment.search", rate_limits=("admin-read",)),
    SecuredRoute("POST", "/api/admin/payments/{id}/refund", auth="token", roles=frozenset({"admin"}),
                 body={"amount": "{over_captured}", "reason": "security matrix"}, state_changing=True,
                 resource="refundable_payment", audit="payment.refund", rate_limits=("admin-refund",),
                 ok_status=409, ok_code="refund_exceeds_captured"),
    SecuredRoute("GET", "/api/admin/revenue", auth="token", roles=frozenset({"admin"}),
                 audit="revenue.report", rate_limits=("admin-read",)),
    SecuredRoute("GET", "/api/admin/webhook-events", auth="token", roles=frozenset({"admin"}), query="status=dead",
                 audit="webhook_event.list", rate_limits=("admin-read",)),
    SecuredRoute("POST", "/api/admin/webhook-events/{id}/replay", auth="token", roles=frozenset({"admin"}), body={},
                 state_changing=True, resource="stored_event", audit="webhook_event.replay",
                 rate_limits=("admin-replay",)),
    # the admin's view of notification deliveries (AdminNotificationsResponder): the dead ones,
    # and retrying one (the matrix's delivery is dead, so the admin's control retry succeeds).
    SecuredRoute("GET", "/api/admin/notifications", auth="token", roles=frozenset({"admin"}), query="state=dead",
                 audit="notification_delivery.list", rate_limits=("admin-read",)),
    SecuredRoute("POST", "/api/admin/notifications/{id}/retry", auth="token", roles=frozenset({"admin"}), body={},
                 state_changing=True, resource="dead_delivery", audit="notification_delivery.retry",
                 rate_limits=("admin-replay",)),

    # test-only diagnostics (DIAGNOSTICS_ENABLED=1 in the harness; never in production)
    SecuredRoute("POST", "/api/_diag/echo", auth="diagnostics", body={}),
    SecuredRoute("POST", "/api/_diag/json", auth="diagnostics", body={}),
    SecuredRoute("GET", "/api/_diag/sleep", auth="diagnostics", query="ms=0"),
    SecuredRoute("POST", "/api/_diag/stripe", auth="diagnostics", body={}),
]

TOKEN_ROUTES = [r for r in ROUTES if r.signed_in]
OWNER_ROUTES = [r for r in TOKEN_ROUTES if r.owner_only]
ROLE_RESTRICTED_ROUTES = [r for r in TOKEN_ROUTES if r.denied_roles]
STATE_CHANGING_TOKEN_ROUTES = [r for r in TOKEN_ROUTES if r.state_changing]


def registered_routes() -> set[tuple[str, str]]:
    """(method, pattern) of every `router.add` of the responders that Application.swift wires
    (a responder file that exists but is not wired yet registers nothing)."""
    wired = set(re.findall(r"(\w+Responder)\(\)\.addRoutes", (SOURCES / "Server" / "Application.swift").read_text()))
    pattern = re.compile(r'router\.add\(\s*"([A-Z]+)"\s*,\s*"([^"]+)"')
    # The webhook routes are spelled once, as `WebhookEndpoint.<case>.path` (Domain/Webhooks).
    symbolic = re.compile(r'router\.add\(\s*"([A-Z]+)"\s*,\s*WebhookEndpoint\.(\w+)\.path')
    endpoint_paths = dict(re.findall(r'case \.(\w+): return "(/[^"]+)"',
                                     (SOURCES / "Domain" / "Webhooks" / "WebhookEndpoint.swift").read_text()))
    found = set()
    for source in SOURCES.rglob("*.swift"):
        text = source.read_text()
        declared = set(re.findall(r"struct (\w+Responder)\b", text))
        if declared & wired:
            found.update(pattern.findall(text))
            found.update((method, endpoint_paths[case]) for method, case in symbolic.findall(text))
    return found


# Resources -------------------------------------------------------------------------------------
# Each builder makes a fresh resource owned by `caller` and returns the placeholder values.

def _notification(stack, db, caller):
    notification_id = db.execute(
        "INSERT INTO notifications (profile_id, kind, payload) VALUES (%s, 'security_matrix', %s) RETURNING id::text",
        (caller["id"], json.dumps({"marker": uuid.uuid4().hex})),
    ).fetchone()[0]
    return {"id": notification_id}


def _listing(stack, db, caller):
    """An active listing of an onboarded seller: a request that got through would really
    reserve it and create a PaymentIntent, so the fingerprint would see it."""
    seller = onboarded_seller(stack, db)
    return {"listing_id": make_listing(db, seller, price=4200), "seller": seller}


def insert_payment(db, buyer, seller, *, status="succeeded", amount=4200):
    """A purchase row for `buyer` (status `succeeded` by default: neither capturable nor
    cancellable, so an allowed caller's request changes nothing and calls no Stripe)."""
    listing_id = make_listing(db, seller, price=amount)
    received = amount if status == "succeeded" else 0
    return db.execute(
        "INSERT INTO payments (kind, buyer_id, seller_id, listing_id, amount_cents, application_fee_cents, currency,"
        " status, amount_received, stripe_payment_intent_id, transfer_group)"
        " VALUES ('purchase', %s, %s, %s, %s, %s, 'usd', %s, %s, %s, %s) RETURNING id::text",
        (buyer["id"], seller["id"], listing_id, amount, amount // 10, status, received,
         f"pi_matrix_{uuid.uuid4().hex[:16]}", f"listing:{listing_id}"),
    ).fetchone()[0]


def _payment(stack, db, caller):
    if caller["role"] == "buyer":
        buyer, seller = caller, make_profile(db, "seller")
    elif caller["role"] == "seller":
        buyer, seller = make_profile(db, "buyer"), caller
    else:  # an admin sees every payment; the payment belongs to others
        buyer, seller = make_profile(db, "buyer"), make_profile(db, "seller")
    return {"id": insert_payment(db, buyer, seller), "buyer": buyer, "seller": seller}


def _job(stack, db, caller):
    """An active job of an onboarded seller with two pending milestones."""
    seller = onboarded_seller(stack, db)
    listing_id = make_listing(db, seller, price=6000, kind="job")
    milestones = make_milestones(db, listing_id, [2000, 4000])
    return {"listing_id": listing_id, "milestone_id": milestones[0], "seller": seller}


def _own_job(stack, db, caller):
    """A job the caller may see: its own (seller), one it funded (buyer), any (admin)."""
    seller = caller if caller["role"] == "seller" else make_profile(db, "seller")
    listing_id = make_listing(db, seller, price=6000, kind="job")
    make_milestones(db, listing_id, [6000])
    return {"id": listing_id}


def _released_milestone(stack, db, caller):
    """A milestone the caller (its buyer) funded and already released: the transfer is on record."""
    account = f"acct_matrix{uuid.uuid4().hex[:12]}"
    seller = make_profile(db, "seller", stripe_account=account, charges_enabled=True)
    listing_id = make_listing(db, seller, price=3000, kind="job")
    milestone_id = make_milestones(db, listing_id, [3000])[0]
    db.execute("UPDATE milestones SET status = 'released' WHERE id = %s", (milestone_id,))
    payment_id = db.execute(
        "INSERT INTO payments (kind, buyer_id, seller_id, listing_id, milestone_id, amount_cents, application_fee_cents,"
        " currency, status, amount_received, stripe_payment_intent_id, stripe_charge_id, transfer_group)"
        " VALUES ('milestone', %s, %s, %s, %s, 3000, 300, 'usd', 'succeeded', 3000, %s, %s, %s) RETURNING id::text",
        (caller["id"], seller["id"], listing_id, milestone_id, f"pi_matrix_{uuid.uuid4().hex[:16]}",
         f"ch_matrix_{uuid.uuid4().hex[:16]}", f"listing:{listing_id}"),
    ).fetchone()[0]
    db.execute(
        "INSERT INTO transfers (payment_id, milestone_id, stripe_transfer_id, destination_account, amount_cents, currency,"
        " status) VALUES (%s, %s, %s, %s, 2700, 'usd', 'created')",
        (payment_id, milestone_id, f"tr_matrix_{uuid.uuid4().hex[:16]}", account))
    return {"id": milestone_id, "payment_id": payment_id}


def _own_connect_account(stack, db, caller):
    """Onboards the caller (a seller): its Express account exists and has finished onboarding."""
    account = stack.stripe_api("POST", "/v1/accounts", {
        "type": "express", "country": "US",
        "capabilities[card_payments][requested]": "true", "capabilities[transfers][requested]": "true"})["id"]
    stack.stripe_control("POST", f"/_control/accounts/{account}/complete_onboarding")
    db.execute("UPDATE profiles SET stripe_account_id = %s, charges_enabled = true, payouts_enabled = true,"
               " details_submitted = true WHERE id = %s", (account, caller["id"]))
    return {"account": account}


def _dispute(stack, db, caller):
    """An open platform dispute on a succeeded payment between two fresh profiles."""
    buyer, seller = make_profile(db, "buyer"), make_profile(db, "seller")
    payment_id = insert_payment(db, buyer, seller, amount=4200)
    dispute_id = db.execute(
        "INSERT INTO disputes (payment_id, kind, status, opened_by, reason, details)"
        " VALUES (%s, 'platform', 'open', %s, 'not_received', 'security matrix') RETURNING id::text",
        (payment_id, buyer["id"])).fetchone()[0]
    db.execute("UPDATE payments SET is_disputed = true WHERE id = %s", (payment_id,))
    return {"id": dispute_id, "payment_id": payment_id, "over_captured": 4201}


def _own_direct_dispute(stack, db, caller):
    """An open platform dispute on a direct charge the caller (its seller) was paid."""
    buyer, account = make_profile(db, "buyer"), f"acct_matrix{uuid.uuid4().hex[:12]}"
    payment_id = insert_payment(db, buyer, caller, amount=4200)
    db.execute("UPDATE payments SET charge_model = 'direct', stripe_account = %s WHERE id = %s", (account, payment_id))
    dispute_id = db.execute(
        "INSERT INTO disputes (payment_id, kind, status, opened_by, reason, details)"
        " VALUES (%s, 'platform', 'open', %s, 'not_received', 'security matrix') RETURNING id::text",
        (payment_id, buyer["id"])).fetchone()[0]
    return {"id": dispute_id, "payment_id": payment_id}


def _refundable_payment(stack, db, caller):
    """A succeeded purchase between two fresh profiles (4 200 captured)."""
    payment_id = insert_payment(db, make_profile(db, "buyer"), make_profile(db, "seller"), amount=4200)
    return {"id": payment_id, "over_captured": 4201}


def _stored_event(stack, db, caller):
    """A stored event of a type the app does not act on: replaying it marks it `ignored`."""
    event_id = f"evt_matrix{uuid.uuid4().hex[:16]}"
    payload = json.dumps({"id": event_id, "object": "event", "api_version": "2024-06-20", "created": 1765000000,
                          "livemode": False, "type": "customer.created",
                          "data": {"object": {"id": "cus_matrix", "object": "customer"}}})
    db.execute("INSERT INTO webhook_events (id, endpoint, type, created, payload, status)"
               " VALUES (%s, 'platform', 'customer.created', 1765000000, %s, 'received')",
               (event_id, payload.encode()))
    return {"id": event_id}


def _dead_delivery(stack, db, caller):
    """A webhook delivery of a fresh buyer's notification that the sweeper gave up on."""
    buyer = make_profile(db, "buyer")
    notification = db.execute(
        "INSERT INTO notifications (profile_id, kind, payload) VALUES (%s, 'payment_succeeded', %s) RETURNING id",
        (buyer["id"], json.dumps({"payment_id": str(uuid.uuid4())}))).fetchone()[0]
    delivery = db.execute(
        "INSERT INTO notification_deliveries (notification_id, channel, state, attempts, last_error)"
        " VALUES (%s, 'webhook', 'dead', 10, 'the receiver answered HTTP 503') RETURNING id",
        (notification,)).fetchone()[0]
    return {"id": str(delivery)}


def _audit_entity(stack, db, caller):
    return {"entity_id": str(uuid.uuid4())}


RESOURCE_BUILDERS = {
    "notification": _notification,
    "dead_delivery": _dead_delivery,
    "listing": _listing,
    "payment": _payment,
    "audit_entity": _audit_entity,
    "job": _job,
    "own_job": _own_job,
    "released_milestone": _released_milestone,
    "own_connect_account": _own_connect_account,
    "dispute": _dispute,
    "own_direct_dispute": _own_direct_dispute,
    "refundable_payment": _refundable_payment,
    "stored_event": _stored_event,
}


@dataclass
class Prepared:
    route: SecuredRoute
    caller: dict                      # make_profile() of the role the route allows
    values: dict = field(default_factory=dict)

    def _fill(self, text: str) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: str(self.values[m.group(1)]), text)

    @property
    def path(self) -> str:
        path = self._fill(self.route.path)
        return f"{path}?{self._fill(self.route.query)}" if self.route.query else path

    @property
    def body(self) -> dict | None:
        if self.route.body is None:
            return None
        return {k: self._value(v) for k, v in self.route.body.items()}

    def _value(self, value):
        whole = re.fullmatch(r"\{(\w+)\}", value) if isinstance(value, str) else None
        if whole:
            return self.values[whole.group(1)]  # keeps its type (an amount stays a number)
        return self._fill(value) if isinstance(value, str) else value


def prepare(route: SecuredRoute, stack, db, *, role: str | None = None) -> Prepared:
    """A fresh caller of `role` (default: the route's allowed role) and a fresh resource it owns."""
    caller = make_profile(db, role or route.role)
    values = RESOURCE_BUILDERS[route.resource](stack, db, caller) if route.resource else {}
    settle(stack)
    return Prepared(route, caller, values)


def settle(stack, timeout: float = 15.0):
    """Waits until the fake Stripe has delivered the webhooks it queued (onboarding a seller or
    creating an intent sends events that update rows asynchronously), so that a fingerprint taken
    next changes only because of the request under test."""
    stack.stripe.dispatcher.wait_idle(timeout)


def send(stack, prepared: Prepared, headers: dict | None = None, *, path: str | None = None, **kwargs):
    """The route's request with `headers` (no credential unless given)."""
    body = prepared.body
    if body is not None and "data" not in kwargs and "json" not in kwargs:
        kwargs["json"] = body
    return stack.request(prepared.route.method, path or prepared.path, headers=headers or {}, **kwargs)


# Shared helpers of the guard tests ------------------------------------------------------------

def audit_rows(db, request_id: str) -> list[dict]:
    """The audit rows one request wrote."""
    cursor = db.execute(
        "SELECT operation, entity_type, entity_id, actor_profile_id::text AS actor_profile_id, actor_role, request_id,"
        " ip, user_agent, old_values, new_values, success, error_code, metadata"
        " FROM payment_audit_logs WHERE request_id = %s ORDER BY id", (request_id,))
    names = [c.name for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
