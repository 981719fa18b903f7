import Foundation
import Postgres

/// A `payments` row as the money paths read it (`SELECT *` or a function returning `payments`);
/// `PaymentRecord` is the same payment as the API shows it.
struct PaymentRow {
    let id: String
    let kind: PaymentKind
    let status: PaymentStatus
    let buyerID: String
    let sellerID: String
    let listingID: String
    let milestoneID: String?
    /// NULL until the intent's create call has been answered and stored.
    let intentID: String?
    let amount: Int64
    let applicationFee: Int64
    let currency: String
    let amountCapturable: Int64
    let amountReceived: Int64
    let amountRefunded: Int64
    let isDisputed: Bool
    /// The connected account that owns the payment's Stripe objects (a direct charge): every
    /// Stripe call for it carries it as `Stripe-Account`. Nil for the platform's own.
    let stripeAccount: String?
    /// The request that holds the payment's money claim, if any (`PaymentClaims`).
    let actionClaimOwner: String?

    init(row: Row) throws {
        id = try row.decode("id")
        kind = try row.decode("kind")
        status = try row.decode("status")
        buyerID = try row.decode("buyer_id")
        sellerID = try row.decode("seller_id")
        listingID = try row.decode("listing_id")
        milestoneID = try row.decodeIfPresent("milestone_id")
        intentID = try row.decodeIfPresent("stripe_payment_intent_id")
        amount = try row.decode("amount_cents")
        applicationFee = try row.decode("application_fee_cents")
        currency = try row.decode("currency")
        amountCapturable = try row.decode("amount_capturable")
        amountReceived = try row.decode("amount_received")
        amountRefunded = try row.decode("amount_refunded")
        isDisputed = try row.decode("is_disputed")
        stripeAccount = try row.decodeIfPresent("stripe_account")
        actionClaimOwner = try row.decodeIfPresent("action_claim_owner")
    }
}
