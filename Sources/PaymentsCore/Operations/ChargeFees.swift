import Foundation
import Postgres
import Stripe

/// Records Stripe's processing fee of each captured charge (a sweep task): the charge is read
/// with its balance transaction expanded, outside any webhook, and the fee kept on the payment
/// for the admin's revenue report. 100 per run; a charge Stripe cannot answer for now is tried
/// again on the next run. A direct charge's processing fee is the seller's (the charge and its
/// balance transaction are on the seller's account): the platform's is recorded as 0, without
/// asking Stripe.
struct ChargeFees {
    let connection: any SQLExecutor
    let stripe: StripeClient

    func run() throws -> Int {
        let sellers =
            try connection.query(
                """
                UPDATE payments SET stripe_fee_cents = 0
                WHERE charge_model = 'direct' AND status IN ('succeeded', 'refunded') AND stripe_fee_cents IS NULL
                """
            ).affectedRows
        let due = try connection.query(
            """
            SELECT id::text AS id, stripe_charge_id FROM payments
            WHERE status IN ('succeeded', 'refunded') AND stripe_charge_id IS NOT NULL AND stripe_fee_cents IS NULL
              AND stripe_balance_transaction IS NULL AND charge_model = 'destination'
            ORDER BY updated_at LIMIT 100
            """
        ).rows
        var recorded = sellers
        for row in due {
            let paymentID: String = try row.decode("id")
            let chargeID: String = try row.decode("stripe_charge_id")
            let charge: Charge
            do {
                // A destination charge: the platform's own.
                charge = try stripe.retrieveChargeWithBalanceTransaction(chargeID, account: nil)
            } catch  where error.kind == .invalidRequest {
                // Stripe has no such charge: marked, so that it is not asked again every run
                // (the revenue report counts it among the unrecorded fees).
                try connection.query(
                    """
                    UPDATE payments SET stripe_balance_transaction = 'unavailable' WHERE id = \(paymentID)::uuid
                    """)
                continue
            } catch {
                continue  // asked again on the next run
            }
            guard case .object(let transaction)? = charge.balanceTransaction else { continue }
            recorded +=
                try connection.query(
                    """
                    UPDATE payments SET stripe_fee_cents = \(transaction.fee), stripe_balance_transaction = \(transaction.id)
                    WHERE id = \(paymentID)::uuid AND stripe_fee_cents IS NULL
                    """
                ).affectedRows
        }
        return recorded
    }
}
