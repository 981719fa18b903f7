import Foundation
import Postgres
import Stripe

/// The purchase family's sweeps: unpaid reservations that ran out, and authorisations about
/// to lapse. Safe to run from several hosts at once: the Stripe call carries the payment's
/// cancel key (`payment:{id}:cancel`), and only the sweeper whose guarded update changes the
/// row writes the audit row and the notifications.
struct PurchaseSweeper {
    let connection: any SQLExecutor
    let stripe: StripeClient
    let marketplace: MarketplaceConfiguration

    /// Cancels purchases whose buyer did not pay within the reservation; returns how many.
    func expireReservations() throws -> Int {
        let due = try connection.query("""
            SELECT p.id, p.stripe_payment_intent_id, p.status FROM payments p JOIN listings l ON l.id = p.listing_id
            WHERE p.kind = 'purchase' AND l.status = 'payment_pending' AND l.reserved_by = p.buyer_id
              AND l.reserved_until < now()
              AND p.status IN ('creating', 'requires_payment_method', 'requires_confirmation', 'requires_action')
            ORDER BY l.reserved_until LIMIT 100
            """).rows
        var cancelled = 0
        // A payment Stripe cannot cancel right now stays due for the next run; the others go on.
        for payment in due {
            guard let intentID = try? recoveredIntent(payment) else { continue }
            if (try? cancel(payment, intentID: intentID, operation: "payment.reservation_expired",
                            notification: "reservation_expired")) == true {
                cancelled += 1
            }
        }
        return cancelled
    }

    /// The payment's intent id. A payment still `creating` without one had a create attempt
    /// whose outcome is unknown (or never started): unless that attempt is still running,
    /// the same call with the same key returns the intent Stripe holds (or makes it), which is
    /// then attached and cancelled like any other. Throws while Stripe cannot be reached, and
    /// when a live request still owns the attempt; the payment then stays due.
    private func recoveredIntent(_ payment: Row) throws -> String? {
        if let intentID = payment["stripe_payment_intent_id"] { return intentID }
        guard let id = payment["id"], payment["status"] == "creating" else { return nil }
        guard try PurchaseIntent.claimAttempt(id, lease: .seconds(60), on: connection),
              let row = try PurchaseIntent.load(id, on: connection) else { throw SweepSkipped() }
        let intent: PaymentIntent
        do {
            intent = try PurchaseIntent.create(row, stripe: stripe)
        } catch {
            PurchaseIntent.releaseAttempt(id, on: connection)
            throw error
        }
        try connection.query("""
            UPDATE payments SET stripe_payment_intent_id = \(intent.id), create_attempt_owner = NULL,
                   create_attempt_expires_at = NULL
            WHERE id = \(id)::uuid AND stripe_payment_intent_id IS NULL
            """)
        return intent.id
    }

    /// A due payment left for the next run.
    private struct SweepSkipped: Error {}

    /// Cancels authorisations within `CAPTURE_MARGIN_HOURS` of `capture_before` (they would
    /// lapse at Stripe anyway); buyer and seller are told.
    func cancelLapsingAuthorizations() throws -> Int {
        let due = try connection.query("""
            SELECT id, stripe_payment_intent_id, status FROM payments
            WHERE status = 'requires_capture'
              AND capture_before < now() + make_interval(hours => \(marketplace.captureMarginHours))
            ORDER BY capture_before LIMIT 100
            """).rows
        var cancelled = 0
        for payment in due where (try? cancel(payment, intentID: payment["stripe_payment_intent_id"],
                                               operation: "payment.authorization_lapsing",
                                               notification: "authorization_cancelled")) == true {
            cancelled += 1
        }
        return cancelled
    }

    /// Cancels locally first — guarded, audited, both parties told — then at Stripe, so the
    /// `payment_intent.canceled` event that follows finds nothing left to change. If Stripe cannot
    /// cancel now, a later authorisation on the intent is cancelled when its event arrives.
    /// True when this run changed the row.
    private func cancel(_ payment: Row, intentID: String?, operation: String, notification: String) throws -> Bool {
        guard let id = payment["id"] else { return false }
        let changed = try connection.withTransaction { connection -> Bool in
            guard let parties = try connection.query("""
                UPDATE payments SET status = 'canceled', amount_capturable = 0
                WHERE id = \(id)::uuid AND status IN ('creating', 'requires_payment_method', 'requires_confirmation',
                                                      'requires_action', 'requires_capture')
                RETURNING buyer_id, seller_id
                """).first else { return false }
            try connection.query("SELECT payment_release_hold(p) FROM payments p WHERE p.id = \(id)::uuid")
            try AuditLog.record(AuditEntry(operation: operation, entityType: "payment", entityID: id,
                                           oldValues: ["status": JSONValue(payment["status"])], newValues: ["status": "canceled"]),
                                context: .system("payments sweep"), on: connection)
            try Notifier.notify([parties["buyer_id"], parties["seller_id"]].compactMap { $0 }, kind: notification,
                                payload: ["payment_id": .string(id)], on: connection)
            return true
        }
        if changed, let intent = intentID {
            _ = try? stripe.cancelPaymentIntent(intent, reason: "abandoned", idempotencyKey: PaymentKeys.cancel(id))
        }
        return changed
    }
}
