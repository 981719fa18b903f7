import Foundation
import Postgres
import Stripe

/// The payment sweeps: unpaid reservations that ran out, authorisations about to lapse, unpaid
/// milestone fundings, and fundings whose create call ended without an outcome and were never
/// resumed. Safe to run from several hosts at once: the Stripe call carries the payment's
/// cancel key (`payment:{id}:cancel`), and only the sweeper whose guarded update changes the
/// row writes the audit row and the notifications.
struct PaymentSweeper {
    let connection: any SQLExecutor
    let stripe: StripeClient
    let marketplace: MarketplaceConfiguration
    /// Counts the payments a run could not settle now (they stay due).
    var failures = SweepFailures()
    /// How long the sweeper's automatic capture holds its claim on a payment.
    var claimLease: Duration = .seconds(60)

    /// Cancels purchases whose buyer did not pay within the reservation; returns how many.
    func expireReservations() throws -> Int {
        let due = try connection.query(
            """
            SELECT p.id, p.stripe_payment_intent_id, p.stripe_account, p.status FROM payments p
            JOIN listings l ON l.id = p.listing_id
            WHERE p.kind = 'purchase' AND l.status = 'payment_pending' AND l.reserved_by = p.buyer_id
              AND l.reserved_until < now()
              AND p.status IN ('creating', 'requires_payment_method', 'requires_confirmation', 'requires_action')
            ORDER BY l.reserved_until LIMIT 100
            """
        ).rows.map(DuePayment.init(row:))
        return cancelEach(due, operation: "payment.reservation_expired", notification: .reservationExpired)
    }

    /// Tells buyer and seller, once, that an authorisation nobody has captured will get the
    /// hold-expiry action within `HOLD_WARNING_HOURS` (the guarded update is the "once", also
    /// across sweepers running at the same time). Returns how many were warned.
    func warnLapsingHolds() throws -> Int {
        guard marketplace.holdWarningHours > 0 else { return 0 }
        let margin = marketplace.captureMarginHours
        return try connection.withTransaction { connection -> Int in
            let warned = try connection.query(
                """
                UPDATE payments SET hold_warned_at = now()
                WHERE hold_warned_at IS NULL
                  AND hold_expires_at >= now() + make_interval(hours => \(margin))
                  AND hold_expires_at < now() + make_interval(hours => \(margin + marketplace.holdWarningHours))
                RETURNING id::text AS id, buyer_id::text AS buyer_id, seller_id::text AS seller_id,
                          iso8601(capture_before - make_interval(hours => \(margin))) AS action_at
                """
            ).rows
            for row in warned {
                try Notifier.notify(
                    [try row.decode("buyer_id"), try row.decode("seller_id")], kind: .authorizationExpiring,
                    payload: [
                        "payment_id": .string(try row.decode("id")),
                        "action": .string(marketplace.holdExpiryAction.rawValue),
                        "action_at": .string(try row.decode("action_at")),
                    ], on: connection)
            }
            return warned.count
        }
    }

    /// Applies `HOLD_EXPIRY_ACTION` to authorisations within `CAPTURE_MARGIN_HOURS` of
    /// `capture_before` (they would lapse at Stripe otherwise): `cancel` releases the buyer's
    /// card; `capture` takes the full amount, unless a dispute is open, which blocks it and
    /// alerts the admins once. Buyer and seller are told. Returns how many were settled.
    func settleLapsingAuthorizations() throws -> Int {
        let due = try connection.query(
            """
            SELECT id, stripe_payment_intent_id, stripe_account, status, is_disputed FROM payments
            WHERE hold_expires_at < now() + make_interval(hours => \(marketplace.captureMarginHours))
              AND NOT (is_disputed AND hold_blocked_at IS NOT NULL)
            ORDER BY hold_expires_at LIMIT 100
            """
        ).rows
        var settled = 0
        for row in due {
            let payment = try DuePayment(row: row)
            let done: Bool?
            switch marketplace.holdExpiryAction {
            case .cancel:
                done = failures.attempt("settle_lapsing_authorizations \(payment.id)") {
                    try cancel(
                        payment, intentID: payment.intentID, operation: "payment.authorization_lapsing",
                        notification: .authorizationCancelled)
                }
            case .capture:
                let isDisputed = try row.decode("is_disputed", as: Bool.self)
                done = failures.attempt("settle_lapsing_authorizations \(payment.id)") {
                    isDisputed ? try alertBlockedCapture(payment) : try captureLapsing(payment)
                }
            }
            if done == true { settled += 1 }
        }
        return settled
    }

    /// The full capture of a lapsing authorisation, as the buyer's confirmation would make it
    /// (same claim, key and audit), by the sweeper.
    private func captureLapsing(_ payment: DuePayment) throws -> Bool {
        let audit = AuditContext.system("payments sweep")
        try PurchaseCapture(
            database: connection, stripe: stripe, claims: PaymentClaims(lease: claimLease), marketplace: marketplace,
            audit: audit
        ).capture(payment.id, amount: nil, reason: "hold expiry")
        return true
    }

    /// A dispute blocks the automatic capture: the admins are alerted once (and the payment is
    /// left for them to settle through the dispute); false, as nothing was settled.
    private func alertBlockedCapture(_ payment: DuePayment) throws -> Bool {
        try connection.withTransaction { connection in
            guard
                try connection.query(
                    """
                    UPDATE payments SET hold_blocked_at = now()
                    WHERE id = \(payment.id)::uuid AND hold_blocked_at IS NULL RETURNING id
                    """
                ).first != nil
            else { return }
            try AuditLog.record(
                AuditEntry(
                    operation: "payment.hold_expiry_blocked", entityType: "payment", entityID: payment.id,
                    newValues: ["action": "capture"], success: false, errorCode: APIError(.paymentDisputed).code),
                context: .system("payments sweep"), on: connection)
            try Notifier.notifyAdmins(
                kind: .holdExpiryBlocked, payload: ["payment_id": .string(payment.id)], on: connection)
        }
        return false
    }

    /// Milestone fundings still `creating` `RESERVATION_MINUTES` after they began (their create
    /// call ended without an outcome, or its process died, and the buyer did not retry): the
    /// intent Stripe may hold is recovered under the same key, attached and cancelled, and the
    /// milestone can be funded again. Returns how many.
    func settleUnfinishedFundings() throws -> Int {
        let due = try connection.query(
            """
            SELECT id, stripe_payment_intent_id, stripe_account, status FROM payments
            WHERE kind = 'milestone' AND status = 'creating' AND stripe_payment_intent_id IS NULL
              AND created_at < now() - make_interval(mins => \(marketplace.reservationMinutes))
            ORDER BY created_at LIMIT 100
            """
        ).rows.map(DuePayment.init(row:))
        return cancelEach(due, operation: "milestone.funding_abandoned", notification: .fundingAbandoned)
    }

    /// Milestone fundings whose intent exists but was not paid within `RESERVATION_MINUTES` of
    /// the funding's start (the buyer left): cancelled at Stripe, then here — the milestone back
    /// to `pending` for this or another buyer, audited, both parties told. Returns how many.
    ///
    /// Stripe first, unlike purchases: these intents capture automatically, so a card confirmed
    /// while the sweep runs must win. Then the cancel fails, the payment is left alone, and
    /// `payment_intent.succeeded` funds the milestone; cancelling locally first would leave a
    /// charged funding marked `canceled`.
    func expireFundings() throws -> Int {
        let due = try connection.query(
            """
            SELECT id, stripe_payment_intent_id, stripe_account, status FROM payments
            WHERE kind = 'milestone' AND stripe_payment_intent_id IS NOT NULL
              AND status IN ('requires_payment_method', 'requires_confirmation', 'requires_action')
              AND created_at < now() - make_interval(mins => \(marketplace.reservationMinutes))
            ORDER BY created_at LIMIT 100
            """
        ).rows.map(DuePayment.init(row:))
        return due.filter { payment in
            guard let intentID = payment.intentID,
                failures.attempt(
                    "expire_fundings \(payment.id)",
                    {
                        try stripe.cancelIntent(
                            intentID, ofPayment: payment.id, reason: .abandoned, account: payment.stripeAccount)
                    }) != nil
            else { return false }
            // The `payment_intent.canceled` event may have been applied first: expired either way.
            return failures.attempt("expire_fundings \(payment.id)") {
                try markCanceled(payment, operation: "milestone.funding_expired", notification: .fundingExpired)
            } != nil
        }.count
    }

    /// Cancels each due payment (recovering its intent first when it has none); returns how
    /// many this run changed. One that cannot be settled now stays due for the next run; the
    /// others go on.
    private func cancelEach(_ due: [DuePayment], operation: String, notification: NotificationKind) -> Int {
        due.filter { payment in
            // `recoveredIntent` answers `.some(nil)` when Stripe holds no intent: settle without one.
            guard
                let intentID = failures.attempt("\(operation) \(payment.id)", { try recoveredIntent(payment) })
                    .flatMap({ $0 })
            else { return false }
            return failures.attempt("\(operation) \(payment.id)") {
                try cancel(payment, intentID: intentID, operation: operation, notification: notification)
            } == true
        }.count
    }

    /// The payment's intent id, or `.some(nil)` when there is none at Stripe. A payment still
    /// `creating` without one had a create attempt whose outcome is unknown (or that never
    /// reached Stripe): unless a live request still holds it, the same call with the same key
    /// returns the intent Stripe made, which is then attached and cancelled like any other.
    /// Throws (the payment stays due) while Stripe cannot say or a live request holds it.
    private func recoveredIntent(_ payment: DuePayment) throws -> String?? {
        if let intentID = payment.intentID { return intentID }
        guard payment.status == .creating else { return .some(nil) }
        return .some(try IntentCreation.recover(payment.id, stripe: stripe, on: connection))
    }

    /// Cancels locally first — guarded, audited, both parties told — then at Stripe, so the
    /// `payment_intent.canceled` event that follows finds nothing left to change. If Stripe cannot
    /// cancel now, a later authorisation on the intent is cancelled when its event arrives.
    /// True when this run changed the row.
    private func cancel(_ payment: DuePayment, intentID: String?, operation: String, notification: NotificationKind)
        throws
        -> Bool
    {
        let changed = try markCanceled(payment, operation: operation, notification: notification)
        if changed, let intent = intentID {
            // Settled here either way; a cancel Stripe refused now is still a failure to see.
            _ = failures.attempt("\(operation) \(payment.id) at Stripe") {
                try stripe.cancelIntent(
                    intent, ofPayment: payment.id, reason: .abandoned, account: payment.stripeAccount)
            }
        }
        return changed
    }

    /// The local half of a cancel, in one transaction: the guarded update, the hold (listing
    /// or milestone) released, the audit row, buyer and seller told. True when this run changed the row.
    private func markCanceled(_ payment: DuePayment, operation: String, notification: NotificationKind) throws -> Bool {
        let id = payment.id
        return try connection.withTransaction { connection -> Bool in
            guard
                let parties = try connection.query(
                    """
                    UPDATE payments SET status = 'canceled', amount_capturable = 0
                    WHERE id = \(id)::uuid AND status IN ('creating', 'requires_payment_method', 'requires_confirmation',
                                                          'requires_action', 'requires_capture')
                      AND (action_claim IS NULL OR action_claim_expires_at <= now())  -- a capture may be under way
                    RETURNING buyer_id, seller_id
                    """
                ).first
            else { return false }
            try connection.query("SELECT payment_release_hold(p) FROM payments p WHERE p.id = \(id)::uuid")
            try AuditLog.record(
                AuditEntry(
                    operation: operation, entityType: "payment", entityID: id,
                    oldValues: ["status": .string(payment.status.rawValue)], newValues: ["status": "canceled"]),
                context: .system("payments sweep"), on: connection)
            try Notifier.notify(
                [try parties.decode("buyer_id"), try parties.decode("seller_id")], kind: notification,
                payload: ["payment_id": .string(id)], on: connection)
            return true
        }
    }
}

/// A payment a sweep may cancel: the three columns its queries select.
private struct DuePayment {
    let id: String
    let intentID: String?
    /// The account that owns the intent (a direct charge's), for the calls that cancel it.
    let stripeAccount: String?
    let status: PaymentStatus

    init(row: Row) throws {
        id = try row.decode("id")
        intentID = try row.decodeIfPresent("stripe_payment_intent_id")
        stripeAccount = try row.decodeIfPresent("stripe_account")
        status = try row.decode("status")
    }
}
