import Foundation
import Postgres
import Stripe

/// The purchase flow's start and the payment read routes (docs/payments.md):
/// `POST /api/payments/create-intent`, `GET /api/payments/{id}`, `GET /api/payments`.
struct IntentsResponder {
    func addRoutes(to router: inout Router) {
        router.add(
            "POST", "/api/payments/create-intent", body: .json, access: .roles([.buyer]),
            rateLimits: [.intentIP, .intent],
            audit: AuditTarget("payment.create", entity: "listing", idInBody: "listing_id"),
            lane: .stripe, createIntent)
        router.add("GET", "/api/payments/{id}", access: .signedIn, show)
        router.add("GET", "/api/payments", access: .signedIn, list)
    }

    /// Reserves the listing and inserts the payment (one transaction, listing row locked) under
    /// the configured charge model (`CHARGE_MODEL`, fixed on the row), creates the PaymentIntent at
    /// Stripe — a destination charge, or a direct charge on the seller's account — then stores its
    /// id. No database connection
    /// is held while Stripe is called.
    ///
    /// When Stripe refuses, the payment fails and the reservation is released. When the outcome
    /// is unknown (a lost response, a timeout) the intent may exist: the payment stays `creating`
    /// with the listing held, and the buyer's retry — with or without the same Idempotency-Key —
    /// resumes it with the same Stripe key, which returns that intent. A retry the buyer never
    /// makes is finished by the sweeper, which cancels the intent once the reservation expires.
    private func createIntent(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let listingID = try JSONBody(request).uuid("listing_id")
        let configuration = context.shared.configuration
        let database = context.database

        let reservation = try database.withTransaction { connection in
            try reserve(
                listingID, for: identity, marketplace: configuration.marketplace, lease: configuration.requestLease,
                request: request, on: connection)
        }
        let attempt: IntentCreation.Attempt
        switch reservation {
        case .existing(let row): return try .json(CreatedIntent(row: row, status: nil), status: 200)
        case .attempt(let claimed): attempt = claimed
        }
        let paymentID = attempt.paymentID
        let (payment, intent) = try IntentCreation.callStripe(
            attempt, operation: "payment.create", context: context,
            request: request)
        let returning: SQLQuery = """
            \(sql: PaymentRecord.columns), p.client_secret, iso8601((SELECT reserved_until FROM listings
            WHERE id = p.listing_id)) AS reserved_until
            """
        let stored = try IntentCreation.attach(
            intent, of: payment, to: attempt, returning: returning, context: context, request: request,
            operation: "payment.create"
        ) { row, connection in
            try AuditLog.record(
                AuditEntry(
                    operation: "payment.create", entityType: "payment", entityID: paymentID,
                    newValues: [
                        "status": .string(try row.decode("status")), "payment_intent_id": .string(intent.id),
                        "amount": .int(intent.amount),
                    ]), request: request, on: connection)
            return row
        }
        // Events that raced this create (parked) apply now, each in its own transaction; the
        // answer shows their effect when it can be read (the intent is stored either way).
        WebhookInbox(connection: database, audit: AuditContext(request: request, actorRole: "stripe"))
            .applyParked(objectID: intent.id)
        let current = try? database.query("SELECT p.status FROM payments p WHERE p.id = \(paymentID)::uuid").first?
            .decode("status", as: String.self)
        return try .json(CreatedIntent(row: stored, status: current), status: 201)
    }

    private enum Reservation {
        /// This request runs the payment's create attempt (a new payment, or one to resume).
        case attempt(IntentCreation.Attempt)
        /// The buyer's payment for this listing already has its intent.
        case existing(Row)
    }

    private func reserve(
        _ listingID: UUID, for identity: Identity, marketplace: MarketplaceConfiguration, lease: Duration,
        request: Request, on connection: Connection
    ) throws -> Reservation {
        let model = marketplace.chargeModel
        guard let listing = try ListingRow.lock(listingID, terms: marketplace.purchaseTerms, on: connection) else {
            throw APIError(.listingNotFound)
        }
        guard listing.sellerID != identity.profileID else {
            throw APIError(.selfPurchase, message: "You cannot buy your own listing.")
        }
        guard listing.kind == .item else {
            throw APIError(.listingUnavailable, message: "This listing is paid in milestones.")
        }
        if listing.status == .paymentPending, listing.reservedBy == identity.profileID, listing.isHoldActive {
            guard
                let existing = try connection.query(
                    """
                    SELECT \(sql: PaymentRecord.columns), p.client_secret, iso8601(l.reserved_until) AS reserved_until
                    FROM payments p JOIN listings l ON l.id = p.listing_id
                    WHERE p.listing_id = \(listingID) AND p.buyer_id = \(identity.profileID)
                      AND p.status NOT IN ('failed', 'canceled', 'succeeded', 'refunded')
                    ORDER BY p.created_at DESC LIMIT 1
                    """
                ).first
            else {
                throw APIError(.listingUnavailable)
            }
            let payment = try PaymentRecord(row: existing)
            if payment.payment_intent_id != nil { return .existing(existing) }
            let paymentID = payment.id
            // An earlier attempt ended without an outcome, or its process died: take it over.
            guard let attempt = try IntentCreation.claim(paymentID, lease: lease, on: connection) else {
                throw APIError(
                    .paymentInProgress, message: "Your payment for this listing is being created; retry shortly.",
                    headers: [("Retry-After", "1")])
            }
            return .attempt(attempt)
        }
        guard listing.status == .active else {
            throw APIError(.listingUnavailable)
        }
        try listing.requireSellerReady()
        // Ready implies an account; a direct charge is made on it, and its events must name it.
        let account = model == .direct ? listing.sellerAccount : nil
        let amount = listing.priceCents
        try MarketplaceConfiguration.checkChargeable(amount)
        let fee = marketplace.fee(for: amount)
        try connection.query(
            """
            UPDATE listings SET status = 'payment_pending', reserved_by = \(identity.profileID),
                   reserved_until = now() + make_interval(mins => \(marketplace.reservationMinutes))
            WHERE id = \(listingID)
            """)
        let paymentID = UUID().uuidString.lowercased()
        let first = IntentCreation.firstAttempt(paymentID: paymentID, key: StripeKeys.create(paymentID), lease: lease)
        try connection.query(
            """
            INSERT INTO payments (id, kind, buyer_id, seller_id, listing_id, amount_cents, application_fee_cents, currency,
                                  status, transfer_group, description, receipt_email, charge_model, stripe_account,
                                  on_behalf_of, \(sql: first.columns))
            VALUES (\(paymentID)::uuid, 'purchase', \(identity.profileID), \(listing.sellerID), \(listingID), \(amount),
                    \(fee), \(listing.currency), 'creating', \("listing:" + listingID.uuidString.lowercased()),
                    \(listing.title), (SELECT email FROM profiles WHERE id = \(identity.profileID)), \(model.rawValue),
                    \(account), \(model == .destination && marketplace.destinationOnBehalfOf), \(sql: first.values))
            """)
        return .attempt(first.attempt)
    }

    private func show(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let id = try PathParameter.uuid(request, "id")
        guard let payment = try PaymentRecord.visible(id, to: identity, on: context.database) else {
            throw APIError.notFound
        }
        return .json(
            payment.viewed(by: identity, payoutDelayDays: context.shared.configuration.marketplace.payoutDelayDays))
    }

    /// Keyset pagination, newest first: `cursor` is opaque (base64url of created_at and id).
    private func list(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        // A profile that only sells lists its sales; one that buys (or does both) its purchases.
        let role = request.query["as"] ?? (identity.roles.contains(.buyer) ? "buyer" : "seller")
        guard role == "buyer" || role == "seller" else { throw APIError.invalidField("as", "must be buyer or seller") }
        let limit = try QueryParameter.limit(request)
        let cursor = try PageCursor.from(request)
        let column: SQLQuery = role == "buyer" ? "p.buyer_id" : "p.seller_id"
        let rows = try context.database.query(
            """
            SELECT \(sql: PaymentRecord.columns), \(sql: PageCursor.sortKey("p")) AS sort_key FROM payments p
            WHERE \(sql: column) = \(identity.profileID) AND \(sql: PageCursor.after(cursor, alias: "p"))
            ORDER BY p.created_at DESC, p.id DESC LIMIT \(limit + 1)
            """
        ).rows
        let (page, next) = try PageCursor.page(rows, limit: limit)
        let delay = context.shared.configuration.marketplace.payoutDelayDays
        let records = try page.map { try PaymentRecord(row: $0).viewed(by: identity, payoutDelayDays: delay) }
        return .json(Page(data: records, next_cursor: next))
    }
}

/// The create-intent answer: what the buyer's browser needs to confirm the card. A direct
/// charge's intent lives on the seller's account: Stripe.js must be initialised with
/// `stripeAccount` = `stripe_account` to use its client secret (null for a destination charge).
private struct CreatedIntent: Encodable {
    let payment_id: String
    let payment_intent_id: String
    let client_secret: String
    let charge_model: ChargeModel
    @Nullable var stripe_account: String?
    let amount: Int64
    let application_fee: Int64
    let currency: String
    let status: String
    @Nullable var reserved_until: String?

    init(row: Row, status current: String?) throws {
        // Both are stored together when the intent is attached, before this answer is made.
        payment_id = try row.decode("id")
        payment_intent_id = try row.decode("stripe_payment_intent_id")
        client_secret = try row.decode("client_secret")
        charge_model = try row.decode("charge_model")
        stripe_account = try row.decodeIfPresent("stripe_account")
        amount = try row.decode("amount_cents")
        application_fee = try row.decode("application_fee_cents")
        currency = try row.decode("currency")
        status = try current ?? row.decode("status")
        reserved_until = try row.decodeIfPresent("reserved_until")
    }
}
