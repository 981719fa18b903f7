import Postgres

/// What our `transfers` rows know of reversals made at Stripe.
enum TransferReversals {
    /// Adds `amount` to the transfer's reversed total (never past the transfer) and sets its
    /// status; the `transfer.reversed` event that follows only confirms it (`GREATEST`).
    static func record(_ amount: Int64, of transferID: String, on connection: some SQLExecutor) throws {
        try connection.query(
            """
            UPDATE transfers SET amount_reversed = LEAST(amount_cents, amount_reversed + \(amount)),
                   status = CASE WHEN amount_reversed + \(amount) >= amount_cents THEN 'reversed' ELSE 'partially_reversed' END
            WHERE stripe_transfer_id = \(transferID)
            """)
    }
}
