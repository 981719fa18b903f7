import Foundation
import Postgres

/// A `disputes` row with the payment it is about, as admins and parties see it.
struct DisputeRow: Encodable {
    let id: String
    let payment_id: String
    let kind: DisputeKind
    let status: DisputeStatus
    @Nullable var opened_by: String?
    let reason: String
    @Nullable var details: String?
    @Nullable var stripe_dispute_id: String?
    /// A chargeback's amount (Stripe's); a platform dispute has none.
    @Nullable var amount: Int64?
    @Nullable var currency: String?
    @Nullable var due_by: String?
    @Nullable var evidence_status: String?
    let funds_withdrawn: Int64
    let funds_reinstated: Int64
    @Nullable var outcome: String?
    @Nullable var resolution_note: String?
    @Nullable var resolved_by: String?
    @Nullable var resolved_at: String?
    let created_at: String
    let payment: Payment

    /// The disputed payment, in brief.
    struct Payment: Encodable {
        let kind: PaymentKind
        let status: PaymentStatus
        let buyer_id: String
        let seller_id: String
        @Nullable var milestone_id: String?
        let amount: Int64
        let amount_received: Int64
        let amount_refunded: Int64
        let currency: String
        /// How it was charged; a direct charge's chargeback is answered on `stripe_account`.
        let charge_model: ChargeModel
        /// The connected account that owns its Stripe objects (a direct charge's seller's), or null.
        @Nullable var stripe_account: String?
    }

    /// The select list that `init(row:)` reads, over `disputes d JOIN payments p`.
    static let columns = SQLQuery(
        unsafeSQL: """
            d.id, d.payment_id, d.kind, d.status, d.opened_by, d.reason, d.details, d.stripe_dispute_id, d.amount_cents,
            d.currency, iso8601(d.due_by) AS due_by, d.evidence_status, d.funds_withdrawn_cents, d.funds_reinstated_cents,
            d.outcome, d.resolution_note, d.resolved_by, iso8601(d.resolved_at) AS resolved_at,
            iso8601(d.created_at) AS created_at, p.buyer_id, p.seller_id, p.kind AS payment_kind, p.status AS payment_status,
            p.amount_cents AS payment_amount, p.amount_received, p.amount_refunded, p.currency AS payment_currency, p.milestone_id,
            p.charge_model, p.stripe_account AS payment_stripe_account
            """)

    init(row: Row) throws {
        id = try row.decode("id")
        payment_id = try row.decode("payment_id")
        kind = try row.decode("kind")
        status = try row.decode("status")
        opened_by = try row.decodeIfPresent("opened_by")
        reason = try row.decode("reason")
        details = try row.decodeIfPresent("details")
        stripe_dispute_id = try row.decodeIfPresent("stripe_dispute_id")
        amount = try row.decodeIfPresent("amount_cents")
        currency = try row.decodeIfPresent("currency")
        due_by = try row.decodeIfPresent("due_by")
        evidence_status = try row.decodeIfPresent("evidence_status")
        funds_withdrawn = try row.decode("funds_withdrawn_cents")
        funds_reinstated = try row.decode("funds_reinstated_cents")
        outcome = try row.decodeIfPresent("outcome")
        resolution_note = try row.decodeIfPresent("resolution_note")
        resolved_by = try row.decodeIfPresent("resolved_by")
        resolved_at = try row.decodeIfPresent("resolved_at")
        created_at = try row.decode("created_at")
        payment = Payment(
            kind: try row.decode("payment_kind"), status: try row.decode("payment_status"),
            buyer_id: try row.decode("buyer_id"), seller_id: try row.decode("seller_id"),
            milestone_id: try row.decodeIfPresent("milestone_id"), amount: try row.decode("payment_amount"),
            amount_received: try row.decode("amount_received"), amount_refunded: try row.decode("amount_refunded"),
            currency: try row.decode("payment_currency"), charge_model: try row.decode("charge_model"),
            stripe_account: try row.decodeIfPresent("payment_stripe_account"))
    }

    /// The dispute with this id, or nil.
    static func find(_ id: UUID, on connection: some SQLExecutor) throws -> DisputeRow? {
        try connection.query(
            "SELECT \(sql: columns) FROM disputes d JOIN payments p ON p.id = d.payment_id WHERE d.id = \(id)"
        ).first.map(DisputeRow.init(row:))
    }
}
