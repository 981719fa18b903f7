import Foundation
import Postgres
import Stripe

/// Escrow-style jobs paid in milestones (docs/payments.md): each milestone is funded by a platform
/// charge and released to the seller as a Transfer of amount − fee.
struct MilestonesResponder {
    func addRoutes(to router: inout Router) {
        router.add(
            "POST", "/api/payments/milestones/create-intent", body: .json, access: .roles([.buyer]),
            rateLimits: [.milestone],
            audit: AuditTarget("milestone.fund", entity: "milestone", idInBody: "milestone_id"),
            lane: .stripe, fund)
        router.add(
            "POST", "/api/payments/milestones/{id}/release", body: .json, access: .roles([.buyer]),
            rateLimits: [.milestone], audit: AuditTarget("milestone.release", entity: "milestone"),
            lane: .stripe, release)
        router.add("GET", "/api/listings/{id}/milestones", access: .signedIn, list)
    }

    /// Starts funding one milestone: checks and the `funding` mark in one transaction (the
    /// listing row locked, so that of two buyers funding different milestones of one job at
    /// once the second sees the first's payment; then the milestone row), then a platform
    /// PaymentIntent with automatic capture. As with
    /// purchases (IntentsResponder), a Stripe call whose outcome is unknown keeps the payment
    /// `creating` and the milestone `funding`: the buyer's retry resumes it under the same key,
    /// and the sweeper settles one the buyer never retries.
    private func fund(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let body = try JSONBody(request)
        let listingID = try body.uuid("listing_id")
        let milestoneID = try body.uuid("milestone_id")
        let configuration = context.shared.configuration
        let database = context.database

        let attempt = try database.withTransaction { connection -> IntentCreation.Attempt in
            guard let listing = try ListingRow.lock(listingID, terms: .platformCharge, on: connection) else {
                throw APIError(.listingNotFound)
            }
            guard
                let milestone = try connection.query(
                    "SELECT \(sql: MilestoneRow.columns) FROM milestones m WHERE m.id = \(milestoneID) FOR UPDATE"
                ).first.map(MilestoneRow.init(row:))
            else { throw APIError(.milestoneNotFound) }
            guard milestone.listingID == listingID else {
                throw APIError.invalidField("milestone_id", "does not belong to this listing")
            }
            let sellerID = listing.sellerID
            guard sellerID != identity.profileID else {
                throw APIError(.selfPurchase)
            }
            guard listing.kind == .job, listing.status == .active else {
                throw APIError(.listingUnavailable, message: "This listing is not a job open for funding.")
            }
            // A job has one buyer: whoever funded it first.
            if try connection.query(
                """
                SELECT 1 FROM payments WHERE listing_id = \(listingID) AND kind = 'milestone' AND buyer_id <> \(identity.profileID)
                  AND status NOT IN ('failed', 'canceled') LIMIT 1
                """
            ).first != nil {
                throw APIError(.jobHasOtherBuyer)
            }
            let status = milestone.status
            // This buyer's earlier attempt ended without an outcome, or its process died: take it over.
            if status.isFundingUnderway,
                let unfinished = try connection.query(
                    """
                    SELECT id FROM payments WHERE milestone_id = \(milestoneID) AND buyer_id = \(identity.profileID)
                      AND status = 'creating' AND stripe_payment_intent_id IS NULL
                    """
                ).first?.decode("id", as: String.self)
            {
                guard
                    let attempt = try IntentCreation.claim(
                        unfinished, lease: configuration.requestLease, on: connection)
                else {
                    throw APIError(
                        .milestoneUnavailable, message: "This milestone's funding is being created; retry shortly.",
                        headers: [("Retry-After", "1")])
                }
                return attempt
            }
            guard status.isFundable else {
                throw APIError(
                    .milestoneUnavailable,
                    message: "This milestone is \(status.rawValue), not pending.")
            }
            try listing.requireSellerReady()
            let amount = milestone.amount
            let currency = listing.currency
            try MarketplaceConfiguration.checkChargeable(amount)
            try connection.query("UPDATE milestones SET status = 'funding' WHERE id = \(milestoneID)")
            guard
                let counted = try connection.query(
                    "SELECT count(*) + 1 AS n FROM payments WHERE milestone_id = \(milestoneID)"
                ).first
            else { throw APIError.internalError }
            let attempt: Int = try counted.decode("n")
            let key = StripeKeys.fundMilestone(milestoneID.uuidString, attempt: attempt)
            let paymentID = UUID().uuidString.lowercased()
            let first = IntentCreation.firstAttempt(paymentID: paymentID, key: key, lease: configuration.requestLease)
            try connection.query(
                """
                INSERT INTO payments (id, kind, buyer_id, seller_id, listing_id, milestone_id, amount_cents, application_fee_cents,
                                      currency, status, transfer_group, description, receipt_email, \(sql: first.columns))
                VALUES (\(paymentID)::uuid, 'milestone', \(identity.profileID), \(sellerID), \(listingID),
                        \(milestoneID), \(amount), \(configuration.marketplace.fee(for: amount)), \(currency), 'creating',
                        \("listing:" + listingID.uuidString.lowercased()), \(listing.title + " — " + milestone.title),
                        (SELECT email FROM profiles WHERE id = \(identity.profileID)), \(sql: first.values))
                """)
            return first.attempt
        }
        let paymentID = attempt.paymentID
        let milestone = milestoneID.uuidString.lowercased()
        let (payment, intent) = try IntentCreation.callStripe(
            attempt, operation: "milestone.fund", context: context,
            request: request)
        try IntentCreation.attach(
            intent, of: payment, to: attempt, returning: "p.id", context: context, request: request,
            operation: "milestone.fund"
        ) { _, connection in
            try AuditLog.record(
                AuditEntry(
                    operation: "milestone.fund", entityType: "milestone", entityID: milestone,
                    oldValues: ["status": "pending"],
                    newValues: [
                        "status": "funding", "payment_id": .string(paymentID),
                        "payment_intent_id": .string(intent.id),
                    ]),
                request: request, on: connection)
        }
        WebhookInbox(connection: database, audit: AuditContext(request: request, actorRole: "stripe")).applyParked(
            objectID: intent.id)
        // Stripe returns the secret of every intent it creates; the buyer cannot pay without it.
        guard let clientSecret = intent.clientSecret else {
            throw APIError(.stripeError, message: "Stripe returned the funding's intent without its client secret.")
        }
        struct Funding: Encodable {
            let payment_id, payment_intent_id, client_secret, milestone_id, currency: String
            let amount, application_fee: Int64
        }
        return .json(
            Funding(
                payment_id: paymentID, payment_intent_id: intent.id, client_secret: clientSecret,
                milestone_id: milestone, currency: intent.currency, amount: intent.amount,
                application_fee: payment.applicationFee), status: 201)
    }

    /// The buyer who funded it releases a milestone to the seller.
    private func release(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let milestoneID = try PathParameter.uuid(request, "id")
        let released = try MilestoneRelease(context: context, audit: AuditContext(request: request))
            .release(milestoneID, requiredBuyer: identity.profileID)
        return .json(released)
    }

    /// A job's milestones with their states, for its seller, its buyer, or an admin.
    private func list(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let listingID = try PathParameter.uuid(request, "id")
        let visible = try context.database.query(
            """
            SELECT 1 FROM listings l WHERE l.id = \(listingID) AND (\(identity.isAdmin) OR l.seller_id = \(identity.profileID)
                OR EXISTS (SELECT 1 FROM payments p WHERE p.listing_id = l.id AND p.buyer_id = \(identity.profileID)))
            """
        ).first
        guard visible != nil else { throw APIError.notFound }
        let rows = try context.database.query(
            """
            SELECT \(sql: MilestoneRow.columns),
                   (SELECT p.id::text FROM payments p WHERE p.milestone_id = m.id AND p.status NOT IN ('failed', 'canceled')
                    ORDER BY p.created_at DESC LIMIT 1) AS payment_id
            FROM milestones m WHERE m.listing_id = \(listingID) ORDER BY m.position
            """
        ).rows
        struct Milestone: Encodable {
            let id, title, status: String
            let position: Int
            let amount: Int64
            @Nullable var payment_id: String?
        }
        return .json([
            "data": try rows.map {
                // payment_id is NULL while no attempt of the milestone is live.
                let milestone = try MilestoneRow(row: $0)
                return Milestone(
                    id: milestone.id.uuidString.lowercased(), title: milestone.title, status: milestone.status.rawValue,
                    position: milestone.position, amount: milestone.amount,
                    payment_id: try $0.decodeIfPresent("payment_id"))
            }
        ])
    }
}
