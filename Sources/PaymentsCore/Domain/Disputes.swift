import Foundation
import Postgres

/// What every family needs to know about disputes.
enum Disputes {
    /// Recomputes `payments.is_disputed` from the disputes rows (the statuses that block moving
    /// a payment's money live once, in the SQL function `payment_has_open_dispute`).
    static func refreshFlag(paymentID: String, on connection: some SQLExecutor) throws {
        try connection.query(
            """
            UPDATE payments SET is_disputed = payment_has_open_dispute(id) WHERE id = \(paymentID)::uuid
            """)
    }

    /// A dispute as admins and parties see it.
    static let columns = SQLQuery(
        unsafeSQL: """
            d.id, d.payment_id, d.kind, d.status, d.opened_by, d.reason, d.details, d.stripe_dispute_id, d.amount_cents,
            d.currency, iso8601(d.due_by) AS due_by, d.evidence_status, d.funds_withdrawn_cents, d.funds_reinstated_cents,
            d.outcome, d.resolution_note, d.resolved_by, iso8601(d.resolved_at) AS resolved_at,
            iso8601(d.created_at) AS created_at, p.buyer_id, p.seller_id, p.kind AS payment_kind, p.status AS payment_status,
            p.amount_cents AS payment_amount, p.amount_received, p.amount_refunded, p.currency AS payment_currency, p.milestone_id
            """)

    /// The JSON of one `columns` row.
    static func view(_ row: Row) -> JSONValue {
        func text(_ name: String) -> JSONValue { JSONValue(row[name]) }
        func number(_ name: String) -> JSONValue { row.int(name).map { .int(Int64($0)) } ?? .null }
        return [
            "id": text("id"), "payment_id": text("payment_id"), "kind": text("kind"), "status": text("status"),
            "opened_by": text("opened_by"), "reason": text("reason"), "details": text("details"),
            "stripe_dispute_id": text("stripe_dispute_id"), "amount": number("amount_cents"),
            "currency": text("currency"),
            "due_by": text("due_by"), "evidence_status": text("evidence_status"),
            "funds_withdrawn": number("funds_withdrawn_cents"), "funds_reinstated": number("funds_reinstated_cents"),
            "outcome": text("outcome"), "resolution_note": text("resolution_note"), "resolved_by": text("resolved_by"),
            "resolved_at": text("resolved_at"), "created_at": text("created_at"),
            "payment": [
                "kind": text("payment_kind"), "status": text("payment_status"), "buyer_id": text("buyer_id"),
                "seller_id": text("seller_id"), "milestone_id": text("milestone_id"),
                "amount": number("payment_amount"),
                "amount_received": number("amount_received"), "amount_refunded": number("amount_refunded"),
                "currency": text("payment_currency"),
            ],
        ]
    }
}
