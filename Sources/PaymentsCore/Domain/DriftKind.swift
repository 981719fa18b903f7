/// What kind of disagreement between our books and Stripe a drift is.
public enum DriftKind: String, CaseIterable, Sendable, Encodable {
    /// Stripe has an object we should have a row for (its metadata names one of ours, or it
    /// belongs to an object of ours), and we do not.
    case missingHere = "missing_here"
    /// We have a row whose Stripe object does not exist.
    case missingAtStripe = "missing_at_stripe"
    case statusDiffers = "status_differs"
    case amountDiffers = "amount_differs"
    case feeDiffers = "fee_differs"
    case refundSumDiffers = "refund_sum_differs"
    /// An object at Stripe nothing of ours points to (an intent without our metadata, an
    /// Express account without a profile).
    case orphanAtStripe = "orphan_at_stripe"
}
