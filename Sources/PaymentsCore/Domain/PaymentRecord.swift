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
    /// How it was charged, fixed when it was made (`destination` or `direct`).
    let charge_model: ChargeModel
    /// The connected account that owns a direct charge's objects (Stripe.js's `stripeAccount`);
    /// null for a destination or platform charge.
    @Nullable var stripe_account: String?
    @Nullable var description: String?
    /// When the money was received (captured, or charged for a milestone).
    @Nullable var succeeded_at: String?
    /// The seller's view of a sale: the day its funds are expected to be available for payout
    /// (the day it succeeded plus the payout delay). Set by `forSeller`; null otherwise.
    @Nullable var funds_available_on: String?
    let created_at: String
    let updated_at: String
    /// `succeeded_at` in Unix seconds, for `funds_available_on`.
    private let succeededEpoch: Int64?

    private enum CodingKeys: String, CodingKey {
        case id, kind, status, buyer_id, seller_id, listing_id, milestone_id, payment_intent_id, amount
        case application_fee, currency, amount_capturable, amount_received, amount_refunded, capture_before
        case is_disputed, charge_model, stripe_account, description, succeeded_at, funds_available_on, created_at,
            updated_at
    }

    /// The select list that `init(row:)` reads.
    static let columns = SQLQuery(
        unsafeSQL: """
            p.id, p.kind, p.status, p.buyer_id, p.seller_id, p.listing_id, p.milestone_id, p.stripe_payment_intent_id,
            p.amount_cents, p.application_fee_cents, p.currency, p.amount_capturable, p.amount_received, p.amount_refunded,
            iso8601(p.capture_before) AS capture_before, p.is_disputed, p.charge_model, p.stripe_account, p.description,
            iso8601(p.succeeded_at) AS succeeded_at, extract(epoch FROM p.succeeded_at)::bigint AS succeeded_epoch,
            iso8601(p.created_at) AS created_at, iso8601(p.updated_at) AS updated_at
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
        charge_model = try row.decode("charge_model")
        stripe_account = try row.decodeIfPresent("stripe_account")
        description = try row.decodeIfPresent("description")
        succeeded_at = try row.decodeIfPresent("succeeded_at")
        succeededEpoch = try row.decodeIfPresent("succeeded_epoch")
        created_at = try row.decode("created_at")
        updated_at = try row.decode("updated_at")
    }

    /// This record as `identity` sees it: its seller (and an admin) also see when a sale's funds
    /// are expected to be available — a purchase that succeeded, `payoutDelayDays` after (UTC
    /// days, as Stripe's `available_on`). A milestone's money reaches the seller at its release.
    func viewed(by identity: Identity, payoutDelayDays: Int) -> PaymentRecord {
        guard identity.isAdmin || seller_id == identity.profileID.uuidString.lowercased(), kind == .purchase,
            status == .succeeded, let succeededEpoch
        else { return self }
        var record = self
        let day = Date(timeIntervalSince1970: TimeInterval(succeededEpoch + Int64(payoutDelayDays) * 86_400))
        record.funds_available_on = Date.ISO8601FormatStyle(timeZone: .gmt).year().month().day().format(day)
        return record
    }

    /// The payment if `identity` may see it (its buyer, its seller, an admin); otherwise nil,
    /// which callers answer with 404 so that existence does not leak.
    static func visible(_ id: UUID, to identity: Identity, on connection: some SQLExecutor) throws -> PaymentRecord? {
        try connection.query(
            """
            SELECT \(sql: columns) FROM payments p
            WHERE p.id = \(id) AND (\(identity.isAdmin) OR p.buyer_id = \(identity.profileID) OR p.seller_id = \(identity.profileID))
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
