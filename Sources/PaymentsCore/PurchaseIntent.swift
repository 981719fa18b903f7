import Postgres
import Stripe

/// A purchase's destination-charge PaymentIntent, created at Stripe under the payment's
/// deterministic key. The key is also how an attempt whose outcome is unknown (a lost
/// response, a timeout, a process killed mid-call) is recovered: the same call with the same
/// parameters returns the intent the first attempt created, or creates it if it never arrived.
/// So every intent the app causes to exist ends attached to its payment, or cancelled.
enum PurchaseIntent {
    /// What `parameters(_:)` reads: the payment and its seller's account (`destination`).
    static func load(_ paymentID: String, on connection: some SQLExecutor) throws -> Row? {
        try connection.query("""
            SELECT p.id, p.amount_cents, p.application_fee_cents, p.currency, p.listing_id, p.buyer_id, p.seller_id,
                   p.transfer_group, s.stripe_account_id AS destination
            FROM payments p JOIN profiles s ON s.id = p.seller_id
            WHERE p.id = \(paymentID)::uuid
            """).first
    }

    /// Creates (or recovers) the intent for a `load(_:on:)` row.
    static func create(_ payment: Row, stripe: StripeClient) throws(StripeError) -> PaymentIntent {
        try stripe.createPaymentIntent(parameters(payment), idempotencyKey: PaymentKeys.create(payment["id"] ?? ""))
    }

    /// The same parameters on every attempt, derived from the row alone: Stripe answers a key
    /// reused with other parameters with an idempotency error.
    static func parameters(_ payment: Row) -> [(String, StripeParameter)] {
        [
            ("amount", .integer(Int64(payment.int("amount_cents") ?? 0))),
            ("currency", .string(payment["currency"] ?? "")),
            ("capture_method", "manual"),
            ("payment_method_types", ["card"]),
            ("application_fee_amount", .integer(Int64(payment.int("application_fee_cents") ?? 0))),
            ("transfer_data", ["destination": .string(payment["destination"] ?? "")]),
            ("transfer_group", .string(payment["transfer_group"] ?? "")),
            ("metadata", .object([
                ("payment_id", .string(payment["id"] ?? "")), ("listing_id", .string(payment["listing_id"] ?? "")),
                ("buyer_id", .string(payment["buyer_id"] ?? "")), ("seller_id", .string(payment["seller_id"] ?? "")),
            ])),
        ]
    }

    /// Claims a purchase's create attempt for this request (a lease of `lease`), or nil when a
    /// live request holds it. Callers hold the listing's row lock, which serialises attempts.
    static func claimAttempt(_ paymentID: String, lease: Duration, on connection: some SQLExecutor) throws -> Bool {
        guard let attempt = try connection.query("""
            SELECT create_attempt_owner AS owner,
                   (create_attempt_expires_at IS NULL OR create_attempt_expires_at <= now()) AS over
            FROM payments WHERE id = \(paymentID)::uuid AND status = 'creating' AND stripe_payment_intent_id IS NULL
            """).first else { return false }
        guard attempt.bool("over") == true || RequestOwner.isGone(attempt["owner"]) else { return false }
        try connection.query("""
            UPDATE payments SET create_attempt_owner = \(RequestOwner.current),
                   create_attempt_expires_at = now() + make_interval(secs => \(Double(lease.components.seconds)))
            WHERE id = \(paymentID)::uuid
            """)
        return true
    }

    /// Ends this request's attempt without an outcome, so that the buyer's retry (or the
    /// sweeper) may take over at once instead of waiting for the lease.
    static func releaseAttempt(_ paymentID: String, on connection: some SQLExecutor) {
        _ = try? connection.query("""
            UPDATE payments SET create_attempt_expires_at = now()
            WHERE id = \(paymentID)::uuid AND create_attempt_owner = \(RequestOwner.current)
            """)
    }
}
