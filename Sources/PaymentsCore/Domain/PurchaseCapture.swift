import Foundation
import Postgres
import Stripe

/// Captures an authorised purchase at Stripe and applies the result: the buyer's confirmation
/// of delivery, an admin's (partial) capture, or an admin resolving a dispute in the seller's
/// favour. The payment is claimed first (status `requires_capture`, no open dispute unless the
/// resolution itself captures); the key `payment:{id}:capture:{amount}` makes repeated and
/// concurrent captures of one amount capture once.
struct PurchaseCapture {
    let database: any SQLExecutor
    let stripe: StripeClient
    let claims: PaymentClaims
    let marketplace: MarketplaceConfiguration
    let audit: AuditContext

    init(
        database: any SQLExecutor, stripe: StripeClient, claims: PaymentClaims, marketplace: MarketplaceConfiguration,
        audit: AuditContext
    ) {
        self.database = database
        self.stripe = stripe
        self.claims = claims
        self.marketplace = marketplace
        self.audit = audit
    }

    /// A request's capture, on its worker's pool, Stripe handle and lease.
    init(context: WorkerContext, audit: AuditContext) {
        self.init(
            database: context.database, stripe: context.stripe, claims: context.claims,
            marketplace: context.shared.configuration.marketplace, audit: audit)
    }

    /// Captures `requested` (nil: all that is authorised). A partial capture's application fee
    /// is recomputed for the captured amount with the creation rule (`PLATFORM_FEE_BPS`, half up),
    /// never above the fee agreed at creation.
    func capture(
        _ paymentID: String, amount requested: Int64?, reason: String? = nil,
        resolvingDispute: Bool = false
    ) throws {
        let notCapturable = { (status: PaymentStatus) in
            APIError(
                .paymentNotCapturable,
                message: "Only an authorised payment can be captured (this one is \(status.rawValue)).")
        }
        // A request that joins another's live claim does not own it, so its refusals below
        // never end that claim; only the owner's do.
        guard
            let claim = try claims.claim(
                paymentID, for: .capture, from: ["requires_capture"],
                resolvingDispute: resolvingDispute, on: database)
        else {
            let status = try database.query("SELECT status FROM payments WHERE id = \(paymentID)::uuid").first
            guard let status else { throw APIError.notFound }
            throw notCapturable(try status.decode("status"))
        }
        let payment = claim.payment
        let capturable = payment.amountCapturable
        let parties = [payment.buyerID, payment.sellerID]
        let amount: Int64
        let partial: Int64?
        let fee: Int64?
        let intent: PaymentIntent
        do {
            // Checked again under the claim, which any failure settles.
            if let requested, requested > capturable {
                throw APIError.invalidField("amount_to_capture", "must not exceed the authorised \(capturable)")
            }
            amount = requested ?? capturable
            // Asking for everything is a full capture: the same call (and key) as the buyer's.
            partial = requested.flatMap { $0 < capturable ? $0 : nil }
            fee = partial.map { min(payment.applicationFee, marketplace.fee(for: $0)) }
            // NULL while the payment's intent is not yet attached.
            guard let intentID = payment.intentID else { throw notCapturable(payment.status) }
            intent = try stripe.capturePaymentIntent(
                intentID, amountToCapture: partial, applicationFeeAmount: fee,
                idempotencyKey: StripeKeys.capture(paymentID, amount: amount), account: payment.stripeAccount)
        } catch {
            PaymentClaims.settle(claim, after: error, on: database)
            throw error
        }
        let received = intent.amountReceived ?? amount
        try database.withTransaction { connection in
            let changed =
                try connection.query(
                    """
                    SELECT * FROM payment_complete_atomic(\(intent.id), 0, \(received), \(intent.latestCharge?.id))
                    """
                ).first != nil
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
            try AuditLog.record(
                AuditEntry(
                    operation: "payment.capture", entityType: "payment", entityID: paymentID,
                    oldValues: [
                        "status": "requires_capture", "amount_capturable": .int(capturable),
                        "application_fee": .int(payment.applicationFee),
                    ],
                    newValues: .object(newValues)),
                context: audit, on: connection)
            guard changed else { return }  // the webhook already told both parties
            try Notifier.notify(
                parties, kind: .paymentSucceeded,
                payload: ["payment_id": .string(paymentID)], on: connection)
        }
        if let charge = intent.latestCharge?.id {
            WebhookInbox(connection: database, audit: audit).applyParked(objectID: charge)
        }
    }
}
