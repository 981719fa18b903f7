import Stripe

/// The deterministic Stripe idempotency keys of a payment's calls: spelled once, since a key
/// deduplicates at Stripe only when every caller spells it exactly alike, and a key is sent
/// with one set of parameters only (Stripe refuses a key reused with others).
enum PaymentKeys {
    /// Creating the payment's PaymentIntent (also how a lost create is recovered).
    static func create(_ paymentID: String) -> String { "payment:\(paymentID.lowercased()):create" }

    /// Cancelling the payment's PaymentIntent for `reason`.
    static func cancel(_ paymentID: String, reason: CancellationReason) -> String {
        "payment:\(paymentID.lowercased()):cancel:\(reason.rawValue)"
    }

    /// Capturing `amount` of the payment's authorisation.
    static func capture(_ paymentID: String, amount: Int64) -> String {
        "payment:\(paymentID.lowercased()):capture:\(amount)"
    }
}

/// Why we cancel a PaymentIntent (Stripe's `cancellation_reason`).
enum CancellationReason: String {
    /// The buyer or an admin cancelled the payment.
    case requestedByCustomer = "requested_by_customer"
    /// We gave up on it: a failed, expired or lost attempt.
    case abandoned
}

extension StripeClient {
    /// Cancels a payment's intent under the key for `reason`. An intent that a call for another
    /// reason (or Stripe itself) already cancelled counts as cancelled.
    @discardableResult
    func cancelIntent(_ intentID: String, ofPayment paymentID: String,
                      reason: CancellationReason) throws(StripeError) -> PaymentIntent {
        do {
            return try cancelPaymentIntent(intentID, reason: reason.rawValue,
                                           idempotencyKey: PaymentKeys.cancel(paymentID, reason: reason))
        } catch let error where error.code == "payment_intent_unexpected_state" {
            let intent = try retrievePaymentIntent(intentID)
            guard intent.status == "canceled" else { throw error }
            return intent
        }
    }
}
