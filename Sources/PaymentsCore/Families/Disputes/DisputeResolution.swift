import Foundation
import Postgres
import Stripe

/// An admin settling a platform dispute (`POST /api/admin/disputes/{id}/resolve`): claim the
/// dispute for one outcome, move the money that outcome calls for, close the dispute.
struct DisputeResolution {
    /// Settles an open platform dispute: `refund_buyer` refunds what is left (or cancels an
    /// uncaptured authorisation), `release_seller` captures the purchase or releases the
    /// milestone, `dismiss` only closes it. The dispute is claimed for one outcome before any
    /// Stripe call, so two admins can never both move money; a settled dispute cannot be
    /// settled again.
    func resolve(_ request: Request, _ context: WorkerContext) throws -> Response {
        let id = try PathParameter.uuid(request, "id")
        let body = try JSONBody(request)
        let outcome = try body.choice("outcome", from: ["refund_buyer", "release_seller", "dismiss"])
        let note = try body.optionalString("note", maximumLength: 2000, multiline: true)
        let audit = AuditContext(request: request)
        guard let dispute = try DisputeRow.find(id, on: context.database) else { throw APIError.notFound }
        let paymentID = dispute.payment_id
        let parties = [dispute.payment.buyer_id, dispute.payment.seller_id]
        let disputeID = id.uuidString.lowercased()
        try claimResolution(
            id, outcome: outcome, lease: context.shared.configuration.requestLease, on: context.database)
        do {
            try settleMoney(
                outcome, disputeID: disputeID, paymentID: paymentID, note: note, request: request,
                context: context)
        } catch {
            // Nothing moved: the dispute is open again for any outcome. Outcome unknown: this
            // attempt is over, so the same outcome may resume at once (under the same Stripe
            // keys), while another stays refused.
            let unknown = error.mayHaveMovedMoney
            _ = try? context.database.query(
                """
                UPDATE disputes
                SET resolving_outcome = CASE WHEN \(unknown) THEN resolving_outcome END, resolving_expires_at = now()
                WHERE id = \(id) AND status = 'open' AND resolving_outcome = \(outcome)
                """)
            throw error
        }

        let resolved = try context.database.withTransaction { connection -> DisputeRow in
            guard
                try connection.query(
                    """
                    UPDATE disputes SET status = \(outcome == "dismiss" ? "dismissed" : "resolved"), outcome = \(outcome),
                           resolution_note = \(note), resolved_by = \(audit.actorProfileID), resolved_at = now(),
                           resolving_outcome = NULL, resolving_expires_at = NULL
                    WHERE id = \(id) AND status = 'open' AND resolving_outcome = \(outcome) RETURNING id
                    """
                ).first != nil
            else {
                throw APIError(.disputeNotOpen, message: "This dispute was resolved meanwhile.")
            }
            try Disputes.refreshFlag(paymentID: paymentID, on: connection)
            try AuditLog.record(
                AuditEntry(
                    operation: "dispute.resolve", entityType: "dispute", entityID: disputeID,
                    oldValues: ["status": "open"],
                    newValues: [
                        "status": .string(outcome == "dismiss" ? "dismissed" : "resolved"),
                        "outcome": .string(outcome), "note": JSONValue(note),
                    ]),
                context: audit, on: connection)
            for party in parties {
                try Notifier.notify(
                    party, kind: .disputeResolved,
                    payload: ["dispute_id": .string(disputeID), "outcome": .string(outcome)], on: connection)
            }
            return try DisputeRow.find(id, on: connection) ?? dispute
        }
        return .json(resolved)
    }

    /// Claims an open platform dispute for `outcome`: `409 dispute_not_open` when it is not
    /// one, `409 dispute_resolution_in_progress` while another resolution holds it (or, once
    /// that one's lease has run out, when it was for another outcome: it may have moved money).
    private func claimResolution(_ id: UUID, outcome: String, lease: Duration, on connection: some SQLExecutor) throws {
        guard
            try connection.query(
                """
                UPDATE disputes SET resolving_outcome = \(outcome),
                       resolving_expires_at = now() + make_interval(secs => \(Int(lease.components.seconds) + 1))
                WHERE id = \(id) AND kind = 'platform' AND status = 'open'
                  AND (resolving_outcome IS NULL OR (resolving_outcome = \(outcome) AND resolving_expires_at <= now()))
                RETURNING id
                """
            ).first == nil
        else { return }
        guard
            let current = try connection.query(
                """
                SELECT kind, status, resolving_outcome FROM disputes WHERE id = \(id)
                """
            ).first, try current.decode("kind", as: DisputeKind.self) == .platform,
            try current.decode("status", as: DisputeStatus.self).isOpen
        else {
            throw APIError(.disputeNotOpen)
        }
        // NULL when the holder's claim ended meanwhile.
        let holder = try current.decodeIfPresent("resolving_outcome", as: String.self) ?? "another outcome"
        throw APIError(
            .disputeResolutionInProgress,
            message:
                "This dispute is being resolved as \(holder); retry that outcome to finish it, or wait.",
            headers: [("Retry-After", "5")])
    }

    /// Moves the money an outcome calls for.
    private func settleMoney(
        _ outcome: String, disputeID: String, paymentID: String, note: String?, request: Request,
        context: WorkerContext
    ) throws {
        let audit = AuditContext(request: request)
        guard
            let payment = try context.database.query(
                """
                SELECT \(sql: PaymentRecord.columns) FROM payments p WHERE p.id = \(paymentID)::uuid
                """
            ).first
        else { throw APIError.notFound }
        let status: PaymentStatus = try payment.decode("status")
        let kind: PaymentKind = try payment.decode("kind")
        // NULL until its intent is attached; a purchase has no milestone.
        let intentID: String? = try payment.decodeIfPresent("stripe_payment_intent_id")
        let milestoneID: UUID? = try payment.decodeIfPresent("milestone_id")
        switch outcome {
        case "refund_buyer":
            if status.isCapturable, let intent = intentID {
                guard
                    let claim = try context.claims.claim(
                        paymentID, for: .cancel, from: ["requires_capture"],
                        resolvingDispute: true, on: context.database)
                else {
                    throw APIError(
                        .paymentNotCancellable,
                        message: "The authorisation changed meanwhile; look at the payment and resolve again.")
                }
                do {
                    try context.stripe.cancelIntent(
                        intent, ofPayment: paymentID, reason: .requestedByCustomer,
                        account: claim.payment.stripeAccount)
                } catch {
                    PaymentClaims.settle(claim, after: error, on: context.database)
                    throw error
                }
                try context.database.withTransaction { connection in
                    let changed =
                        try connection.query("SELECT status FROM payment_cancel_atomic(\(intent), 0)").first != nil
                    try PaymentClaims.settle(claim, on: connection)
                    try AuditLog.record(
                        AuditEntry(
                            operation: "payment.cancel", entityType: "payment", entityID: paymentID,
                            oldValues: ["status": "requires_capture"], newValues: ["status": "canceled"],
                            metadata: [
                                "dispute_id": .string(disputeID),
                                "recorded_by_webhook_first": .bool(!changed),
                            ]),
                        context: audit, on: connection)
                }
            } else if [.succeeded, .refunded].contains(status),
                try payment.decode("amount_received", as: Int64.self)
                    > payment.decode("amount_refunded", as: Int64.self)
            {
                do {
                    _ = try Refunds(context: context, audit: audit).refund(
                        paymentID: paymentID, scope: .dispute(disputeID),
                        requested: nil, reason: note ?? "dispute resolved",
                        requestKey: Refunds.requestKey(request))
                } catch let error as APIError where error.code == "nothing_to_refund" {
                    // Earlier partial refunds already returned everything: nothing left to move.
                }
            }
        case "release_seller":
            if kind == .purchase, status.isCapturable {
                try PurchaseCapture(context: context, audit: audit).capture(
                    paymentID, amount: nil, resolvingDispute: true)
            } else if kind == .milestone, let milestone = milestoneID {
                _ = try MilestoneRelease(context: context, audit: audit).release(
                    milestone, requiredBuyer: nil,
                    resolvingDispute: true)
            }
        default:
            break
        }
    }
}
