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
}
