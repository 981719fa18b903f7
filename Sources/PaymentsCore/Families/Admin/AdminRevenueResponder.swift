import Foundation
import Postgres

/// The platform's revenue by day: what buyers paid, the platform's fees, Stripe's fees, and what
/// the platform kept.
struct AdminRevenueResponder {
    func addRoutes(to router: inout Router) {
        router.add(
            "GET", "/api/admin/revenue", access: .roles([.admin]), rateLimits: [.adminRead],
            audit: AuditTarget("revenue.report", entity: "payment"), report)
    }

    /// `?since=&until=` (Unix seconds or RFC 3339; default the last 30 days), by UTC day of the
    /// payment's creation. Captured payments count (`succeeded`, `refunded`): `gross` is what was
    /// received, `application_fees` the platform's fees, `stripe_fees` Stripe's processing fees
    /// (recorded by the sweeper once a charge is captured; `unrecorded_fees` counts charges still
    /// waiting for theirs), `net` = `application_fees − stripe_fees`, `refunded` what went back.
    private func report(_ request: Request, _ context: WorkerContext) throws -> Response {
        let now = Int64(Date().timeIntervalSince1970)
        let since = try QueryParameter.time(request, "since") ?? now - 30 * 86_400
        let until = try QueryParameter.time(request, "until") ?? now
        guard until >= since, until - since <= 366 * 86_400 else {
            throw APIError.invalidField("until", "must be after since, at most a year later")
        }
        let rows = try context.database.query(
            """
            SELECT to_char(date_trunc('day', created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS day, currency,
                   count(*)::bigint AS charges, sum(amount_received)::bigint AS gross,
                   sum(application_fee_cents)::bigint AS application_fees,
                   COALESCE(sum(stripe_fee_cents), 0)::bigint AS stripe_fees,
                   count(*) FILTER (WHERE stripe_fee_cents IS NULL)::bigint AS unrecorded_fees,
                   sum(amount_refunded)::bigint AS refunded
            FROM payments
            WHERE status IN ('succeeded', 'refunded')
              AND created_at >= to_timestamp(\(since)) AND created_at < to_timestamp(\(until))
            GROUP BY 1, 2 ORDER BY 1, 2
            """
        ).rows
        struct Day: Encodable {
            let day, currency: String
            let charges, gross, application_fees, stripe_fees, net, refunded, unrecorded_fees: Int64
        }
        let days = try rows.map { row in
            let fees: Int64 = try row.decode("application_fees")
            let stripeFees: Int64 = try row.decode("stripe_fees")
            return Day(
                day: try row.decode("day"), currency: try row.decode("currency"), charges: try row.decode("charges"),
                gross: try row.decode("gross"), application_fees: fees, stripe_fees: stripeFees, net: fees - stripeFees,
                refunded: try row.decode("refunded"), unrecorded_fees: try row.decode("unrecorded_fees"))
        }
        return .json(["data": days])
    }
}
