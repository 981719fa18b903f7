import Foundation
import Postgres
import Stripe

/// What a seller's money is doing: the balance of their connected account (asked of Stripe) and
/// the payouts to their bank (mirrored from `payout.*` events).
struct SellerMoneyResponder {
    func addRoutes(to router: inout Router) {
        router.add("GET", "/api/connect/balance", access: .roles([.seller]), lane: .stripe, balance)
        router.add("GET", "/api/connect/payouts", access: .roles([.seller]), payouts)
    }

    /// The seller's own account balance, available and pending by currency; `409 not_onboarded`
    /// until the seller has a connected account.
    private func balance(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        guard
            let profile = try ProfileRow.find(
                identity.profileID, terms: context.shared.configuration.marketplace.purchaseTerms, on: context.database),
            let account = profile.stripeAccountID
        else { throw APIError(.notOnboarded) }
        let balance: Balance = try context.stripe.get("/v1/balance", account: account)
        struct Money: Encodable {
            let amount: Int64
            let currency: String
        }
        struct View: Encodable {
            let account_id: String
            let available, pending: [Money]
            let payout_delay_days: Int
        }
        let money = { (amounts: [Balance.Money]) in amounts.map { Money(amount: $0.amount, currency: $0.currency) } }
        return .json(
            View(
                account_id: account, available: money(balance.available), pending: money(balance.pending),
                payout_delay_days: context.shared.configuration.marketplace.payoutDelayDays))
    }

    /// The seller's payouts, newest first, a page at a time.
    private func payouts(_ request: Request, _ context: WorkerContext) throws -> Response {
        let identity = try request.requireIdentity()
        let limit = try QueryParameter.limit(request)
        let cursor = try PageCursor.from(request)
        let rows = try context.database.query(
            """
            SELECT o.id, o.stripe_payout_id, o.amount_cents, o.currency, o.status,
                   iso8601(to_timestamp(o.arrival_date)) AS arrival_date, o.failure_code,
                   iso8601(o.created_at) AS created_at, \(sql: PageCursor.sortKey("o")) AS sort_key
            FROM payouts o
            WHERE o.profile_id = \(identity.profileID) AND \(sql: PageCursor.after(cursor, alias: "o"))
            ORDER BY o.created_at DESC, o.id DESC LIMIT \(limit + 1)
            """
        ).rows
        let (page, next) = try PageCursor.page(rows, limit: limit)
        return .json(Page(data: try page.map(PayoutRecord.init(row:)), next_cursor: next))
    }
}

/// A payout as its seller sees it.
private struct PayoutRecord: Encodable {
    let id: String
    let amount: Int64
    let currency: String
    /// Stripe's payout status: `pending`, `in_transit`, `paid`, `failed`, `canceled`.
    let status: String
    @Nullable var arrival_date: String?
    @Nullable var failure_code: String?
    let created_at: String

    init(row: Row) throws {
        id = try row.decode("stripe_payout_id")
        amount = try row.decode("amount_cents")
        currency = try row.decode("currency")
        status = try row.decode("status")
        arrival_date = try row.decodeIfPresent("arrival_date")
        failure_code = try row.decodeIfPresent("failure_code")
        created_at = try row.decode("created_at")
    }
}
