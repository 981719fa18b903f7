import Foundation
import Postgres
import Stripe

/// Capturing and cancelling purchases: `POST /api/payments/capture`, `POST /api/payments/{id}/cancel`.
struct CaptureResponder {
    func addRoutes(to router: inout Router) {
        router.add(
            "POST", "/api/payments/capture", body: .json, access: .roles([.buyer, .admin]), rateLimits: [.capture],
            audit: AuditTarget("payment.capture", entity: "payment", idInBody: "payment_id"), lane: .stripe, capture)
        router.add(
            "POST", "/api/payments/{id}/cancel", body: .json, access: .roles([.buyer, .admin]), rateLimits: [.cancel],
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
            guard identity.isAdmin else {
                throw APIError(
                    .forbidden,
                    message:
                        "Only an admin may capture part of a payment; the buyer's capture takes the full authorised amount."
                )
            }
            guard reason != nil else { throw APIError.invalidField("reason", "is required for a partial capture") }
        }

        var payment = try loadOwned(paymentID, identity: identity, context: context)
        guard payment.kind == .purchase else {
            throw APIError(.paymentNotCapturable, message: "Milestone payments are released, not captured.")
        }
        if payment.status.isAwaitingAuthorisation, let intentID = payment.payment_intent_id {
            payment = try refresh(
                payment, id: paymentID,
                intent: try context.stripe.retrievePaymentIntent(intentID, account: payment.stripe_account),
                context: context,
                request: request)
        }
        // Refused before anything is claimed: bad input changes nothing (checked again under the claim).
        let authorised = payment.amount_capturable
        if let requested, requested > authorised {
            throw APIError.invalidField("amount_to_capture", "must not exceed the authorised \(authorised)")
        }
        try PurchaseCapture(context: context, audit: AuditContext(request: request))
            .capture(paymentID.uuidString.lowercased(), amount: requested, reason: reason)
        guard let updated = try PaymentRecord.visible(paymentID, to: identity, on: context.database) else {
            throw APIError.notFound
        }
        return .json(updated)
    }

    /// Cancels a purchase before capture (its buyer, or an admin) and releases the listing.
    /// Never while a dispute is open: an admin settles a disputed payment by resolving the dispute.
    private func cancel(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let paymentID = try PathParameter.uuid(request, "id")
        let id = paymentID.uuidString.lowercased()
        _ = try loadOwned(paymentID, identity: identity, context: context)
        let cancellable = PaymentStatus.allCases.filter(\.isCancellable).map(\.rawValue)
        guard let claim = try context.claims.claim(id, for: .cancel, from: cancellable, on: context.database) else {
            let status = try PaymentRecord.visible(paymentID, to: identity, on: context.database)?.status
            throw APIError(
                .paymentNotCancellable,
                message: "This payment can no longer be cancelled (it is \(status?.rawValue ?? "gone")).")
        }
        let payment = claim.payment
        do {
            var intentID = payment.intentID
            if intentID == nil, payment.status == .creating {
                // Its create call ended without an outcome: Stripe may hold the intent, which must
                // be cancelled too (409 while the request that creates it still runs).
                intentID = try IntentCreation.recover(id, stripe: context.stripe, on: context.database)
            }
            if let intentID {
                try context.stripe.cancelIntent(
                    intentID, ofPayment: id, reason: .requestedByCustomer, account: payment.stripeAccount)
            }
        } catch {
            PaymentClaims.settle(claim, after: error, on: context.database)
            throw error
        }
        let updated = try context.database.withTransaction { connection -> PaymentRecord? in
            let changed = try connection.query(
                """
                UPDATE payments SET status = 'canceled', amount_capturable = 0
                WHERE id = \(paymentID) AND status = ANY(\(PaymentStatus.sqlArray(where: \.isCancellable))::text[])
                RETURNING *
                """
            ).first.map(PaymentRow.init(row:))
            try PaymentClaims.settle(claim, on: connection)
            // The cancellation is this actor's action even when Stripe's webhook recorded it first.
            try AuditLog.record(
                AuditEntry(
                    operation: "payment.cancel", entityType: "payment", entityID: id,
                    oldValues: ["status": .string(payment.status.rawValue)], newValues: ["status": "canceled"]),
                request: request, on: connection)
            if let changed {
                try connection.query("SELECT payment_release_hold(p) FROM payments p WHERE p.id = \(paymentID)")
                let other =
                    identity.profileID.uuidString.lowercased() == changed.buyerID ? changed.sellerID : changed.buyerID
                try Notifier.notify(
                    other, kind: .paymentCanceled, payload: ["payment_id": .string(id)], on: connection)
            }
            return try PaymentRecord.visible(paymentID, to: identity, on: connection)
        }
        guard let updated else { throw APIError.notFound }
        return .json(updated)
    }

    // MARK: Helpers

    /// The payment, if this caller may act on it: its buyer or an admin (a seller or stranger gets 404).
    private func loadOwned(_ id: UUID, identity: Identity, context: WorkerContext) throws -> PaymentRecord {
        guard let payment = try PaymentRecord.visible(id, to: identity, on: context.database),
            identity.isAdmin || payment.buyer_id == identity.profileID.uuidString.lowercased()
        else { throw APIError.notFound }
        return payment
    }

    /// Applies what Stripe says about the intent when our webhook has not arrived yet, audited
    /// as the caller's (every transition has an audit row, whichever path makes it).
    private func refresh(
        _ payment: PaymentRecord, id paymentID: UUID, intent: PaymentIntent, context: WorkerContext, request: Request
    ) throws -> PaymentRecord {
        guard intent.status == "requires_capture" else { return payment }
        return try context.database.withTransaction { connection -> PaymentRecord in
            let changed =
                try connection.query(
                    """
                    SELECT status FROM payment_capturable_atomic(\(intent.id), \(Int64(Date().timeIntervalSince1970)),
                                                                 \(intent.amountCapturable ?? intent.amount),
                                                                 \(sql: AuthorisationHold.end(of: intent)))
                    """
                ).first != nil
            if changed {
                try AuditLog.record(
                    AuditEntry(
                        operation: "payment.authorised", entityType: "payment",
                        entityID: payment.id, oldValues: ["status": .string(payment.status.rawValue)],
                        newValues: [
                            "status": "requires_capture",
                            "amount_capturable": .int(intent.amountCapturable ?? intent.amount),
                        ],
                        metadata: ["source": "stripe retrieve before capture"]),
                    request: request, on: connection)
            }
            let identity = try request.requireIdentity()
            return try PaymentRecord.visible(paymentID, to: identity, on: connection) ?? payment
        }
    }
}
