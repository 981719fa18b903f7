import Foundation
import Postgres

/// `GET /api/listings`: what a buyer can buy, for the buyer page (nginx/static/buyer). Read-only;
/// listings themselves are made by the marketplace application, not through this API.
struct ListingsResponder {
    func addRoutes(to router: inout Router) {
        router.add("GET", "/api/listings", access: .signedIn, list)
    }

    /// Active listings, newest first, `?kind=item|job`, cursor pagination; each says whether its
    /// seller can take payments yet (create-intent answers `409 seller_not_ready` otherwise).
    private func list(_ request: Request, _ context: WorkerContext) throws -> Response {
        _ = try request.requireIdentity()
        let kind = try QueryParameter.choice(request, "kind", from: ["item", "job"])
        let limit = try QueryParameter.limit(request)
        let cursor = try PageCursor.from(request)
        // An item is bought under the configured model; a job's milestones are platform charges.
        let purchaseGaps = SQLQuery(
            unsafeSQL: SellerGaps.call("s", terms: context.shared.configuration.marketplace.purchaseTerms))
        let fundingGaps = SQLQuery(unsafeSQL: SellerGaps.call("s", terms: .platformCharge))
        let rows = try context.database.query(
            """
            SELECT l.id, l.title, l.kind, l.price_cents, l.currency, l.seller_id,
                   cardinality(CASE WHEN l.kind = 'item' THEN \(sql: purchaseGaps) ELSE \(sql: fundingGaps) END) = 0
                       AS seller_can_be_paid,
                   iso8601(l.created_at) AS created_at, \(sql: PageCursor.sortKey("l")) AS sort_key
            FROM listings l JOIN profiles s ON s.id = l.seller_id
            WHERE l.status = 'active' AND (\(kind)::text IS NULL OR l.kind = \(kind))
              AND \(sql: PageCursor.after(cursor, alias: "l"))
            ORDER BY l.created_at DESC, l.id DESC LIMIT \(limit + 1)
            """
        ).rows
        let (page, next) = try PageCursor.page(rows, limit: limit)
        return .json(Page(data: try page.map(ListingView.init(row:)), next_cursor: next))
    }
}

/// An active listing as buyers see it.
private struct ListingView: Encodable {
    let id: String
    let title: String
    let kind: String
    let price: Int64
    let currency: String
    let seller_id: String
    let seller_can_be_paid: Bool
    let created_at: String

    init(row: Row) throws {
        id = try row.decode("id")
        title = try row.decode("title")
        kind = try row.decode("kind")
        price = try row.decode("price_cents")
        currency = try row.decode("currency")
        seller_id = try row.decode("seller_id")
        seller_can_be_paid = try row.decode("seller_can_be_paid")
        created_at = try row.decode("created_at")
    }
}
