import Foundation
import Postgres

/// Admins settle disputes: list, inspect, refund, resolve, and answer chargebacks with evidence.
/// Every action is audited with the admin, request id, IP and user agent — success or failure.
struct AdminDisputesResponder {
    func addRoutes(to router: inout Router) {
        let admin = Access.roles([.admin])
        router.add("GET", "/api/admin/disputes", access: admin, list)
        router.add("GET", "/api/admin/disputes/{id}", access: admin, show)
        router.add(
            "POST", "/api/admin/disputes/{id}/refund", body: .json, access: admin, rateLimits: [.adminRefund],
            audit: AuditTarget("dispute.refund", entity: "dispute"), lane: .stripe, refund)
        router.add(
            "POST", "/api/admin/disputes/{id}/resolve", body: .json, access: admin, rateLimits: [.adminResolve],
            audit: AuditTarget("dispute.resolve", entity: "dispute"), lane: .stripe, DisputeResolution().resolve)
        router.add(
            "POST", "/api/admin/disputes/{id}/evidence", body: .json, access: admin, rateLimits: [.adminEvidence],
            audit: AuditTarget("dispute.evidence", entity: "dispute"), lane: .stripe, evidence)
    }

    private func list(_ request: Request, _ context: WorkerContext) throws -> Response {
        let status = request.query["status"]
        let kind = request.query["kind"]
        if let kind, !["platform", "chargeback"].contains(kind) {
            throw APIError.invalidField("kind", "must be platform or chargeback")
        }
        if let status, status.count > 40 || !status.allSatisfy({ $0.isLetter || $0 == "_" }) {
            throw APIError.invalidField("status", "is not a dispute status")
        }
        let cursor = try PageCursor.from(request)
        let rows = try context.database.query(
            """
            SELECT \(sql: DisputeRow.columns), \(sql: PageCursor.sortKey("d")) AS sort_key
            FROM disputes d JOIN payments p ON p.id = d.payment_id
            WHERE (\(status)::text IS NULL OR d.status = \(status)) AND (\(kind)::text IS NULL OR d.kind = \(kind))
              AND \(sql: PageCursor.after(cursor, alias: "d"))
            ORDER BY d.created_at DESC, d.id DESC LIMIT 51
            """
        ).rows
        let (page, next) = try PageCursor.page(rows, limit: 50)
        return .json(Page(data: try page.map(DisputeRow.init(row:)), next_cursor: next))
    }

    /// The dispute, its payment and parties, refunds, and its history from the audit log.
    private func show(_ request: Request, _ context: WorkerContext) throws -> Response {
        let id = try PathParameter.uuid(request, "id")
        guard let dispute = try DisputeRow.find(id, on: context.database) else { throw APIError.notFound }
        let refunds = try context.database.query(
            """
            SELECT id::text AS id, stripe_refund_id, amount_cents, status, reason, iso8601(created_at) AS created_at
            FROM refunds WHERE dispute_id = \(id) ORDER BY sequence
            """
        ).rows
        let refundViews: [JSONValue] = try refunds.map {
            // A refund has no Stripe id until Stripe answered, and no reason when made outside the app.
            [
                "id": .string(try $0.decode("id")),
                "stripe_refund_id": JSONValue(try $0.decodeIfPresent("stripe_refund_id", as: String.self)),
                "amount": .int(try $0.decode("amount_cents")), "status": .string(try $0.decode("status")),
                "reason": JSONValue(try $0.decodeIfPresent("reason", as: String.self)),
                "created_at": .string(try $0.decode("created_at")),
            ]
        }
        let history = try context.database.query(
            """
            SELECT iso8601(occurred_at) AS at, operation, actor_profile_id::text AS actor, actor_role, success, error_code,
                   request_id, old_values::text AS old_values, new_values::text AS new_values
            FROM payment_audit_logs
            WHERE (entity_type = 'dispute' AND entity_id = \(id.uuidString.lowercased()))
               OR (entity_type = 'payment' AND entity_id = \(dispute.payment_id))
            ORDER BY id
            """
        ).rows
        let historyViews: [JSONValue] = try history.map {
            [
                "at": .string(try $0.decode("at")), "operation": .string(try $0.decode("operation")),
                // May be NULL (a webhook has no actor profile, a success no error code): shown as null.
                "actor_profile_id": JSONValue(try $0.decodeIfPresent("actor", as: String.self)),
                "actor_role": JSONValue(try $0.decodeIfPresent("actor_role", as: String.self)),
                "success": .bool(try $0.decode("success")),
                "error_code": JSONValue(try $0.decodeIfPresent("error_code", as: String.self)),
                "request_id": JSONValue(try $0.decodeIfPresent("request_id", as: String.self)),
                "old_values": try $0.decodeIfPresent("old_values", as: JSONValue.self) ?? .null,
                "new_values": try $0.decodeIfPresent("new_values", as: JSONValue.self) ?? .null,
            ]
        }
        // A chargeback's recovery from the seller (CHARGEBACK_LIABILITY=seller), or null.
        let recovery: JSONValue =
            try context.database.query(
                """
                SELECT status, amount_cents, attempts, last_error, stripe_reversal_id, stripe_undo_transfer_id,
                       iso8601(next_attempt_at) AS next_attempt_at
                FROM chargeback_recoveries WHERE dispute_id = \(id)
                """
            ).first.map { row in
                [
                    "status": .string(try row.decode("status")), "amount": .int(try row.decode("amount_cents")),
                    "attempts": .int(try row.decode("attempts")),
                    "last_error": JSONValue(try row.decodeIfPresent("last_error", as: String.self)),
                    "stripe_reversal_id": JSONValue(try row.decodeIfPresent("stripe_reversal_id", as: String.self)),
                    "stripe_undo_transfer_id": JSONValue(
                        try row.decodeIfPresent("stripe_undo_transfer_id", as: String.self)),
                    "next_attempt_at": .string(try row.decode("next_attempt_at")),
                ]
            } ?? .null
        struct Detail: Encodable {
            let dispute: DisputeRow
            let refunds: [JSONValue]
            let history: [JSONValue]
            let recovery: JSONValue

            // The dispute's own fields at the top level, beside its refunds, history and recovery.
            func encode(to encoder: any Encoder) throws {
                try dispute.encode(to: encoder)
                var container = encoder.container(keyedBy: Keys.self)
                try container.encode(refunds, forKey: .refunds)
                try container.encode(history, forKey: .history)
                try container.encode(recovery, forKey: .recovery)
            }
            enum Keys: String, CodingKey { case refunds, history, recovery }
        }
        return .json(Detail(dispute: dispute, refunds: refundViews, history: historyViews, recovery: recovery))
    }

    /// Full or partial refund of the disputed payment, cumulative, never above what was captured.
    private func refund(_ request: Request, _ context: WorkerContext) throws -> Response {
        let id = try PathParameter.uuid(request, "id")
        let body = try JSONBody(request)
        let amount = try body.integer("amount", in: 1...Int64(Int32.max) * 1000)
        let reason = try body.string("reason", maximumLength: 500, multiline: true)
        guard let dispute = try DisputeRow.find(id, on: context.database) else { throw APIError.notFound }
        let paymentID = dispute.payment_id
        let refund = try Refunds(context: context, audit: AuditContext(request: request))
            .refund(
                paymentID: paymentID, scope: .dispute(id.uuidString.lowercased()), requested: amount, reason: reason,
                requestKey: Refunds.requestKey(request))
        return .json(refund, status: 201)
    }

    /// Stages chargeback evidence at Stripe (`submit: false`) or submits it (`submit: true`): any
    /// chargeback, on the account that owns the disputed charge.
    private func evidence(_ request: Request, _ context: WorkerContext) throws -> Response {
        try ChargebackEvidence.answer(request, context) { _ in }
    }
}
