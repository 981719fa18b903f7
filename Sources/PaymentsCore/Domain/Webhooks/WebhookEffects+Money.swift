import Foundation
import Postgres
import Stripe

/// Refunds, chargebacks, transfers and payouts, as webhook events report them.
extension WebhookEffects {
    /// Tracks a refund to its final status; refunds made outside the app are recorded too.
    func refundUpdated(_ refund: Refund) throws -> EffectOutcome {
        let updated = try connection.query(
            """
            UPDATE refunds SET status = \(refund.status ?? "pending"), failure_reason = \(refund.failureReason),
                   pending_reason = \(refund.pendingReason), last_event_created = \(event.created)
            WHERE stripe_refund_id = \(refund.id) AND last_event_created <= \(event.created)
              AND (status, pending_reason) IS DISTINCT FROM (\(refund.status ?? "pending"), \(refund.pendingReason))
            RETURNING id, payment_id
            """)
        if let row = updated.first {
            try AuditLog.record(
                AuditEntry(
                    operation: "refund.\(refund.status ?? "updated")", entityType: "refund",
                    entityID: try row.decode("id"), newValues: ["status": JSONValue(refund.status)],
                    metadata: eventMetadata), context: audit, on: connection)
            return .processed
        }
        if try connection.query("SELECT 1 FROM refunds WHERE stripe_refund_id = \(refund.id)").first != nil {
            return .processed
        }
        guard let intentID = refund.paymentIntent,
            let payment = try connection.query(
                "SELECT id, currency FROM payments WHERE stripe_payment_intent_id = \(intentID)"
            ).first
        else { return .parked }
        let paymentID: String = try payment.decode("id")
        let currency: String = try payment.decode("currency")
        try connection.query(
            """
            INSERT INTO refunds (payment_id, sequence, stripe_refund_id, amount_cents, currency, reason, status,
                                 failure_reason, pending_reason, last_event_created)
            SELECT \(paymentID)::uuid, COALESCE(MAX(sequence), 0) + 1, \(refund.id), \(refund.amount),
                   \(currency), \(refund.reason), \(refund.status ?? "pending"), \(refund.failureReason),
                   \(refund.pendingReason), \(event.created)
            FROM refunds WHERE payment_id = \(paymentID)::uuid
            ON CONFLICT (stripe_refund_id) DO NOTHING
            """)
        return .processed
    }

    /// Creates or updates the chargeback row; any event for it carries the whole dispute, so
    /// `closed` arriving before `created` still ends in the right state.
    func disputeChanged(_ dispute: Dispute) throws -> EffectOutcome {
        let chargeID = dispute.charge?.id
        guard
            let payment = try connection.query(
                """
                SELECT id, seller_id FROM payments
                WHERE stripe_payment_intent_id = \(dispute.paymentIntent) OR (\(chargeID)::text IS NOT NULL AND stripe_charge_id = \(chargeID))
                LIMIT 1
                """
            ).first
        else { return .parked }
        let paymentID: String = try payment.decode("id")
        let seller: String = try payment.decode("seller_id")
        let withdrawn: Int64 = event.type == "charge.dispute.funds_withdrawn" ? dispute.amount : 0
        let reinstated: Int64 = event.type == "charge.dispute.funds_reinstated" ? dispute.amount : 0
        let dueBy = dispute.evidenceDetails?.dueBy
        let upserted = try connection.query(
            """
            INSERT INTO disputes AS d (payment_id, kind, status, reason, stripe_dispute_id, amount_cents, currency, due_by,
                                       evidence_status, funds_withdrawn_cents, funds_reinstated_cents, last_event_created)
            VALUES (\(paymentID)::uuid, 'chargeback', \(dispute.status), \(dispute.reason ?? "unknown"), \(dispute.id),
                    \(dispute.amount), \(dispute.currency), to_timestamp(\(dueBy)),
                    \(Self.evidenceStatus(dispute.evidenceDetails)),
                    \(withdrawn), \(reinstated), \(event.created))
            ON CONFLICT (stripe_dispute_id) DO UPDATE SET
                status = CASE WHEN d.last_event_created <= EXCLUDED.last_event_created THEN EXCLUDED.status ELSE d.status END,
                amount_cents = EXCLUDED.amount_cents,
                due_by = COALESCE(EXCLUDED.due_by, d.due_by),
                evidence_status = CASE WHEN EXCLUDED.evidence_status = 'submitted' OR d.evidence_status IS NULL
                                            OR d.evidence_status = 'none' THEN EXCLUDED.evidence_status
                                       ELSE d.evidence_status END,
                funds_withdrawn_cents = GREATEST(d.funds_withdrawn_cents, EXCLUDED.funds_withdrawn_cents),
                funds_reinstated_cents = GREATEST(d.funds_reinstated_cents, EXCLUDED.funds_reinstated_cents),
                last_event_created = GREATEST(d.last_event_created, EXCLUDED.last_event_created)
            RETURNING id, status, (xmax = 0) AS inserted
            """
        ).first
        let disputeID: String? = try upserted?.decode("id")
        let status: DisputeStatus? = try upserted?.decode("status")
        try Disputes.refreshFlag(paymentID: paymentID, on: connection)
        try AuditLog.record(
            AuditEntry(
                operation: event.type, entityType: "dispute", entityID: disputeID,
                newValues: ["status": JSONValue(status?.rawValue), "amount_cents": .int(dispute.amount)],
                metadata: eventMetadata), context: audit, on: connection)
        if try upserted?.decode("inserted", as: Bool.self) == true {
            let notice: [String: JSONValue] = [
                "payment_id": .string(paymentID), "dispute_id": JSONValue(disputeID),
                "amount_cents": .int(dispute.amount), "reason": JSONValue(dispute.reason),
            ]
            try Notifier.notifyAdmins(kind: .chargebackOpened, payload: notice, on: connection)
            try Notifier.notify(seller, kind: .chargebackOpened, payload: notice, on: connection)
        }
        return .processed
    }

    /// none → staged → submitted, and never back (a late event must not undo staged evidence).
    static func evidenceStatus(_ details: Dispute.EvidenceDetails?) -> String {
        if (details?.submissionCount ?? 0) > 0 { return "submitted" }
        return details?.hasEvidence == true ? "staged" : "none"
    }

    func transferChanged(_ transfer: Transfer) throws -> EffectOutcome {
        guard
            let payment = try connection.query(
                """
                SELECT id, milestone_id FROM payments
                WHERE id::text = \(transfer.metadata?["payment_id"]) OR stripe_charge_id = \(transfer.sourceTransaction)
                LIMIT 1
                """
            ).first
        else { return .parked }
        let paymentID: String = try payment.decode("id")
        // NULL for a purchase (the transfer its destination charge made).
        let milestoneID: String? = try payment.decodeIfPresent("milestone_id")
        // Our transfers always go to a connected account; one without is not ours to record.
        guard let destination = transfer.destination else {
            throw WebhookEffectError(description: "transfer \(transfer.id) has no destination account")
        }
        let reversed = transfer.amountReversed
        let status = reversed == 0 ? "created" : reversed >= transfer.amount ? "reversed" : "partially_reversed"
        try connection.query(
            """
            INSERT INTO transfers AS t (payment_id, milestone_id, stripe_transfer_id, destination_account, amount_cents,
                                        amount_reversed, currency, status, last_event_created)
            VALUES (\(paymentID)::uuid, \(milestoneID)::uuid, \(transfer.id), \(destination),
                    \(transfer.amount), \(reversed), \(transfer.currency), \(status), \(event.created))
            ON CONFLICT (stripe_transfer_id) DO UPDATE SET
                amount_reversed = GREATEST(t.amount_reversed, EXCLUDED.amount_reversed),
                status = CASE WHEN GREATEST(t.amount_reversed, EXCLUDED.amount_reversed) = 0 THEN 'created'
                              WHEN GREATEST(t.amount_reversed, EXCLUDED.amount_reversed) >= t.amount_cents THEN 'reversed'
                              ELSE 'partially_reversed' END,
                last_event_created = GREATEST(t.last_event_created, EXCLUDED.last_event_created)
            """)
        return .processed
    }

    func payoutChanged(_ payout: Payout) throws -> EffectOutcome {
        guard let account = event.account else { return .ignored }
        let changed = try connection.query(
            """
            INSERT INTO payouts AS p (stripe_payout_id, account, profile_id, amount_cents, currency, status, arrival_date,
                                      failure_code, last_event_created)
            VALUES (\(payout.id), \(account), (SELECT id FROM profiles WHERE stripe_account_id = \(account)), \(payout.amount),
                    \(payout.currency), \(payout.status), \(payout.arrivalDate), \(payout.failureCode), \(event.created))
            ON CONFLICT (stripe_payout_id) DO UPDATE SET status = EXCLUDED.status, failure_code = EXCLUDED.failure_code,
                last_event_created = EXCLUDED.last_event_created
            WHERE p.last_event_created <= EXCLUDED.last_event_created AND p.status IS DISTINCT FROM EXCLUDED.status
            RETURNING profile_id::text AS profile_id
            """
        ).first
        // NULL when no profile holds the account.
        if let changed, let profile = try changed.decodeIfPresent("profile_id", as: String.self) {
            try Notifier.notify(
                profile, kind: event.type == "payout.paid" ? .payoutPaid : .payoutFailed,
                payload: [
                    "payout_id": .string(payout.id), "amount_cents": .int(payout.amount),
                    "currency": .string(payout.currency),
                ], on: connection)
        }
        return .processed
    }
}
