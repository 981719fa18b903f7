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

/// What a seller must have to be paid by a charge (`seller_readiness_gaps`): the charge's model,
/// and for a destination charge whether it is made `on_behalf_of` the seller, which makes the
/// seller the settlement merchant, so Stripe requires its `card_payments` capability too.
struct ChargeTerms: Sendable {
    let model: ChargeModel
    let onBehalfOf: Bool

    /// A milestone funding: a platform charge, the seller paid by transfer.
    static let platformCharge = ChargeTerms(model: .destination, onBehalfOf: false)
}

extension MarketplaceConfiguration {
    /// The terms a purchase is charged on now (`CHARGE_MODEL`, `DESTINATION_ON_BEHALF_OF`).
    var purchaseTerms: ChargeTerms {
        ChargeTerms(model: chargeModel, onBehalfOf: chargeModel == .destination && destinationOnBehalfOf)
    }
}
