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

    /// Captures an authorised purchase: the buyer confirming delivery, or an admin. Only from
    /// `requires_capture` (asking Stripe first when our row is behind a webhook), never while a
    /// dispute is open; a double click sends the same Stripe idempotency key and captures once.
    private func capture(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let body = try JSONBody(request)
        let paymentID = try body.uuid("payment_id")
        let requested = try body.integer("amount_to_capture", in: 1...Int64(Int32.max) * 1000)

        var payment = try loadOwned(paymentID, identity: identity, context: context)
        if Self.isWaitingForAuthorization(payment["status"]), let intentID = payment["stripe_payment_intent_id"] {
            payment = try refresh(payment, intent: try context.stripe.retrievePaymentIntent(intentID), context: context,
                                  request: request)
        }
        guard payment["status"] == "requires_capture", payment["stripe_payment_intent_id"] != nil else {
            throw APIError(status: 409, code: "payment_not_capturable",
                           message: "Only an authorised payment can be captured (this one is \(payment["status"] ?? "unknown")).")
        }
        guard payment["kind"] == "purchase" else {
            throw APIError(status: 409, code: "payment_not_capturable", message: "Milestone payments are released, not captured.")
        }
        guard try !Disputes.hasOpenDispute(paymentID: paymentID, on: context.database) else {
            throw APIError(status: 409, code: "payment_disputed", message: "A dispute is open on this payment.")
        }
        try PurchaseCapture(context: context, audit: AuditContext(request: request)).capture(payment, amount: requested)
        guard let updated = try PaymentRecord.visible(paymentID, to: identity, on: context.database) else { throw APIError.notFound }
        return .json(PaymentRecord(row: updated))
    }

    /// Cancels a purchase before capture (its buyer, or an admin) and releases the listing.
    private func cancel(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let paymentID = try PathParameter.uuid(request, "id")
        let payment = try loadOwned(paymentID, identity: identity, context: context)
        let cancellable = ["creating", "requires_payment_method", "requires_confirmation", "requires_action", "requires_capture"]
        guard cancellable.contains(payment["status"] ?? "") else {
            throw APIError(status: 409, code: "payment_not_cancellable",
                           message: "This payment can no longer be cancelled (it is \(payment["status"] ?? "unknown")).")
        }
        var intentID = payment["stripe_payment_intent_id"]
        if intentID == nil, payment["status"] == "creating" {
            // Its create call ended without an outcome: Stripe may hold the intent, which must
            // be cancelled too (409 while the request that creates it still runs).
            intentID = try IntentCreation.recover(paymentID.uuidString.lowercased(), stripe: context.stripe,
                                                  on: context.database)
        }
        if let intentID {
            _ = try context.stripe.cancelPaymentIntent(intentID, reason: "requested_by_customer",
                                                       idempotencyKey: PaymentKeys.cancel(paymentID.uuidString))
        }
        let updated = try context.database.withTransaction { connection -> Row in
            let changed = try connection.query("""
                UPDATE payments SET status = 'canceled', amount_capturable = 0
                WHERE id = \(paymentID) AND status = ANY(\("{" + cancellable.joined(separator: ",") + "}")::text[])
                RETURNING *
                """).first
            // The cancellation is this actor's action even when Stripe's webhook recorded it first.
            try AuditLog.record(AuditEntry(operation: "payment.cancel", entityType: "payment",
                                           entityID: paymentID.uuidString.lowercased(),
                                           oldValues: ["status": JSONValue(payment["status"])], newValues: ["status": "canceled"]),
                                request: request, on: connection)
            if let changed {
                try connection.query("SELECT payment_release_hold(p) FROM payments p WHERE p.id = \(paymentID)")
                let other = identity.profileID.uuidString.lowercased() == changed["buyer_id"] ? changed["seller_id"] : changed["buyer_id"]
                if let other {
                    try Notifier.notify([other], kind: "payment_canceled",
                                        payload: ["payment_id": .string(paymentID.uuidString.lowercased())], on: connection)
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

    /// Applies what Stripe says about the intent when our webhook has not arrived yet.
    private func refresh(_ payment: Row, intent: PaymentIntent, context: WorkerContext, request: Request) throws -> Row {
        guard intent.status == "requires_capture", let id = payment.uuid("id") else { return payment }
        return try context.database.withTransaction { connection -> Row in
            _ = try connection.query("""
                SELECT * FROM payment_capturable_atomic(\(intent.id), \(Int64(Date().timeIntervalSince1970)), \(intent.amountCapturable ?? intent.amount),
                                                        to_timestamp(\((intent.created ?? 0) + 7 * 86_400)))
                """)
            let identity = try request.requireIdentity()
            return try PaymentRecord.visible(id, to: identity, on: connection) ?? payment
        }
    }
}

/// Captures an authorised purchase at Stripe (key `payment:{id}:capture`, so repeated and
/// concurrent captures capture once) and applies the result: the buyer's confirmation of
/// delivery, or an admin resolving a dispute in the seller's favour.
struct PurchaseCapture {
    let context: WorkerContext
    let audit: AuditContext

    /// `payment` is a `PaymentRecord.columns` row in `requires_capture`; `amount` nil captures all.
    func capture(_ payment: Row, amount requested: Int64?) throws {
        guard let paymentID = payment["id"], let intentID = payment["stripe_payment_intent_id"] else {
            throw APIError(status: 409, code: "payment_not_capturable", message: "This payment has no authorisation to capture.")
        }
        let capturable = Int64(payment.int("amount_capturable") ?? 0)
        if let requested, requested > capturable {
            throw APIError.invalidField("amount_to_capture", "must not exceed the authorised \(capturable)")
        }
        let intent = try context.stripe.capturePaymentIntent(intentID, amountToCapture: requested,
                                                             idempotencyKey: "payment:\(paymentID):capture")
        try context.database.withTransaction { connection in
            let changed = try connection.query("""
                SELECT * FROM payment_complete_atomic(\(intentID), 0, \(intent.amountReceived ?? requested ?? capturable),
                                                      \(intent.latestCharge?.id))
                """).first != nil
            // The capture is this actor's action even when Stripe's webhook recorded its effect first.
            try AuditLog.record(AuditEntry(operation: "payment.capture", entityType: "payment", entityID: paymentID,
                                           oldValues: ["status": "requires_capture"],
                                           newValues: ["status": "succeeded", "amount_received": .int(intent.amountReceived ?? 0)]),
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
