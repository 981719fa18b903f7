import Foundation
import Postgres

/// A `milestones` row: one paid step of a job listing.
struct MilestoneRow {
    let id: UUID
    let listingID: UUID
    let position: Int
    let title: String
    let amount: Int64
    let status: MilestoneStatus

    /// The select list that `init(row:)` reads.
    static let columns = SQLQuery(unsafeSQL: "m.id, m.listing_id, m.position, m.title, m.amount_cents, m.status")

    init(row: Row) throws {
        id = try row.decode("id")
        listingID = try row.decode("listing_id")
        position = try row.decode("position")
        title = try row.decode("title")
        amount = try row.decode("amount_cents")
        status = try row.decode("status")
    }
}
