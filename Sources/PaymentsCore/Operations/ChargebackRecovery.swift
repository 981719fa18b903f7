import Foundation
import Postgres
import Stripe

/// Chargeback recovery under `CHARGEBACK_LIABILITY=seller` (a sweep task). A destination charge
/// makes the platform the merchant of record, so Stripe takes a chargeback's amount from the
/// platform; under `seller` liability the platform takes it back from the seller's transfer as
/// soon as Stripe has withdrawn it, and gives it back if the chargeback is won. Every Stripe call
/// carries the chargeback's key, so overlapping sweeps move the money once.
///
/// `chargeback_recoveries.status`: `due` → `recovered`, or `debt` when Stripe refuses the reversal
/// (the seller's balance is too low: retried with backoff, admins told once) → `recovered`; a
/// won chargeback turns `recovered` into `undo_due` → `undone` (a transfer back), and `due` or
/// `debt` into `waived` (unless a call's outcome is unknown: its retry says first whether the
/// money moved).
struct ChargebackRecovery {
    let connection: any SQLExecutor
    let stripe: StripeClient
    let marketplace: MarketplaceConfiguration

    /// Records new recoveries, settles won chargebacks, then makes the due Stripe calls (100 per
    /// run). Returns how many recoveries changed state.
    func run() throws -> Int {
        var changed = 0
        if marketplace.chargebackLiability == .seller {
            changed += try enqueueWithdrawn()
        }
        changed += try settleWon()
        let due = try connection.query(
            """
            SELECT r.id::text AS id, r.dispute_id::text AS dispute_id, r.payment_id::text AS payment_id,
                   r.seller_id::text AS seller_id, r.stripe_transfer_id, r.destination_account, r.amount_cents,
                   r.currency, r.status, r.attempts
            FROM chargeback_recoveries r
            WHERE r.status IN ('due', 'debt', 'undo_due') AND r.next_attempt_at <= now()
            ORDER BY r.next_attempt_at LIMIT 100
            """
        ).rows.map(Recovery.init(row:))
        for recovery in due where (try? attempt(recovery)) == true {
            changed += 1
        }
        return changed
    }

    /// Chargebacks on purchases whose amount Stripe has withdrawn (or that were lost) and that
    /// have no recovery yet: one `due` row each, for the disputed amount plus the configured fee,
    /// never more than what is left of the seller's transfer.
    private func enqueueWithdrawn() throws -> Int {
        try connection.query(
            """
            INSERT INTO chargeback_recoveries (dispute_id, payment_id, seller_id, stripe_transfer_id, destination_account,
                                               amount_cents, currency)
            SELECT d.id, p.id, p.seller_id, t.stripe_transfer_id, t.destination_account,
                   LEAST(d.amount_cents + \(marketplace.chargebackFeeRecoveryCents), t.amount_cents - t.amount_reversed),
                   d.currency
            FROM disputes d
            JOIN payments p ON p.id = d.payment_id AND p.kind = 'purchase'
            JOIN LATERAL (SELECT * FROM transfers t WHERE t.payment_id = p.id AND t.stripe_transfer_id IS NOT NULL
                          ORDER BY t.created_at LIMIT 1) t ON true
            WHERE d.kind = 'chargeback' AND (d.funds_withdrawn_cents > 0 OR d.status = 'lost') AND d.status <> 'won'
              AND d.amount_cents > 0 AND t.amount_cents > t.amount_reversed
              AND NOT EXISTS (SELECT 1 FROM chargeback_recoveries r WHERE r.dispute_id = d.id)
            ON CONFLICT (dispute_id) DO NOTHING
            """
        ).affectedRows
    }

    /// A won chargeback: a recovered amount is owed back to the seller, one not yet recovered is waived.
    private func settleWon() throws -> Int {
        try connection.query(
            """
            UPDATE chargeback_recoveries r
            SET status = CASE WHEN r.status = 'recovered' THEN 'undo_due' ELSE 'waived' END, next_attempt_at = now()
            FROM disputes d
            WHERE d.id = r.dispute_id AND d.status = 'won'
              AND (r.status = 'recovered' OR (r.status IN ('due', 'debt') AND NOT r.outcome_unknown))
            """
        ).affectedRows
    }

    /// One Stripe call for one recovery and its recorded outcome; true when its state changed.
    private func attempt(_ recovery: Recovery) throws -> Bool {
        let undo = recovery.status == "undo_due"
        do {
            let stripeID: String
            if undo {
                stripeID =
                    try stripe.createTransfer(
                        [
                            ("amount", .integer(recovery.amount)), ("currency", .string(recovery.currency)),
                            ("destination", .string(recovery.destinationAccount)),
                            (
                                "metadata",
                                .object([
                                    ("payment_id", .string(recovery.paymentID)),
                                    ("chargeback_won", .string(recovery.disputeID)),
                                ])
                            ),
                        ], idempotencyKey: StripeKeys.chargebackRecoveryUndo(recovery.disputeID)
                    ).id
            } else {
                stripeID =
                    try stripe.reverseTransfer(
                        recovery.transferID, amount: recovery.amount,
                        idempotencyKey: StripeKeys.chargebackRecovery(recovery.disputeID)
                    ).id
            }
            try record(recovery, outcome: undo ? "undone" : "recovered", stripeID: stripeID)
            return true
        } catch let error as StripeError where error.mayHaveSucceeded {
            // Retried next run under the same key, which returns what Stripe did.
            try connection.query(
                """
                UPDATE chargeback_recoveries SET outcome_unknown = true, attempts = attempts + 1,
                       last_error = 'outcome unknown'
                WHERE id = \(recovery.id)::uuid AND status = \(recovery.status)
                """)
            throw error
        } catch let error as StripeError {
            guard !undo else { throw error }  // an undo is retried as it is; nothing to tell
            try recordDebt(recovery, error: error)
            return recovery.status != "debt"
        }
    }

    private func record(_ recovery: Recovery, outcome: String, stripeID: String) throws {
        try connection.withTransaction { connection in
            guard
                try connection.query(
                    """
                    UPDATE chargeback_recoveries
                    SET status = \(outcome), attempts = attempts + 1, last_error = NULL, outcome_unknown = false,
                        stripe_reversal_id = CASE WHEN \(outcome) = 'recovered' THEN \(stripeID) ELSE stripe_reversal_id END,
                        stripe_undo_transfer_id = CASE WHEN \(outcome) = 'undone' THEN \(stripeID) ELSE stripe_undo_transfer_id END
                    WHERE id = \(recovery.id)::uuid AND status = \(recovery.status) RETURNING id
                    """
                ).first != nil
            else { return }  // another sweeper recorded it first
            if outcome == "recovered" {
                try TransferReversals.record(recovery.amount, of: recovery.transferID, on: connection)
            }
            try AuditLog.record(
                AuditEntry(
                    operation: outcome == "recovered" ? "chargeback.recovered" : "chargeback.recovery_undone",
                    entityType: "dispute", entityID: recovery.disputeID,
                    oldValues: ["status": .string(recovery.status)],
                    newValues: [
                        "status": .string(outcome), "amount": .int(recovery.amount), "stripe_id": .string(stripeID),
                    ]), context: .system("payments sweep"), on: connection)
            try Notifier.notify(
                recovery.sellerID,
                kind: outcome == "recovered" ? .chargebackRecovered : .chargebackRecoveryReturned,
                payload: [
                    "dispute_id": .string(recovery.disputeID), "payment_id": .string(recovery.paymentID),
                    "amount_cents": .int(recovery.amount),
                ], on: connection)
        }
    }

    /// Stripe refused the reversal: the seller owes the amount. Retried with backoff (10 minutes,
    /// doubling, at most a day apart); admins and the seller are told when the debt first arises.
    private func recordDebt(_ recovery: Recovery, error: StripeError) throws {
        try connection.withTransaction { connection in
            try connection.query(
                """
                UPDATE chargeback_recoveries
                SET status = 'debt', attempts = attempts + 1, last_error = \(error.code ?? error.kind.rawValue),
                    outcome_unknown = false,
                    next_attempt_at = now() + LEAST(interval '1 day', interval '10 minutes' * power(2, attempts))
                WHERE id = \(recovery.id)::uuid AND status IN ('due', 'debt')
                """)
            guard recovery.status == "due" else { return }
            try AuditLog.record(
                AuditEntry(
                    operation: "chargeback.recovery_refused", entityType: "dispute", entityID: recovery.disputeID,
                    newValues: ["status": "debt", "amount": .int(recovery.amount)], success: false,
                    errorCode: error.code ?? error.kind.rawValue), context: .system("payments sweep"), on: connection)
            let notice: [String: JSONValue] = [
                "dispute_id": .string(recovery.disputeID), "payment_id": .string(recovery.paymentID),
                "amount_cents": .int(recovery.amount),
            ]
            try Notifier.notifyAdmins(kind: .sellerDebt, payload: notice, on: connection)
            try Notifier.notify(recovery.sellerID, kind: .sellerDebt, payload: notice, on: connection)
        }
    }
}

/// A `chargeback_recoveries` row as the sweep acts on it.
private struct Recovery {
    let id: String
    let disputeID: String
    let paymentID: String
    let sellerID: String
    let transferID: String
    let destinationAccount: String
    let amount: Int64
    let currency: String
    let status: String

    init(row: Row) throws {
        id = try row.decode("id")
        disputeID = try row.decode("dispute_id")
        paymentID = try row.decode("payment_id")
        sellerID = try row.decode("seller_id")
        transferID = try row.decode("stripe_transfer_id")
        destinationAccount = try row.decode("destination_account")
        amount = try row.decode("amount_cents")
        currency = try row.decode("currency")
        status = try row.decode("status")
    }
}
