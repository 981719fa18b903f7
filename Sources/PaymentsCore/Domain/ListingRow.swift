import Foundation
import Postgres

/// What a listing sells (`listings.kind`): one item, or a job paid in milestones.
enum ListingKind: String, SQLDecodable {
    case item
    case job
}

/// A listing's state (`listings.status`): `payment_pending` while a buyer's reservation holds it.
enum ListingStatus: String, SQLDecodable {
    case active
    case paymentPending = "payment_pending"
    case sold
    case cancelled
}

/// A `listings` row, read with its seller's readiness to be paid, for a purchase or a funding.
struct ListingRow {
    let id: UUID
    let sellerID: UUID
    let kind: ListingKind
    let priceCents: Int64
    let currency: String
    let status: ListingStatus
    let title: String
    let reservedBy: UUID?
    /// True while a reservation has time left (`reserved_until` is in the future).
    let isHoldActive: Bool
    /// What keeps the seller from being paid under the model the row was locked for
    /// (`seller_readiness_gaps`); empty when ready.
    let sellerGaps: [String]
    /// The seller's connected account (a direct charge is made on it); nil before onboarding.
    let sellerAccount: String?

    init(row: Row) throws {
        id = try row.decode("id")
        sellerID = try row.decode("seller_id")
        kind = try row.decode("kind")
        priceCents = try row.decode("price_cents")
        currency = try row.decode("currency")
        status = try row.decode("status")
        title = try row.decode("title")
        reservedBy = try row.decodeIfPresent("reserved_by")
        isHoldActive = try row.decode("hold_active")
        sellerGaps = try SellerGaps.decode(row)
        sellerAccount = try row.decodeIfPresent("seller_account")
    }

    /// `409 seller_not_ready`, naming what is missing, unless the seller can be paid.
    func requireSellerReady() throws {
        guard sellerGaps.isEmpty else {
            throw APIError(
                .sellerNotReady,
                message: "The seller cannot accept payments yet: missing \(sellerGaps.joined(separator: ", ")).")
        }
    }

    /// The listing, locked (`FOR UPDATE`) until the transaction ends, or nil when there is none;
    /// its seller's gaps are those of a charge on `terms`.
    static func lock(_ id: UUID, terms: ChargeTerms, on connection: some SQLExecutor) throws -> ListingRow? {
        try connection.query(
            """
            SELECT l.id, l.seller_id, l.kind, l.price_cents, l.currency, l.status, l.title, l.reserved_by,
                   COALESCE(l.reserved_until > now(), false) AS hold_active, s.stripe_account_id AS seller_account,
                   \(sql: SQLQuery(unsafeSQL: SellerGaps.column(of: "s", terms: terms)))
            FROM listings l JOIN profiles s ON s.id = l.seller_id
            WHERE l.id = \(id) FOR UPDATE OF l
            """
        ).first.map(ListingRow.init(row:))
    }
}
