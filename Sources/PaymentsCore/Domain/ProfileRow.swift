import Foundation
import Postgres

/// A `profiles` row: an admin, or a buyer, a seller or both, and the mirror of a seller's Express account.
struct ProfileRow {
    let id: UUID
    let userID: String
    let roles: Set<Role>
    let email: String?
    let displayName: String?
    let stripeAccountID: String?
    let chargesEnabled: Bool
    let payoutsEnabled: Bool
    let detailsSubmitted: Bool
    /// Stripe's `requirements.currently_due`, as last mirrored.
    let requirementsDue: JSONValue
    let disabledReason: String?
    /// What keeps this profile from being paid as a seller for a purchase under the model it was
    /// read for (`seller_readiness_gaps`); empty when ready.
    let sellerGaps: [String]

    /// The select list that `init(row:)` reads; the seller's gaps are those of a charge on `terms`.
    static func columns(terms: ChargeTerms) -> SQLQuery {
        SQLQuery(
            unsafeSQL: """
                id, user_id, roles, email, display_name, stripe_account_id, charges_enabled, payouts_enabled,
                details_submitted, requirements_due, disabled_reason,
                \(SellerGaps.column(of: "profiles", terms: terms))
                """)
    }

    init(row: Row) throws {
        id = try row.decode("id")
        userID = try row.decode("user_id")
        roles = try row.decode("roles")
        email = try row.decodeIfPresent("email")
        displayName = try row.decodeIfPresent("display_name")
        stripeAccountID = try row.decodeIfPresent("stripe_account_id")
        chargesEnabled = try row.decode("charges_enabled")
        payoutsEnabled = try row.decode("payouts_enabled")
        detailsSubmitted = try row.decode("details_submitted")
        requirementsDue = try row.decode("requirements_due")
        disabledReason = try row.decodeIfPresent("disabled_reason")
        sellerGaps = try SellerGaps.decode(row)
    }

    /// The profile with this id, or nil; its seller gaps are those of a purchase on `terms`.
    static func find(_ id: UUID, terms: ChargeTerms, on connection: some SQLExecutor) throws -> ProfileRow? {
        try connection.query("SELECT \(sql: columns(terms: terms)) FROM profiles WHERE id = \(id)").first.map(
            ProfileRow.init(row:))
    }
}

/// What keeps a seller from being paid (`seller_readiness_gaps`, sql/0016, model-aware since
/// sql/0020, `on_behalf_of`-aware since sql/0021), read beside a profile or a listing's seller:
/// one select expression, one decoder.
enum SellerGaps {
    /// The select-list expression for the profiles row `alias` (`profiles`, `s`), on `terms`.
    static func column(of alias: String, terms: ChargeTerms) -> String {
        "array_to_string(\(call(alias, terms: terms)), ',') AS seller_gaps"
    }

    /// The function call itself (the model is one of the enum's fixed names, never input).
    static func call(_ alias: String, terms: ChargeTerms) -> String {
        "seller_readiness_gaps(\(alias), '\(terms.model.rawValue)', \(terms.onBehalfOf))"
    }

    /// The names, in the function's order; empty when the seller is ready.
    static func decode(_ row: Row) throws -> [String] {
        try row.decode("seller_gaps", as: String.self).split(separator: ",").map(String.init)
    }
}
