import Postgres

/// How a purchase is charged (`CHARGE_MODEL`, docs/payments.md), fixed on each payment row
/// (`payments.charge_model`) when it is made: every later Stripe call and event of the payment
/// follows the row, never the current setting.
public enum ChargeModel: String, Sendable, CaseIterable, SQLDecodable, Encodable {
    /// The platform charges the buyer and transfers the seller's share (`transfer_data`); the
    /// platform is the merchant of record and bears refunds and chargebacks.
    case destination
    /// The charge is made on the seller's connected account (`Stripe-Account`) with the
    /// platform's `application_fee_amount`; the seller is the merchant of record.
    case direct
}
