import Foundation
import Postgres

/// Buyers and sellers open platform disputes: `POST /api/payments/{id}/disputes`; a seller
/// answers the chargebacks of its direct charges: `POST /api/disputes/{id}/evidence`.
struct DisputesResponder {
    func addRoutes(to router: inout Router) {
        router.add(
            "POST", "/api/payments/{id}/disputes", body: .json, access: .roles([.buyer, .seller]),
            rateLimits: [.dispute],
            audit: AuditTarget("dispute.open", entity: "payment"), open)
        router.add(
            "POST", "/api/disputes/{id}/evidence", body: .json, access: .roles([.seller]), rateLimits: [.dispute],
            audit: AuditTarget("dispute.evidence", entity: "dispute"), lane: .stripe, evidence)
    }

    /// A direct charge's chargeback is the seller's to bear (issue 16), so the seller answers it:
    /// evidence staged or submitted on the seller's account. Another seller's dispute is `404`
    /// (its existence does not leak); a destination charge's chargeback is the platform's to
    /// answer, by an admin (`403`).
    private func evidence(_ request: Request, _ context: WorkerContext) throws -> Response {
        let seller = try request.requireIdentity().profileID.uuidString.lowercased()
        return try ChargebackEvidence.answer(request, context) { dispute in
            guard dispute.payment.seller_id == seller else { throw APIError.notFound }
            guard dispute.payment.charge_model == .direct else {
                throw APIError(
                    .forbidden,
                    message:
                        "A destination charge's chargeback is the platform's to answer: an admin submits its evidence.")
            }
        }
    }

    /// One open platform dispute per payment; it blocks capture and release until an admin
    /// resolves it; the other party and the admins are told.
    private func open(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let paymentID = try PathParameter.uuid(request, "id")
        let body = try JSONBody(request)
        let reason = try body.string("reason", maximumLength: 200)
        let details = try body.optionalString("details", maximumLength: 5000, multiline: true)
        let dispute = try context.database.withTransaction { connection -> DisputeRow in
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
            guard try !payment.decode("is_claimed", as: Bool.self) else { throw PaymentClaims.inProgress }
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
            let disputeID = UUID()
            try connection.query(
                """
                INSERT INTO disputes (id, payment_id, kind, status, opened_by, reason, details)
                VALUES (\(disputeID), \(paymentID), 'platform', 'open', \(identity.profileID), \(reason), \(details))
                """)
            try Disputes.refreshFlag(paymentID: paymentID.uuidString.lowercased(), on: connection)
            try AuditLog.record(
                AuditEntry(
                    operation: "dispute.open", entityType: "dispute", entityID: disputeID.uuidString.lowercased(),
                    newValues: [
                        "status": "open", "reason": .string(reason),
                        "payment_id": .string(paymentID.uuidString.lowercased()),
                    ]),
                request: request, on: connection)
            let notice: [String: JSONValue] = [
                "dispute_id": .string(disputeID.uuidString.lowercased()),
                "payment_id": .string(paymentID.uuidString.lowercased()),
            ]
            let buyer: UUID = try payment.decode("buyer_id")
            let other: UUID = buyer == identity.profileID ? try payment.decode("seller_id") : buyer
            try Notifier.notify(
                other.uuidString.lowercased(), kind: .disputeOpened, payload: notice, on: connection)
            try Notifier.notifyAdmins(kind: .disputeOpened, payload: notice, on: connection)
            guard let dispute = try DisputeRow.find(disputeID, on: connection) else { throw APIError.internalError }
            return dispute
        }
        return .json(dispute, status: 201)
    }
}
