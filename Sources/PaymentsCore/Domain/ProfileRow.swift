import Foundation
import Postgres

/// A `profiles` row: a buyer, seller or admin, and the mirror of a seller's Express account.
struct ProfileRow {
    let id: UUID
    let userID: String
    let role: Role
    let email: String?
    let displayName: String?
    let stripeAccountID: String?
    let chargesEnabled: Bool
    let payoutsEnabled: Bool
    let detailsSubmitted: Bool
    /// Stripe's `requirements.currently_due`, as last mirrored.
    let requirementsDue: JSONValue
    let disabledReason: String?

    /// The select list that `init(row:)` reads.
    static let columns = SQLQuery(
        unsafeSQL: """
            id, user_id, role, email, display_name, stripe_account_id, charges_enabled, payouts_enabled,
            details_submitted, requirements_due, disabled_reason
            """)

    init(row: Row) throws {
        id = try row.decode("id")
        userID = try row.decode("user_id")
        role = try row.decode("role")
        email = try row.decodeIfPresent("email")
        displayName = try row.decodeIfPresent("display_name")
        stripeAccountID = try row.decodeIfPresent("stripe_account_id")
        chargesEnabled = try row.decode("charges_enabled")
        payoutsEnabled = try row.decode("payouts_enabled")
        detailsSubmitted = try row.decode("details_submitted")
        requirementsDue = try row.decode("requirements_due")
        disabledReason = try row.decodeIfPresent("disabled_reason")
    }

    /// The profile with this id, or nil.
    static func find(_ id: UUID, on connection: some SQLExecutor) throws -> ProfileRow? {
        try connection.query("SELECT \(sql: columns) FROM profiles WHERE id = \(id)").first.map(ProfileRow.init(row:))
    }
}
