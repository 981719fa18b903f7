import Foundation
import Postgres

/// A payment as the API shows it (to its buyer, its seller, or an admin).
struct PaymentRecord: Encodable {
    let id: String
    let kind: PaymentKind
    let status: PaymentStatus
    let buyer_id: String
    let seller_id: String
    let listing_id: String
    @Nullable var milestone_id: String?
    @Nullable var payment_intent_id: String?
    let amount: Int64
    let application_fee: Int64
    let currency: String
    let amount_capturable: Int64
    let amount_received: Int64
    let amount_refunded: Int64
    @Nullable var capture_before: String?
    let is_disputed: Bool
    let created_at: String
    let updated_at: String

    /// The select list that `init(row:)` reads.
    static let columns = SQLQuery(
        unsafeSQL: """
            p.id, p.kind, p.status, p.buyer_id, p.seller_id, p.listing_id, p.milestone_id, p.stripe_payment_intent_id,
            p.amount_cents, p.application_fee_cents, p.currency, p.amount_capturable, p.amount_received, p.amount_refunded,
            iso8601(p.capture_before) AS capture_before, p.is_disputed, iso8601(p.created_at) AS created_at,
            iso8601(p.updated_at) AS updated_at
            """)

    /// Reads a `columns` row; a missing or mistyped column is a `RowDecodingError`, never a
    /// default that would reach a money field.
    init(row: Row) throws {
        id = try row.decode("id")
        kind = try row.decode("kind")
        status = try row.decode("status")
        buyer_id = try row.decode("buyer_id")
        seller_id = try row.decode("seller_id")
        listing_id = try row.decode("listing_id")
        milestone_id = try row.decodeIfPresent("milestone_id")
        payment_intent_id = try row.decodeIfPresent("stripe_payment_intent_id")
        amount = try row.decode("amount_cents")
        application_fee = try row.decode("application_fee_cents")
        currency = try row.decode("currency")
        amount_capturable = try row.decode("amount_capturable")
        amount_received = try row.decode("amount_received")
        amount_refunded = try row.decode("amount_refunded")
        capture_before = try row.decodeIfPresent("capture_before")
        is_disputed = try row.decode("is_disputed")
        created_at = try row.decode("created_at")
        updated_at = try row.decode("updated_at")
    }

    /// The payment if `identity` may see it (its buyer, its seller, an admin); otherwise nil,
    /// which callers answer with 404 so that existence does not leak.
    static func visible(_ id: UUID, to identity: Identity, on connection: some SQLExecutor) throws -> PaymentRecord? {
        try connection.query(
            """
            SELECT \(sql: columns) FROM payments p
            WHERE p.id = \(id) AND (\(identity.role == .admin) OR p.buyer_id = \(identity.profileID) OR p.seller_id = \(identity.profileID))
            """
        ).first.map(PaymentRecord.init(row:))
    }

    /// Marks a payment that will not go ahead (Stripe refused it, or its intent could not be
    /// stored) as `failed` and releases what it held: the listing's reservation or the
    /// milestone's funding slot. Audited as a failed `operation`.
    static func abandon(
        _ paymentID: String, code: String, operation: String, request: Request,
        on connection: some SQLExecutor
    ) throws {
        guard
            try connection.query(
                """
                UPDATE payments SET status = 'failed', failure_code = \(code)
                WHERE id = \(paymentID)::uuid AND status IN ('creating', 'requires_payment_method')
                RETURNING id
                """
            ).first != nil
        else { return }
        try connection.query("SELECT payment_release_hold(p) FROM payments p WHERE p.id = \(paymentID)::uuid")
        try AuditLog.record(
            AuditEntry(
                operation: operation, entityType: "payment", entityID: paymentID,
                newValues: ["status": "failed"], success: false, errorCode: code),
            request: request, on: connection)
    }
}
