import Foundation
import Postgres
import Stripe

/// Capturing and cancelling purchases: `POST /api/payments/capture`, `POST /api/payments/{id}/cancel`.
struct CaptureResponder {
    func addRoutes(to router: inout Router) {
        router.add("POST", "/api/payments/capture", body: .json, access: .roles([.buyer, .admin]), rateLimits: [.capture],
                   audit: AuditTarget("payment.capture", entity: "payment", idInBody: "payment_id"), lane: .stripe, capture)
        router.add("POST", "/api/payments/{id}/cancel", body: .json, access: .roles([.buyer, .admin]), rateLimits: [.cancel],
                   audit: AuditTarget("payment.cancel", entity: "payment"), lane: .stripe, cancel)
    }

    /// Captures an authorised purchase: the buyer confirming delivery (always the full
    /// authorised amount), or an admin (who may capture part of it, giving a reason). Only from
    /// `requires_capture` (asking Stripe first when our row is behind a webhook), never while a
    /// dispute is open: both are checked by the claim taken before the Stripe call.
    private func capture(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let body = try JSONBody(request)
        let paymentID = try body.uuid("payment_id")
        let requested = try body.integer("amount_to_capture", in: 1...MarketplaceConfiguration.maximumChargeAmount)
        let reason = try body.optionalString("reason", maximumLength: 500, multiline: true)
        if requested != nil {
            guard identity.role == .admin else {
                throw APIError(status: 403, code: "forbidden",
                               message: "Only an admin may capture part of a payment; the buyer's capture takes the full authorised amount.")
            }
            guard reason != nil else { throw APIError.invalidField("reason", "is required for a partial capture") }
        }

        var payment = try loadOwned(paymentID, identity: identity, context: context)
        guard payment["kind"] == "purchase" else {
            throw APIError(status: 409, code: "payment_not_capturable", message: "Milestone payments are released, not captured.")
        }
        if Self.isWaitingForAuthorization(payment["status"]), let intentID = payment["stripe_payment_intent_id"] {
            payment = try refresh(payment, intent: try context.stripe.retrievePaymentIntent(intentID), context: context,
                                  request: request)
        }
        try PurchaseCapture(context: context, audit: AuditContext(request: request))
            .capture(paymentID.uuidString.lowercased(), amount: requested, reason: reason)
        guard let updated = try PaymentRecord.visible(paymentID, to: identity, on: context.database) else { throw APIError.notFound }
        return .json(PaymentRecord(row: updated))
    }

    /// Cancels a purchase before capture (its buyer, or an admin) and releases the listing.
    /// Never while a dispute is open: an admin settles a disputed payment by resolving the dispute.
    private func cancel(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let paymentID = try PathParameter.uuid(request, "id")
        let id = paymentID.uuidString.lowercased()
        _ = try loadOwned(paymentID, identity: identity, context: context)
        let cancellable = ["creating", "requires_payment_method", "requires_confirmation", "requires_action", "requires_capture"]
        guard let claim = try context.claims.claim(id, for: .cancel, from: cancellable, on: context.database) else {
            let status = try PaymentRecord.visible(paymentID, to: identity, on: context.database)?["status"]
            throw APIError(status: 409, code: "payment_not_cancellable",
                           message: "This payment can no longer be cancelled (it is \(status ?? "unknown")).")
        }
        let payment = claim.payment
        do {
            var intentID = payment["stripe_payment_intent_id"]
            if intentID == nil, payment["status"] == "creating" {
                // Its create call ended without an outcome: Stripe may hold the intent, which must
                // be cancelled too (409 while the request that creates it still runs).
                intentID = try IntentCreation.recover(id, stripe: context.stripe, on: context.database)
            }
            if let intentID {
                try context.stripe.cancelIntent(intentID, ofPayment: id, reason: .requestedByCustomer)
            }
        } catch {
            PaymentClaims.settle(claim, after: error, on: context.database)
            throw error
        }
        let updated = try context.database.withTransaction { connection -> Row in
            let changed = try connection.query("""
                UPDATE payments SET status = 'canceled', amount_capturable = 0
                WHERE id = \(paymentID) AND status = ANY(\("{" + cancellable.joined(separator: ",") + "}")::text[])
                RETURNING *
                """).first
            try PaymentClaims.settle(claim, on: connection)
            // The cancellation is this actor's action even when Stripe's webhook recorded it first.
            try AuditLog.record(AuditEntry(operation: "payment.cancel", entityType: "payment", entityID: id,
                                           oldValues: ["status": JSONValue(payment["status"])], newValues: ["status": "canceled"]),
                                request: request, on: connection)
            if let changed {
                try connection.query("SELECT payment_release_hold(p) FROM payments p WHERE p.id = \(paymentID)")
                let other = identity.profileID.uuidString.lowercased() == changed["buyer_id"] ? changed["seller_id"] : changed["buyer_id"]
                if let other {
                    try Notifier.notify([other], kind: "payment_canceled", payload: ["payment_id": .string(id)], on: connection)
                }
            }
            return try PaymentRecord.visible(paymentID, to: identity, on: connection) ?? payment
        }
        return .json(PaymentRecord(row: updated))
    }

    // MARK: Helpers

    /// The payment, if this caller may act on it: its buyer or an admin (a seller or stranger gets 404).
    private func loadOwned(_ id: UUID, identity: Identity, context: WorkerContext) throws -> Row {
        guard let row = try PaymentRecord.visible(id, to: identity, on: context.database),
              identity.role == .admin || row.uuid("buyer_id") == identity.profileID else { throw APIError.notFound }
        return row
    }

    private static func isWaitingForAuthorization(_ status: String?) -> Bool {
        ["creating", "requires_payment_method", "requires_confirmation", "requires_action", "processing"].contains(status ?? "")
    }

    /// Applies what Stripe says about the intent when our webhook has not arrived yet, audited
    /// as the caller's (every transition has an audit row, whichever path makes it).
    private func refresh(_ payment: Row, intent: PaymentIntent, context: WorkerContext, request: Request) throws -> Row {
        guard intent.status == "requires_capture", let id = payment.uuid("id") else { return payment }
        return try context.database.withTransaction { connection -> Row in
            let changed = try connection.query("""
                SELECT status FROM payment_capturable_atomic(\(intent.id), \(Int64(Date().timeIntervalSince1970)),
                                                             \(intent.amountCapturable ?? intent.amount),
                                                             to_timestamp(\((intent.created ?? 0) + 7 * 86_400)))
                """).first != nil
            if changed {
                try AuditLog.record(AuditEntry(operation: "payment.authorised", entityType: "payment",
                                               entityID: id.uuidString.lowercased(),
                                               oldValues: ["status": JSONValue(payment["status"])],
                                               newValues: ["status": "requires_capture",
                                                           "amount_capturable": .int(intent.amountCapturable ?? intent.amount)],
                                               metadata: ["source": "stripe retrieve before capture"]),
                                    request: request, on: connection)
            }
            let identity = try request.requireIdentity()
            return try PaymentRecord.visible(id, to: identity, on: connection) ?? payment
        }
    }
}

/// Captures an authorised purchase at Stripe and applies the result: the buyer's confirmation
/// of delivery, an admin's (partial) capture, or an admin resolving a dispute in the seller's
/// favour. The payment is claimed first (status `requires_capture`, no open dispute unless the
/// resolution itself captures); the key `payment:{id}:capture:{amount}` makes repeated and
/// concurrent captures of one amount capture once.
struct PurchaseCapture {
    let context: WorkerContext
    let audit: AuditContext

    /// Captures `requested` (nil: all that is authorised). A partial capture's application fee
    /// is recomputed for the captured amount with the creation rule (`PLATFORM_FEE_BPS`, half up),
    /// never above the fee agreed at creation.
    func capture(_ paymentID: String, amount requested: Int64?, reason: String? = nil,
                 resolvingDispute: Bool = false) throws {
        let database = context.database
        let notCapturable = { (status: String?) in
            APIError(status: 409, code: "payment_not_capturable",
                     message: "Only an authorised payment can be captured (this one is \(status ?? "unknown")).")
        }
        // Checked before the claim, so that a refused request never touches another's claim.
        guard let current = try database.query("""
            SELECT status, amount_capturable FROM payments WHERE id = \(paymentID)::uuid
            """).first else { throw APIError.notFound }
        if let requested, requested > Int64(current.int("amount_capturable") ?? 0) {
            throw APIError.invalidField("amount_to_capture", "must not exceed the authorised \(current.int("amount_capturable") ?? 0)")
        }
        guard let claim = try context.claims.claim(paymentID, for: .capture, from: ["requires_capture"],
                                                   resolvingDispute: resolvingDispute, on: database) else {
            throw notCapturable(current["status"])
        }
        let payment = claim.payment
        let capturable = Int64(payment.int("amount_capturable") ?? 0)
        let agreedFee = Int64(payment.int("application_fee_cents") ?? 0)
        let amount = requested ?? capturable
        var fee: Int64?
        if let requested, requested < capturable {
            fee = min(agreedFee, context.shared.configuration.marketplace.fee(for: requested))
        }
        let intent: PaymentIntent
        do {
            guard let intentID = payment["stripe_payment_intent_id"], amount <= capturable else {
                throw notCapturable(payment["status"])
            }
            intent = try context.stripe.capturePaymentIntent(intentID, amountToCapture: requested, applicationFeeAmount: fee,
                                                             idempotencyKey: PaymentKeys.capture(paymentID, amount: amount))
        } catch {
            PaymentClaims.settle(claim, after: error, on: database)
            throw error
        }
        let received = intent.amountReceived ?? amount
        try context.database.withTransaction { connection in
            let changed = try connection.query("""
                SELECT * FROM payment_complete_atomic(\(intent.id), 0, \(received), \(intent.latestCharge?.id))
                """).first != nil
            if let fee {
                try connection.query("UPDATE payments SET application_fee_cents = \(fee) WHERE id = \(paymentID)::uuid")
            }
            try PaymentClaims.settle(claim, on: connection)
            // The capture is this actor's action even when Stripe's webhook recorded its effect first.
            var newValues: [String: JSONValue] = ["status": "succeeded", "amount_received": .int(received)]
            if let fee {
                newValues["application_fee"] = .int(fee)
                newValues["reason"] = JSONValue(reason)
            }
            try AuditLog.record(AuditEntry(operation: "payment.capture", entityType: "payment", entityID: paymentID,
                                           oldValues: ["status": "requires_capture", "amount_capturable": .int(capturable),
                                                       "application_fee": .int(agreedFee)],
                                           newValues: .object(newValues)),
                                context: audit, on: connection)
            guard changed else { return }  // the webhook already told both parties
            try Notifier.notify([payment["buyer_id"], payment["seller_id"]].compactMap { $0 }, kind: "payment_succeeded",
                                payload: ["payment_id": .string(paymentID)], on: connection)
        }
        if let charge = intent.latestCharge?.id {
            WebhookInbox(connection: context.database, audit: audit).applyParked(objectID: charge)
        }
    }
}
