import Foundation
import Postgres

/// Admins find payments and refund them without a dispute (a goodwill refund).
struct AdminPaymentsResponder {
    func addRoutes(to router: inout Router) {
        let admin = Access.roles([.admin])
        router.add(
            "GET", "/api/admin/payments", access: admin, rateLimits: [.adminRead],
            audit: AuditTarget("payment.search", entity: "payment"), search)
        router.add(
            "POST", "/api/admin/payments/{id}/refund", body: .json, access: admin, rateLimits: [.adminRefund],
            audit: AuditTarget("payment.refund", entity: "payment"), lane: .stripe, refund)
    }

    /// Payments newest first, filtered by status, buyer, seller, listing and creation time.
    private func search(_ request: Request, _ context: WorkerContext) throws -> Response {
        let status = try QueryParameter.choice(request, "status", from: PaymentStatus.allCases.map(\.rawValue))
        let buyer = try QueryParameter.uuid(request, "buyer")
        let seller = try QueryParameter.uuid(request, "seller")
        let listing = try QueryParameter.uuid(request, "listing")
        let since = try QueryParameter.time(request, "since")
        let until = try QueryParameter.time(request, "until")
        let limit = try QueryParameter.limit(request, standard: 50)
        let cursor = try PageCursor.from(request)
        let rows = try context.database.query(
            """
            SELECT \(sql: PaymentRecord.columns), \(sql: PageCursor.sortKey("p")) AS sort_key FROM payments p
            WHERE (\(status)::text IS NULL OR p.status = \(status))
              AND (\(buyer)::uuid IS NULL OR p.buyer_id = \(buyer))
              AND (\(seller)::uuid IS NULL OR p.seller_id = \(seller))
              AND (\(listing)::uuid IS NULL OR p.listing_id = \(listing))
              AND (\(since)::bigint IS NULL OR p.created_at >= to_timestamp(\(since)))
              AND (\(until)::bigint IS NULL OR p.created_at < to_timestamp(\(until)))
              AND \(sql: PageCursor.after(cursor, alias: "p"))
            ORDER BY p.created_at DESC, p.id DESC LIMIT \(limit + 1)
            """
        ).rows
        let (page, next) = try PageCursor.page(rows, limit: limit)
        return .json(Page(data: try page.map(PaymentRecord.init(row:)), next_cursor: next))
    }

    /// Refunds part (`amount`) or all of what is left of a captured payment, with a required
    /// `reason`. The same caps, locks, numbered Stripe keys and audit as a dispute's refunds; a
    /// payment with an open dispute is refunded through its dispute instead.
    private func refund(_ request: Request, _ context: WorkerContext) throws -> Response {
        let id = try PathParameter.uuid(request, "id")
        let body = try JSONBody(request)
        let amount = try body.integer("amount", in: 1...Int64(Int32.max) * 1000)
        let reason = try body.string("reason", maximumLength: 500, multiline: true)
        let refund = try Refunds(context: context, audit: AuditContext(request: request))
            .refund(
                paymentID: id.uuidString.lowercased(), scope: .goodwill, requested: amount, reason: reason,
                requestKey: Refunds.requestKey(request))
        return .json(refund, status: 201)
    }
}
