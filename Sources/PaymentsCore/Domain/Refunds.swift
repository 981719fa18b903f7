import Foundation
import Postgres
import Stripe

/// What an admin's refund answers: a dispute, or nothing but the admin's judgement (a goodwill
/// refund). Refunds are numbered within their scope, and the number keys their Stripe calls.
enum RefundScope {
    case dispute(String)
    case goodwill

    var disputeID: String? {
        if case .dispute(let id) = self { id } else { nil }
    }

    /// The audit operation and the entity it is recorded on.
    func auditTarget(paymentID: String) -> (operation: String, entityType: String, entityID: String) {
        switch self {
        case .dispute(let id): ("dispute.refund", "dispute", id)
        case .goodwill: ("payment.refund", "payment", paymentID)
        }
    }

    func refundKey(paymentID: String, number: Int) -> String {
        switch self {
        case .dispute(let id): StripeKeys.disputeRefund(id, number: number)
        case .goodwill: StripeKeys.paymentRefund(paymentID, number: number)
        }
    }

    func reversalKey(paymentID: String, number: Int) -> String {
        switch self {
        case .dispute(let id): StripeKeys.disputeReversal(id, number: number)
        case .goodwill: StripeKeys.paymentReversal(paymentID, number: number)
        }
    }
}

/// A refund as the admin API answers it.
struct RefundRecord: Encodable {
    let id: String
    /// NULL until Stripe has answered.
    @Nullable var stripe_refund_id: String?
    let amount: Int64
    let status: String
    /// Why a `pending` refund waits, as Stripe says: `insufficient_funds` when the balance of
    /// the seller's account cannot cover a direct charge's refund yet (it completes by itself
    /// once it can; docs/payments.md). NULL otherwise.
    @Nullable var pending_reason: String?

    init(row: Row) throws {
        id = try row.decode("id")
        stripe_refund_id = try row.decodeIfPresent("stripe_refund_id")
        amount = try row.decode("amount_cents")
        status = try row.decode("status")
        pending_reason = try row.decodeIfPresent("pending_reason")
    }
}

/// Refunds decided by an admin, on a dispute or as a goodwill gesture. The amount is reserved
/// (a `refunds` row) while the payment row is locked, so concurrent refunds can never add up to
/// more than was captured; the Stripe key (`dispute:{id}:refund:{n}`, `payment:{id}:refund:{n}`)
/// makes each numbered refund happen once.
struct Refunds {
    let context: WorkerContext
    let audit: AuditContext

    /// The request's `Idempotency-Key`, scoped to its admin (keys are per profile), or nil.
    static func requestKey(_ request: Request) -> String? {
        guard let identity = request.identity, let key = request.header("idempotency-key") else { return nil }
        return "\(identity.profileID.uuidString.lowercased()):\(key)"
    }

    /// Refunds `requested` (or everything not yet refunded) of the payment; returns the refund row.
    /// `requestKey` names the request (its profile and `Idempotency-Key`), when it has one.
    ///
    /// A refund whose Stripe call ended without an outcome (a lost response, a 5xx, a timeout)
    /// is kept, its amount still reserved, and resumed under the same keys by the next refund
    /// of the same amount on the dispute (another amount gets `409 refund_in_progress` until it
    /// is settled), or by a retry under the same `Idempotency-Key`: so a retry never refunds twice.
    func refund(
        paymentID: String, scope: RefundScope, requested: Int64?, reason: String?, requestKey: String?
    ) throws -> RefundRecord {
        let disputeID = scope.disputeID
        let target = scope.auditTarget(paymentID: paymentID)
        let database = context.database
        let reservation = try database.withTransaction { connection -> Row in
            // Lock first, then read: a statement that waited for the lock would still see the
            // refunds as they were before it waited (READ COMMITTED takes its snapshot at start).
            guard
                let locked = try connection.query(
                    """
                    SELECT \(sql: PaymentClaims.isLive) AS claimed, is_disputed
                    FROM payments WHERE id = \(paymentID)::uuid FOR UPDATE
                    """
                ).first
            else { throw APIError.notFound }
            // A capture or release under way (an admin's resolution, say) moves this money first.
            // NULL (a claim without an expiry) holds nothing.
            guard try locked.decodeIfPresent("claimed", as: Bool.self) != true else { throw PaymentClaims.inProgress }
            // A disputed payment's money is moved by settling its dispute, which records why.
            if disputeID == nil, try locked.decode("is_disputed", as: Bool.self) {
                throw APIError(
                    .paymentDisputed,
                    message:
                        "This payment has an open dispute: refund it through the dispute (/api/admin/disputes/{id}/refund)."
                )
            }
            if let resumed = try resumable(
                paymentID: paymentID, disputeID: disputeID, requested: requested, requestKey: requestKey,
                on: connection)
            {
                return resumed
            }
            guard
                let payment = try connection.query(
                    """
                    SELECT status, amount_received, amount_refunded, currency, kind, charge_model,
                           amount_received - COALESCE((SELECT sum(amount_cents) FROM refunds
                               WHERE payment_id = payments.id AND status NOT IN ('failed', 'canceled')), 0) AS remainder
                    FROM payments WHERE id = \(paymentID)::uuid
                    """
                ).first
            else { throw APIError.notFound }
            guard [.succeeded, .refunded].contains(try payment.decode("status", as: PaymentStatus.self)) else {
                throw APIError(.paymentNotCaptured)
            }
            let remainder: Int64 = try payment.decode("remainder")
            let currency: String = try payment.decode("currency")
            let alreadyRefunded: Int64 = try payment.decode("amount_refunded")
            let amount = requested ?? remainder
            let refundsFee = try feeChoice(
                kind: payment.decode("kind"), model: payment.decode("charge_model"))
            guard remainder > 0 else {
                throw APIError(.nothingToRefund)
            }
            guard amount <= remainder else {
                throw APIError(
                    .refundExceedsCaptured, message: "At most \(remainder) can still be refunded on this payment.")
            }
            guard
                let row = try connection.query(
                    """
                    INSERT INTO refunds (payment_id, dispute_id, sequence, amount_cents, currency, reason, status, created_by,
                                         attempt, request_key, refund_application_fee)
                    VALUES (\(paymentID)::uuid, \(disputeID)::uuid,
                            (SELECT COALESCE(max(sequence), 0) + 1 FROM refunds WHERE payment_id = \(paymentID)::uuid),
                            \(amount), \(currency), \(reason), 'creating', \(audit.actorProfileID),
                            (SELECT count(*) + 1 FROM refunds WHERE payment_id = \(paymentID)::uuid
                               AND dispute_id IS NOT DISTINCT FROM \(disputeID)::uuid AND attempt IS NOT NULL),
                            \(requestKey), \(refundsFee))
                    RETURNING id::text AS id, amount_cents, attempt AS number, stripe_refund_id, refund_application_fee,
                              \(alreadyRefunded)::bigint AS refunded_before
                    """
                ).first
            else { throw APIError.internalError }
            return row
        }
        let refundID: String = try reservation.decode("id")
        if try reservation.decodeIfPresent("stripe_refund_id", as: String.self) != nil {
            // This request's own refund, finished before its answer was stored: answer it again.
            return try RefundRecord(row: settledRow(refundID, on: database))
        }
        let amount: Int64 = try reservation.decode("amount_cents")
        let number: Int = try reservation.decode("number")
        let refundedBefore: JSONValue = .int(try reservation.decode("refunded_before"))
        // NULL: reserved before the choice was recorded, when the fee was always refunded.
        let refundsFee = try reservation.decodeIfPresent("refund_application_fee", as: Bool.self) ?? true

        let refund: Refund
        do {
            try reverseReleasedTransfer(
                paymentID: paymentID, amount: amount, key: scope.reversalKey(paymentID: paymentID, number: number))
            let (parameters, account) = try parameters(
                paymentID: paymentID, amount: amount, disputeID: disputeID, refundID: refundID,
                refundsFee: refundsFee)
            refund = try context.stripe.createRefund(
                parameters, idempotencyKey: scope.refundKey(paymentID: paymentID, number: number), account: account)
        } catch {
            let code = (error as? StripeError)?.code ?? (error as? APIError)?.code ?? "stripe_error"
            let unknown = error.mayHaveMovedMoney
            try? database.withTransaction { connection in
                // Refused: the reservation is freed. Outcome unknown: it stays, to be resumed.
                try connection.query(
                    unknown
                        ? "UPDATE refunds SET outcome_unknown = true, failure_reason = \(code) WHERE id = \(refundID)::uuid"
                        : "UPDATE refunds SET status = 'failed', failure_reason = \(code) WHERE id = \(refundID)::uuid")
                try AuditLog.record(
                    AuditEntry(
                        operation: target.operation, entityType: target.entityType, entityID: target.entityID,
                        oldValues: ["amount_refunded": refundedBefore],
                        newValues: [
                            "refund_id": .string(refundID), "amount": .int(amount),
                            "outcome_unknown": .bool(unknown),
                        ],
                        success: false, errorCode: code), context: audit, on: connection)
            }
            throw error
        }

        return try database.withTransaction { connection -> RefundRecord in
            let status = refund.status ?? "pending"
            guard
                let row = try connection.query(
                    """
                    UPDATE refunds SET stripe_refund_id = \(refund.id), status = \(status),
                                       pending_reason = \(refund.pendingReason)
                    WHERE id = \(refundID)::uuid
                    RETURNING id::text AS id, stripe_refund_id, amount_cents, status, pending_reason, sequence
                    """
                ).first
            else { throw APIError.internalError }
            try connection.query(
                """
                SELECT payment_refund_atomic(p.stripe_payment_intent_id, 0::bigint, p.amount_received,
                       (SELECT COALESCE(sum(amount_cents), 0)::bigint FROM refunds WHERE payment_id = p.id
                          AND status IN ('pending', 'requires_action', 'succeeded')))
                FROM payments p WHERE p.id = \(paymentID)::uuid
                """)
            let refundedAfter = try connection.query(
                "SELECT amount_refunded FROM payments WHERE id = \(paymentID)::uuid"
            )
            .first?.decode("amount_refunded", as: Int64.self)
            try AuditLog.record(
                AuditEntry(
                    operation: target.operation, entityType: target.entityType, entityID: target.entityID,
                    oldValues: ["amount_refunded": refundedBefore],
                    newValues: [
                        "refund_id": .string(refundID), "stripe_refund_id": .string(refund.id),
                        "amount": .int(amount), "status": .string(status),
                        "pending_reason": JSONValue(refund.pendingReason),
                        "amount_refunded": refundedAfter.map { .int($0) } ?? .null,
                    ]),
                context: audit, on: connection)
            if let buyer = try connection.query(
                "SELECT buyer_id::text AS id FROM payments WHERE id = \(paymentID)::uuid"
            ).first?.decode("id", as: String.self) {
                try Notifier.notify(
                    buyer, kind: .refundIssued,
                    payload: ["payment_id": .string(paymentID), "amount_cents": .int(amount)], on: connection)
            }
            return try RefundRecord(row: row)
        }
    }

    /// A refund to resume instead of making a new one, claimed in the caller's transaction:
    /// this request's own (same `Idempotency-Key`), or one whose outcome is unknown. Throws
    /// `409 refund_in_progress` when an unknown one is of another amount.
    private func resumable(
        paymentID: String, disputeID: String?, requested: Int64?, requestKey: String?,
        on connection: Connection
    ) throws -> Row? {
        let columns: SQLQuery = """
            id::text AS id, amount_cents, attempt AS number, stripe_refund_id, refund_application_fee,
            (SELECT amount_refunded FROM payments WHERE id = payment_id) AS refunded_before
            """
        if let requestKey,
            let own = try connection.query(
                """
                UPDATE refunds SET outcome_unknown = false
                WHERE payment_id = \(paymentID)::uuid AND dispute_id IS NOT DISTINCT FROM \(disputeID)::uuid
                  AND request_key = \(requestKey) AND attempt IS NOT NULL
                  AND status <> 'failed'
                RETURNING \(sql: columns)
                """
            ).first
        {
            return own
        }
        guard
            let unknown = try connection.query(
                """
                SELECT id, amount_cents FROM refunds
                WHERE payment_id = \(paymentID)::uuid AND dispute_id IS NOT DISTINCT FROM \(disputeID)::uuid
                  AND status = 'creating' AND outcome_unknown AND attempt IS NOT NULL
                ORDER BY created_at LIMIT 1
                """
            ).first
        else { return nil }
        let id: String = try unknown.decode("id")
        let amount: Int64 = try unknown.decode("amount_cents")
        guard requested == nil || requested == amount else {
            throw APIError(
                .refundInProgress,
                message:
                    "A refund of \(amount) on this payment is still being settled with Stripe; retry that amount first.",
                headers: [("Retry-After", "5")])
        }
        return try connection.query(
            """
            UPDATE refunds SET outcome_unknown = false WHERE id = \(id)::uuid RETURNING \(sql: columns)
            """
        ).first
    }

    /// A refund row as `refund` returns it.
    private func settledRow(_ refundID: String, on database: some SQLExecutor) throws -> Row {
        guard
            let row = try database.query(
                """
                SELECT id::text AS id, stripe_refund_id, amount_cents, status, pending_reason, sequence
                FROM refunds WHERE id = \(refundID)::uuid
                """
            ).first
        else { throw APIError.internalError }
        return row
    }

    /// Whether a new refund gives the platform's fee back, recorded on its row: always for a
    /// destination charge, as the operator chose (`DIRECT_REFUND_APPLICATION_FEE`) for a direct
    /// one; nil for a platform charge (a milestone), which has no application fee.
    private func feeChoice(kind: PaymentKind, model: ChargeModel) -> Bool? {
        switch (kind, model) {
        case (.purchase, .destination): true
        case (.purchase, .direct): context.shared.configuration.marketplace.directRefundApplicationFee
        case (.milestone, _): nil
        }
    }

    /// The refund's parameters and the account it is made on. Destination charges take the
    /// seller's share back with the refund (`reverse_transfer`) and the platform's fee; a direct
    /// charge is refunded on the seller's account (the payment row's `stripe_account`), from the
    /// seller's balance, with the platform's fee given back to it (`refund_application_fee`) when
    /// the refund's row says so (`refundsFee`); a platform charge (milestone) is refunded from
    /// the platform alone.
    private func parameters(
        paymentID: String, amount: Int64, disputeID: String?, refundID: String, refundsFee: Bool
    ) throws -> (
        [(String, StripeParameter)], account: String?
    ) {
        guard
            let payment = try context.database.query(
                """
                SELECT kind, charge_model, stripe_account, stripe_payment_intent_id FROM payments
                WHERE id = \(paymentID)::uuid
                """
            ).first,
            // NULL while the payment has no intent: nothing to refund at Stripe.
            let intent = try payment.decodeIfPresent("stripe_payment_intent_id", as: String.self)
        else { throw APIError.notFound }
        var parameters: [(String, StripeParameter)] = [
            ("payment_intent", .string(intent)), ("amount", .integer(amount)), ("reason", "requested_by_customer"),
            (
                "metadata",
                .object(
                    (disputeID.map { [("dispute_id", .string($0))] } ?? [])
                        + [("refund_id", .string(refundID)), ("payment_id", .string(paymentID))])
            ),
        ]
        let account: String? = try payment.decodeIfPresent("stripe_account")
        switch (
            try payment.decode("kind", as: PaymentKind.self), try payment.decode("charge_model", as: ChargeModel.self)
        ) {
        case (.purchase, .destination): parameters += [("reverse_transfer", true), ("refund_application_fee", true)]
        case (.purchase, .direct): parameters += [("refund_application_fee", .boolean(refundsFee))]
        case (.milestone, _): break
        }
        return (parameters, account)
    }

    /// A released milestone's transfer is reversed first, up to what is left of it.
    private func reverseReleasedTransfer(paymentID: String, amount: Int64, key: String) throws {
        guard
            let transfer = try context.database.query(
                """
                SELECT t.stripe_transfer_id, t.amount_cents - t.amount_reversed AS left_over
                FROM transfers t JOIN payments p ON p.id = t.payment_id
                WHERE t.payment_id = \(paymentID)::uuid AND p.kind = 'milestone' AND t.stripe_transfer_id IS NOT NULL
                """
            ).first
        else { return }
        let transferID: String = try transfer.decode("stripe_transfer_id")
        let reversal = min(amount, try transfer.decode("left_over", as: Int64.self))
        guard reversal > 0 else { return }
        switch Result(catching: { () throws(StripeError) in
            try context.stripe.reverseTransfer(transferID, amount: reversal, idempotencyKey: key)
        }) {
        case .success: break
        case .failure(let error) where error.kind == .idempotency:
            // A resumed refund whose reversal already went through (and was recorded, so what
            // is left of the transfer, and with it the amount, changed): the key was used.
            return
        case .failure(let error): throw error
        }
        try TransferReversals.record(reversal, of: transferID, on: context.database)
    }
}
