import Foundation
import Postgres
import Stripe

/// What applying an event did.
enum EffectOutcome: String {
    /// The effect ran (or was already in place: a repeated or stale event changes nothing).
    case processed
    /// The object it concerns is not in our database yet; retried when it appears.
    case parked
    /// A type (or endpoint) we do not act on.
    case ignored
}

/// An event whose payload cannot be applied (malformed object): recorded as `failed`.
struct WebhookEffectError: Error, CustomStringConvertible {
    let description: String
}

/// An authorisation Stripe holds for a payment that will not go ahead: cancelled at Stripe
/// after the event's transaction commits (key `payment:{id}:cancel`).
struct IntentCancellation: Equatable {
    let paymentID: String
    let intentID: String
}

/// Applies one Stripe event to our tables, inside the caller's transaction, through the guarded
/// transitions of sql/0002. Notifications and audit rows are written only when a row really
/// changed, so duplicates and stale events leave no trace. Stripe calls the event makes
/// necessary are collected in `cancellations` for after the commit.
struct WebhookEffects {
    let event: Event
    let payload: [UInt8]
    let endpoint: WebhookEndpoint
    let connection: Connection
    let audit: AuditContext
    /// Intents to cancel once the transaction has committed.
    private(set) var cancellations: [IntentCancellation] = []

    init(event: Event, payload: [UInt8], endpoint: WebhookEndpoint, connection: Connection, audit: AuditContext) {
        self.event = event
        self.payload = payload
        self.endpoint = endpoint
        self.connection = connection
        self.audit = audit
    }

    /// Event types acted on, per endpoint; everything else is stored as `ignored`.
    static func isHandled(_ type: String, on endpoint: WebhookEndpoint) -> Bool {
        switch endpoint {
        case .platform:
            return type.hasPrefix("payment_intent.") || type == "charge.refunded" || type == "charge.refund.updated"
                || type.hasPrefix("charge.dispute.") || type == "transfer.created" || type == "transfer.reversed"
        case .connect:
            return ["account.updated", "account.application.deauthorized", "payout.paid", "payout.failed"].contains(type)
        }
    }

    mutating func apply() throws -> EffectOutcome {
        guard Self.isHandled(event.type, on: endpoint) else { return .ignored }
        switch event.type {
        case "payment_intent.amount_capturable_updated":
            let intent = try object(PaymentIntent.self)
            let captureBefore = (intent.created ?? event.created) + 7 * 86_400
            let outcome = try transition(intent.id, operation: "payment.authorized", notify: .seller("payment_authorized"), call: """
                payment_capturable_atomic(b.intent, \(event.created), \(intent.amountCapturable ?? intent.amount),
                                          to_timestamp(\(captureBefore)))
                """)
            // An authorisation that arrives for a payment we already gave up on must not stay on the card.
            if let payment = try connection.query("""
                SELECT id::text AS id FROM payments WHERE stripe_payment_intent_id = \(intent.id) AND status IN ('failed', 'canceled')
                """).first?["id"] {
                cancellations.append(IntentCancellation(paymentID: payment, intentID: intent.id))
            }
            return outcome
        case "payment_intent.succeeded":
            let intent = try object(PaymentIntent.self)
            return try transition(intent.id, operation: "payment.succeeded", notify: .both("payment_succeeded"), call: """
                payment_complete_atomic(b.intent, \(event.created), \(intent.amountReceived ?? intent.amount), \(intent.latestCharge?.id))
                """)
        case "payment_intent.payment_failed":
            let intent = try object(PaymentIntent.self)
            let error = intent.lastPaymentError
            var failedPayment: String?
            let outcome = try transition(intent.id, operation: "payment.failed", notify: .buyer("payment_failed"), call: """
                payment_fail_atomic(b.intent, \(event.created), \(error?.declineCode ?? error?.code), \(error?.message))
                """, changed: { failedPayment = $0["id"] })
            // The buyer retries through a new payment; the failed intent must not take a later card.
            if let failedPayment { cancellations.append(IntentCancellation(paymentID: failedPayment, intentID: intent.id)) }
            return outcome
        case "payment_intent.canceled":
            let intent = try object(PaymentIntent.self)
            return try transition(intent.id, operation: "payment.canceled", notify: .both("payment_canceled"), call: """
                payment_cancel_atomic(b.intent, \(event.created))
                """)
        case "charge.refunded":
            return try chargeRefunded(try object(Charge.self))
        case "charge.refund.updated":
            return try refundUpdated(try object(Refund.self))
        case let type where type.hasPrefix("charge.dispute."):
            return try disputeChanged(try object(Dispute.self))
        case "transfer.created", "transfer.reversed":
            return try transferChanged(try object(Transfer.self))
        case "payout.paid", "payout.failed":
            return try payoutChanged(try object(Payout.self))
        case "account.updated":
            return try accountUpdated(try object(Account.self))
        case "account.application.deauthorized":
            return try accountDeauthorized()
        default:
            return .ignored
        }
    }

    // MARK: Payments

    private enum Recipients {
        case buyer(String), seller(String), both(String), nobody
    }

    /// Runs a guarded transition in one round trip: the payment row is locked first (the
    /// lateral call references it, so it runs after), then the transition function. No row:
    /// the payment is unknown (parked); a row with no change: stale or repeated (processed).
    private func transition(_ intentID: String, operation: String, notify: Recipients, call: SQLQuery,
                            changed onChange: (Row) -> Void = { _ in }) throws -> EffectOutcome {
        guard let row = try connection.query("""
            SELECT c.*, b.status AS old_status, (c.id IS NOT NULL) AS changed
            FROM (SELECT stripe_payment_intent_id AS intent, status FROM payments
                  WHERE stripe_payment_intent_id = \(intentID) FOR UPDATE) b
            LEFT JOIN LATERAL \(sql: call) c ON true
            """).first else { return .parked }
        guard row.bool("changed") == true else { return .processed }
        onChange(row)
        try record(payment: row, operation: operation, oldStatus: row["old_status"])
        try notifyParties(notify, payment: row)
        return .processed
    }

    private func chargeRefunded(_ charge: Charge) throws -> EffectOutcome {
        guard let intentID = charge.paymentIntent else { return .ignored }
        let captured = charge.amountCaptured ?? 0
        if captured > 0 {
            // The refund implies the capture; apply it first in case its event has not arrived yet.
            let outcome = try transition(intentID, operation: "payment.succeeded", notify: .both("payment_succeeded"), call: """
                payment_complete_atomic(b.intent, \(event.created), \(captured), \(charge.id))
                """)
            if outcome == .parked { return .parked }
        }
        return try transition(intentID, operation: "payment.refunded", notify: .both("payment_refunded"), call: """
            payment_refund_atomic(b.intent, \(event.created), \(captured), \(charge.amountRefunded ?? 0))
            """)
    }

    /// Tracks a refund to its final status; refunds made outside the app are recorded too.
    private func refundUpdated(_ refund: Refund) throws -> EffectOutcome {
        let updated = try connection.query("""
            UPDATE refunds SET status = \(refund.status ?? "pending"), failure_reason = \(refund.failureReason),
                   last_event_created = \(event.created)
            WHERE stripe_refund_id = \(refund.id) AND last_event_created <= \(event.created)
              AND status IS DISTINCT FROM \(refund.status ?? "pending")
            RETURNING id, payment_id
            """)
        if let row = updated.first {
            try AuditLog.record(AuditEntry(operation: "refund.\(refund.status ?? "updated")", entityType: "refund",
                                           entityID: row["id"], newValues: ["status": JSONValue(refund.status)],
                                           metadata: eventMetadata), context: audit, on: connection)
            return .processed
        }
        if try connection.query("SELECT 1 FROM refunds WHERE stripe_refund_id = \(refund.id)").first != nil {
            return .processed
        }
        guard let intentID = refund.paymentIntent,
              let payment = try connection.query("SELECT id, currency FROM payments WHERE stripe_payment_intent_id = \(intentID)").first
        else { return .parked }
        try connection.query("""
            INSERT INTO refunds (payment_id, sequence, stripe_refund_id, amount_cents, currency, reason, status,
                                 failure_reason, last_event_created)
            SELECT \(payment["id"])::uuid, COALESCE(MAX(sequence), 0) + 1, \(refund.id), \(refund.amount),
                   \(payment["currency"]), \(refund.reason), \(refund.status ?? "pending"), \(refund.failureReason),
                   \(event.created)
            FROM refunds WHERE payment_id = \(payment["id"])::uuid
            ON CONFLICT (stripe_refund_id) DO NOTHING
            """)
        return .processed
    }

    // MARK: Disputes, transfers, payouts

    /// Creates or updates the chargeback row; any event for it carries the whole dispute, so
    /// `closed` arriving before `created` still ends in the right state.
    private func disputeChanged(_ dispute: Dispute) throws -> EffectOutcome {
        let chargeID = dispute.charge?.id
        guard let payment = try connection.query("""
            SELECT id, seller_id FROM payments
            WHERE stripe_payment_intent_id = \(dispute.paymentIntent) OR (\(chargeID)::text IS NOT NULL AND stripe_charge_id = \(chargeID))
            LIMIT 1
            """).first, let paymentID = payment["id"] else { return .parked }
        let withdrawn: Int64 = event.type == "charge.dispute.funds_withdrawn" ? dispute.amount : 0
        let reinstated: Int64 = event.type == "charge.dispute.funds_reinstated" ? dispute.amount : 0
        let dueBy = dispute.evidenceDetails?.dueBy
        let upserted = try connection.query("""
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
            """).first
        let isOpen = !["won", "lost", "warning_closed"].contains(upserted?["status"] ?? "")
        try connection.query("""
            UPDATE payments SET is_disputed = \(isOpen) OR EXISTS (
                SELECT 1 FROM disputes WHERE payment_id = \(paymentID)::uuid AND status IN ('open')
            ) WHERE id = \(paymentID)::uuid
            """)
        try AuditLog.record(AuditEntry(operation: event.type, entityType: "dispute", entityID: upserted?["id"],
                                       newValues: ["status": JSONValue(upserted?["status"]), "amount_cents": .int(dispute.amount)],
                                       metadata: eventMetadata), context: audit, on: connection)
        if upserted?.bool("inserted") == true {
            let notice: [String: JSONValue] = ["payment_id": .string(paymentID), "dispute_id": JSONValue(upserted?["id"]),
                                               "amount_cents": .int(dispute.amount), "reason": JSONValue(dispute.reason)]
            try Notifier.notifyAdmins(kind: "chargeback_opened", payload: notice, on: connection)
            if let seller = payment["seller_id"] {
                try Notifier.notify(seller, kind: "chargeback_opened", payload: notice, on: connection)
            }
        }
        return .processed
    }

    /// none → staged → submitted, and never back (a late event must not undo staged evidence).
    private static func evidenceStatus(_ details: Dispute.EvidenceDetails?) -> String {
        if (details?.submissionCount ?? 0) > 0 { return "submitted" }
        return details?.hasEvidence == true ? "staged" : "none"
    }

    private func transferChanged(_ transfer: Transfer) throws -> EffectOutcome {
        guard let payment = try connection.query("""
            SELECT id, milestone_id FROM payments
            WHERE id::text = \(transfer.metadata?["payment_id"]) OR stripe_charge_id = \(transfer.sourceTransaction)
            LIMIT 1
            """).first, let paymentID = payment["id"] else { return .parked }
        let reversed = transfer.amountReversed ?? 0
        let status = reversed == 0 ? "created" : reversed >= transfer.amount ? "reversed" : "partially_reversed"
        try connection.query("""
            INSERT INTO transfers AS t (payment_id, milestone_id, stripe_transfer_id, destination_account, amount_cents,
                                        amount_reversed, currency, status, last_event_created)
            VALUES (\(paymentID)::uuid, \(payment["milestone_id"])::uuid, \(transfer.id), \(transfer.destination ?? ""),
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

    private func payoutChanged(_ payout: Payout) throws -> EffectOutcome {
        guard let account = event.account else { return .ignored }
        let changed = try connection.query("""
            INSERT INTO payouts AS p (stripe_payout_id, account, profile_id, amount_cents, currency, status, arrival_date,
                                      failure_code, last_event_created)
            VALUES (\(payout.id), \(account), (SELECT id FROM profiles WHERE stripe_account_id = \(account)), \(payout.amount),
                    \(payout.currency), \(payout.status), \(payout.arrivalDate), \(payout.failureCode), \(event.created))
            ON CONFLICT (stripe_payout_id) DO UPDATE SET status = EXCLUDED.status, failure_code = EXCLUDED.failure_code,
                last_event_created = EXCLUDED.last_event_created
            WHERE p.last_event_created <= EXCLUDED.last_event_created AND p.status IS DISTINCT FROM EXCLUDED.status
            RETURNING profile_id::text AS profile_id
            """).first
        if let profile = changed?["profile_id"] {
            try Notifier.notify(profile, kind: event.type == "payout.paid" ? "payout_paid" : "payout_failed",
                                payload: ["payout_id": .string(payout.id), "amount_cents": .int(payout.amount),
                                          "currency": .string(payout.currency)], on: connection)
        }
        return .processed
    }

    // MARK: Connect accounts

    private func accountUpdated(_ account: Account) throws -> EffectOutcome {
        guard let before = try connection.query("""
            SELECT id, charges_enabled FROM profiles WHERE stripe_account_id = \(account.id) FOR UPDATE
            """).first, let profileID = before["id"] else { return .parked }
        let due = String(decoding: JSONCoding.encode((account.requirements?.currentlyDue ?? []).map(JSONValue.string)), as: UTF8.self)
        let changed = try connection.query("""
            UPDATE profiles SET charges_enabled = \(account.chargesEnabled), payouts_enabled = \(account.payoutsEnabled),
                   details_submitted = \(account.detailsSubmitted), requirements_due = \(due)::jsonb,
                   disabled_reason = \(account.requirements?.disabledReason), account_synced_at = now(),
                   account_event_created = \(event.created)
            WHERE id = \(profileID)::uuid AND account_event_created <= \(event.created)
            RETURNING charges_enabled
            """).first
        guard let changed else { return .processed }
        if changed.bool("charges_enabled") != before.bool("charges_enabled") {
            try AuditLog.record(AuditEntry(operation: "account.updated", entityType: "profile", entityID: profileID,
                                           oldValues: ["charges_enabled": .bool(before.bool("charges_enabled") ?? false)],
                                           newValues: ["charges_enabled": .bool(account.chargesEnabled)], metadata: eventMetadata),
                                context: audit, on: connection)
            try Notifier.notify(profileID, kind: account.chargesEnabled ? "account_enabled" : "account_restricted",
                                payload: ["account": .string(account.id)], on: connection)
        }
        return .processed
    }

    private func accountDeauthorized() throws -> EffectOutcome {
        guard let account = event.account else { return .ignored }
        guard let profile = try connection.query("""
            UPDATE profiles SET charges_enabled = false, payouts_enabled = false, disabled_reason = 'application_deauthorized',
                   account_event_created = GREATEST(account_event_created, \(event.created))
            WHERE stripe_account_id = \(account) RETURNING id::text AS id
            """).first, let profileID = profile["id"] else { return .parked }
        try AuditLog.record(AuditEntry(operation: "account.deauthorized", entityType: "profile", entityID: profileID,
                                       newValues: ["charges_enabled": false], metadata: eventMetadata),
                            context: audit, on: connection)
        try Notifier.notify(profileID, kind: "account_deauthorized", payload: ["account": .string(account)], on: connection)
        return .processed
    }

    // MARK: Helpers

    private var eventMetadata: [String: JSONValue] {
        ["event_id": .string(event.id), "event_type": .string(event.type)]
    }

    private func object<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try Event.object(type, from: payload)
        } catch {
            throw WebhookEffectError(description: "data.object of \(event.type) is not a valid \(type)")
        }
    }

    private func record(payment: Row, operation: String, oldStatus: String?) throws {
        try AuditLog.record(AuditEntry(operation: operation, entityType: "payment", entityID: payment["id"],
                                       oldValues: ["status": JSONValue(oldStatus)],
                                       newValues: ["status": JSONValue(payment["status"]),
                                                   "amount_received": .int(Int64(payment.int("amount_received") ?? 0)),
                                                   "amount_refunded": .int(Int64(payment.int("amount_refunded") ?? 0))],
                                       metadata: eventMetadata), context: audit, on: connection)
    }

    private func notifyParties(_ audience: Recipients, payment: Row) throws {
        let payload: [String: JSONValue] = ["payment_id": JSONValue(payment["id"]), "status": JSONValue(payment["status"]),
                                            "amount_cents": .int(Int64(payment.int("amount_cents") ?? 0))]
        let recipients: [String?]
        let kind: String
        switch audience {
        case .buyer(let name): (recipients, kind) = ([payment["buyer_id"]], name)
        case .seller(let name): (recipients, kind) = ([payment["seller_id"]], name)
        case .both(let name): (recipients, kind) = ([payment["buyer_id"], payment["seller_id"]], name)
        case .nobody: return
        }
        try Notifier.notify(recipients.compactMap { $0 }, kind: kind, payload: payload, on: connection)
    }
}
