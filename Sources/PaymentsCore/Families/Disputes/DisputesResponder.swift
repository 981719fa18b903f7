import Foundation
import Postgres

/// Buyers and sellers open platform disputes: `POST /api/payments/{id}/disputes`.
struct DisputesResponder {
    func addRoutes(to router: inout Router) {
        router.add(
            "POST", "/api/payments/{id}/disputes", body: .json, access: .roles([.buyer, .seller]),
            rateLimits: [.dispute],
            audit: AuditTarget("dispute.open", entity: "payment"), open)
    }

    /// One open platform dispute per payment; it blocks capture and release until an admin
    /// resolves it; the other party and the admins are told.
    private func open(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let paymentID = try PathParameter.uuid(request, "id")
        let body = try JSONBody(request)
        let reason = try body.string("reason", maximumLength: 200)
        let details = try body.optionalString("details", maximumLength: 5000, multiline: true)
        let row = try context.database.withTransaction { connection -> Row in
            // The row lock orders this against capture, cancel and release, which claim the same row.
            guard
                let payment = try connection.query(
                    """
                    SELECT id, buyer_id, seller_id, status,
                           \(sql: PaymentClaims.isLive) AS is_claimed
                    FROM payments
                    WHERE id = \(paymentID) AND (buyer_id = \(identity.profileID) OR seller_id = \(identity.profileID)) FOR UPDATE
                    """
                ).first
            else { throw APIError.notFound }
            guard payment.bool("is_claimed") != true else { throw PaymentClaims.inProgress }
            let status = try payment.decode("status", as: PaymentStatus.self)
            guard [.requiresCapture, .succeeded, .refunded, .processing].contains(status) else {
                throw APIError(
                    .paymentNotDisputable,
                    message: "Only an authorised or paid payment can be disputed (this one is \(status.rawValue)).")
            }
            guard
                try connection.query(
                    """
                    SELECT 1 FROM disputes WHERE payment_id = \(paymentID) AND kind = 'platform' AND status = 'open'
                    """
                ).first == nil
            else {
                throw APIError(.disputeAlreadyOpen)
            }
            guard
                let dispute = try connection.query(
                    """
                    INSERT INTO disputes (payment_id, kind, status, opened_by, reason, details)
                    VALUES (\(paymentID), 'platform', 'open', \(identity.profileID), \(reason), \(details))
                    RETURNING id::text AS id
                    """
                ).first, let disputeID = dispute["id"]
            else { throw APIError.internalError }
            try Disputes.refreshFlag(paymentID: paymentID.uuidString.lowercased(), on: connection)
            try AuditLog.record(
                AuditEntry(
                    operation: "dispute.open", entityType: "dispute", entityID: disputeID,
                    newValues: [
                        "status": "open", "reason": .string(reason),
                        "payment_id": .string(paymentID.uuidString.lowercased()),
                    ]),
                request: request, on: connection)
            let notice: [String: JSONValue] = [
                "dispute_id": .string(disputeID), "payment_id": .string(paymentID.uuidString.lowercased()),
            ]
            let other = payment.uuid("buyer_id") == identity.profileID ? payment["seller_id"] : payment["buyer_id"]
            if let other { try Notifier.notify(other, kind: "dispute_opened", payload: notice, on: connection) }
            try Notifier.notifyAdmins(kind: "dispute_opened", payload: notice, on: connection)
            return try connection.query(
                """
                SELECT \(sql: Disputes.columns) FROM disputes d JOIN payments p ON p.id = d.payment_id WHERE d.id = \(disputeID)::uuid
                """
            ).first ?? dispute
        }
        return .json(Disputes.view(row), status: 201)
    }
}
