import Foundation
import Postgres
import Stripe

/// Releasing a funded milestone: a Transfer of amount − fee to the seller, paid from the
/// milestone's own charge (`source_transaction`), key `milestone:{id}:release`. Used by the
/// buyer's release and by an admin resolving a dispute in the seller's favour.
struct MilestoneRelease {
    let context: WorkerContext
    let audit: AuditContext

    /// What the release answers.
    struct Released: Encodable {
        let milestone_id, status, transfer_id, destination, currency: String
        let amount: Int64
    }

    /// Releases; `requiredBuyer` limits it to the buyer who funded it (nil for an admin).
    func release(_ milestoneID: UUID, requiredBuyer: UUID?, resolvingDispute: Bool = false) throws -> Released {
        let database = context.database
        // The milestone's current payment (the latest attempt that did not fail): its buyer may release.
        guard
            let row = try database.query(
                """
                SELECT m.status AS milestone_status, p.id AS payment_id, p.buyer_id, p.seller_id, p.amount_cents,
                       p.application_fee_cents, p.currency, p.stripe_charge_id, p.transfer_group, s.stripe_account_id
                FROM milestones m
                JOIN payments p ON p.milestone_id = m.id AND p.status NOT IN ('failed', 'canceled')
                JOIN profiles s ON s.id = p.seller_id
                WHERE m.id = \(milestoneID) ORDER BY p.created_at DESC LIMIT 1
                """
            ).first
        else { throw APIError.notFound }
        let buyer: UUID = try row.decode("buyer_id")
        guard requiredBuyer == nil || buyer == requiredBuyer else { throw APIError.notFound }
        let milestone = milestoneID.uuidString.lowercased()
        let paymentID: String = try row.decode("payment_id")
        let status: MilestoneStatus = try row.decode("milestone_status")
        if status.isReleased,
            let existing = try database.query(
                """
                SELECT stripe_transfer_id, destination_account, amount_cents, currency FROM transfers WHERE milestone_id = \(milestoneID)
                """
            ).first
        {
            return Released(
                milestone_id: milestone, status: MilestoneStatus.released.rawValue,
                transfer_id: try existing.decode("stripe_transfer_id"),
                destination: try existing.decode("destination_account"), currency: try existing.decode("currency"),
                amount: try existing.decode("amount_cents"))
        }
        guard status.isReleasable else {
            throw APIError(
                .milestoneNotFunded,
                message: "Only a funded milestone can be released (this one is \(status.rawValue)).")
        }
        // NULL until the charge succeeded, or while the seller has no connected account.
        guard let charge = try row.decodeIfPresent("stripe_charge_id", as: String.self),
            let destination = try row.decodeIfPresent("stripe_account_id", as: String.self)
        else {
            throw APIError(.milestoneNotFunded, message: "The milestone's charge is not recorded yet; retry shortly.")
        }
        let amount =
            try row.decode("amount_cents", as: Int64.self) - row.decode("application_fee_cents", as: Int64.self)
        let currency: String = try row.decode("currency")
        let transferGroup: String = try row.decode("transfer_group")
        let seller: String = try row.decode("seller_id")
        // The claim checks, under the payment's row lock, that no dispute is open (but the platform
        // dispute an admin's resolution is settling) and no refund is under way; a dispute opened
        // during the transfer waits.
        guard
            let claim = try context.claims.claim(
                paymentID, for: .release, from: ["succeeded"],
                resolvingDispute: resolvingDispute, on: database)
        else {
            throw APIError(.milestoneNotFunded, message: "The milestone's payment is not settled.")
        }
        let transfer: Transfer
        do {
            transfer = try context.stripe.createTransfer(
                [
                    ("amount", .integer(amount)),
                    ("currency", .string(currency)),
                    ("destination", .string(destination)),
                    ("source_transaction", .string(charge)),
                    ("transfer_group", .string(transferGroup)),
                    ("metadata", .object([("payment_id", .string(paymentID)), ("milestone_id", .string(milestone))])),
                ], idempotencyKey: StripeKeys.releaseMilestone(milestone))
        } catch {
            PaymentClaims.settle(claim, after: error, on: database)
            throw error
        }

        try database.withTransaction { connection in
            try connection.query(
                """
                INSERT INTO transfers (payment_id, milestone_id, stripe_transfer_id, destination_account, amount_cents, currency, status)
                VALUES (\(paymentID)::uuid, \(milestoneID), \(transfer.id), \(destination), \(transfer.amount), \(transfer.currency),
                        'created')
                ON CONFLICT DO NOTHING
                """)
            // A concurrent click (or the transfer.created webhook) may have stored the transfer
            // first: either unique key (transfer id, one per milestone) means it is recorded.
            let changed =
                try connection.query(
                    """
                    UPDATE milestones SET status = 'released' WHERE id = \(milestoneID) AND status = 'funded' RETURNING id
                    """
                ).first != nil
            try PaymentClaims.settle(claim, on: connection)
            // One row per transfer: a concurrent click that got Stripe's replay of it moved no money.
            guard changed else { return }
            try AuditLog.record(
                AuditEntry(
                    operation: "milestone.release", entityType: "milestone", entityID: milestone,
                    oldValues: ["status": "funded"],
                    newValues: [
                        "status": "released", "transfer_id": .string(transfer.id),
                        "amount": .int(transfer.amount),
                    ]),
                context: audit, on: connection)
            try Notifier.notify(
                seller, kind: .milestoneReleased,
                payload: ["milestone_id": .string(milestone), "amount_cents": .int(transfer.amount)],
                on: connection)
        }
        return Released(
            milestone_id: milestone, status: MilestoneStatus.released.rawValue, transfer_id: transfer.id,
            destination: destination, currency: transfer.currency, amount: transfer.amount)
    }
}
